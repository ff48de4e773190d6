"""Run the sales service: ``python -m crm_sales`` (settings from CRM_* variables)."""

from __future__ import annotations

from crm_platform.serving import serve
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings


def main() -> None:
    settings = SalesSettings()
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
