"""Run the interactions service: ``python -m crm_interactions`` (settings from CRM_* variables)."""

from __future__ import annotations

from crm_interactions.main import create_app
from crm_interactions.settings import InteractionsSettings
from crm_platform.serving import serve


def main() -> None:
    settings = InteractionsSettings()
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
