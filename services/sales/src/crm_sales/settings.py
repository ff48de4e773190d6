"""Settings of the sales service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator

from crm_platform.settings import ServiceSettings
from crm_sales.domain.tickets import DEFAULT_SLA, SlaPolicy, parse_sla


class SalesSettings(ServiceSettings):
    service_name: str = "sales"
    http_port: int = 8010
    mongo_database: str = "crm_sales"
    # Quotations: a line's discount above this percentage needs a manager's approval before sending
    # (CRM_SALES_DISCOUNT_APPROVAL_PERCENT); the organisation's name heads the PDF (CRM_SALES_ORGANISATION_NAME).
    sales_discount_approval_percent: Decimal = Field(default=Decimal("15"), ge=0, le=100)
    sales_organisation_name: str = "CRM"

    # Service tickets (工单): per priority, the first-response and resolution targets
    # (CRM_SALES_TICKET_SLA, e.g. "urgent=1h/4h,high=4h/24h,normal=8h/72h,low=24h/168h", parsed at start);
    # the share of a target's time after which it escalates; how long a resolved ticket may be
    # reopened; the SLA scheduler (safe in every replica; off: CRM_SALES_TICKET_SCHEDULER_ENABLED=false).
    sales_ticket_sla: str = DEFAULT_SLA
    sales_ticket_escalate_at: Decimal = Field(default=Decimal("0.8"), gt=0, lt=1)
    sales_ticket_reopen_days: int = Field(default=7, ge=0, le=365)
    sales_ticket_scheduler_enabled: bool = True
    sales_ticket_scheduler_poll_seconds: float = Field(default=30.0, gt=0)
    sales_ticket_scheduler_batch_size: int = Field(default=200, gt=0)

    @field_validator("sales_ticket_sla")
    @classmethod
    def _ticket_sla(cls, value: str) -> str:
        parse_sla(value)  # a bad policy stops the service at start, naming what is wrong
        return value

    def ticket_sla(self) -> SlaPolicy:
        return parse_sla(self.sales_ticket_sla)
