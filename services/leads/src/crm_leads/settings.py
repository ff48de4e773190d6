"""Settings of the leads service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from crm_platform.settings import ServiceSettings


class LeadsSettings(ServiceSettings):
    service_name: str = "leads"
    http_port: int = 8009
    mongo_database: str = "crm_leads"
