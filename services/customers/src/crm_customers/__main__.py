"""Run the customers service: ``python -m crm_customers`` (settings from CRM_* variables)."""

from __future__ import annotations

import uvicorn

from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings


def main() -> None:
    settings = CustomersSettings()
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
