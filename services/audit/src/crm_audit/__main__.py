"""Run the audit service: ``python -m crm_audit`` (settings from CRM_* variables)."""

from __future__ import annotations

from crm_audit.main import create_app
from crm_audit.settings import AuditSettings
from crm_platform.serving import serve


def main() -> None:
    settings = AuditSettings()
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
