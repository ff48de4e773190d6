"""Settings of the sales service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from crm_platform.settings import ServiceSettings
from crm_sales.domain import contracts as contract_rules
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

    # Contracts (合同): the approval bands (CRM_SALES_CONTRACT_APPROVAL_BANDS, JSON: currency or "*"
    # -> ascending bands {"above": amount, "permission": ...}; see crm_sales.domain.contracts), and our
    # signing entity on every contract (CRM_SALES_CONTRACT_ENTITY; empty: the organisation's name).
    sales_contract_approval_bands: str = contract_rules.DEFAULT_BANDS
    sales_contract_entity: str = ""

    # The overdue scheduler (crm.contract.instalment_overdue, once per instalment; safe in every
    # replica): CRM_SALES_OVERDUE_SCHEDULER_ENABLED, CRM_SALES_OVERDUE_POLL_SECONDS.
    sales_overdue_scheduler_enabled: bool = True
    sales_overdue_poll_seconds: float = Field(default=60.0, gt=0)
    # The organisation's business day for contracts (CRM_SALES_BUSINESS_TIMEZONE, an IANA zone checked
    # at start): an instalment due on a day is overdue from the next midnight there, and "today" for
    # a payment's received_on and a signature's signed_on is that zone's date.
    sales_business_timezone: str = "Asia/Shanghai"

    @field_validator("sales_business_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)  # an unknown zone stops the start, not the first payment
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise ValueError(f"'{value}' is not an IANA time zone (e.g. Asia/Shanghai)") from exc
        return value

    @property
    def business_zone(self) -> ZoneInfo:
        return ZoneInfo(self.sales_business_timezone)

    @field_validator("sales_contract_approval_bands")
    @classmethod
    def _bands_parse(cls, value: str) -> str:
        contract_rules.parse_bands(value)  # refuses a wrong setting at start, saying what is wrong
        return value

    def contract_bands(self) -> contract_rules.Bands:
        return contract_rules.parse_bands(self.sales_contract_approval_bands)
