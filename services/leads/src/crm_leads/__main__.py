"""Run the leads service: ``python -m crm_leads`` (settings from CRM_* variables)."""

from __future__ import annotations

from crm_leads.main import create_app
from crm_leads.settings import LeadsSettings
from crm_platform.serving import serve


def main() -> None:
    settings = LeadsSettings()
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
