"""Settings of the sales service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from crm_platform.settings import ServiceSettings


class SalesSettings(ServiceSettings):
    service_name: str = "sales"
    http_port: int = 8010
    mongo_database: str = "crm_sales"
    # Quotations: a line's discount above this percentage needs a manager's approval before sending
    # (CRM_SALES_DISCOUNT_APPROVAL_PERCENT); the organisation's name heads the PDF (CRM_SALES_ORGANISATION_NAME).
    sales_discount_approval_percent: Decimal = Field(default=Decimal("15"), ge=0, le=100)
    sales_organisation_name: str = "CRM"
