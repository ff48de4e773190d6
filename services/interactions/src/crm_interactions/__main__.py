"""Run the interactions service: ``python -m crm_interactions`` (settings from CRM_* variables)."""

from __future__ import annotations

import uvicorn

from crm_interactions.main import create_app
from crm_interactions.settings import InteractionsSettings


def main() -> None:
    settings = InteractionsSettings()
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
