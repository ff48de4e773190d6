"""Run the customers service: ``python -m crm_customers`` (settings from CRM_* variables)."""

from __future__ import annotations

from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings
from crm_platform.serving import serve


def main() -> None:
    settings = CustomersSettings()
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
