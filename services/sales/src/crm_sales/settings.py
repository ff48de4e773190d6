"""Settings of the sales service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from crm_platform.settings import ServiceSettings


class SalesSettings(ServiceSettings):
    service_name: str = "sales"
    http_port: int = 8010
    mongo_database: str = "crm_sales"
