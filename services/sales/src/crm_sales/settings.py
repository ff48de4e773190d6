"""Settings of the sales service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator

from crm_platform.settings import ServiceSettings
from crm_sales.domain import contracts as contract_rules


class SalesSettings(ServiceSettings):
    service_name: str = "sales"
    http_port: int = 8010
    mongo_database: str = "crm_sales"
    # Quotations: a line's discount above this percentage needs a manager's approval before sending
    # (CRM_SALES_DISCOUNT_APPROVAL_PERCENT); the organisation's name heads the PDF (CRM_SALES_ORGANISATION_NAME).
    sales_discount_approval_percent: Decimal = Field(default=Decimal("15"), ge=0, le=100)
    sales_organisation_name: str = "CRM"

    # Contracts (合同): the approval bands (CRM_SALES_CONTRACT_APPROVAL_BANDS, JSON: currency or "*"
    # -> ascending bands {"above": amount, "permission": ...}; see crm_sales.domain.contracts), and our
    # signing entity on every contract (CRM_SALES_CONTRACT_ENTITY; empty: the organisation's name).
    sales_contract_approval_bands: str = contract_rules.DEFAULT_BANDS
    sales_contract_entity: str = ""

    # The overdue scheduler (crm.contract.instalment_overdue, once per instalment; safe in every
    # replica): CRM_SALES_OVERDUE_SCHEDULER_ENABLED, CRM_SALES_OVERDUE_POLL_SECONDS.
    sales_overdue_scheduler_enabled: bool = True
    sales_overdue_poll_seconds: float = Field(default=60.0, gt=0)

    @field_validator("sales_contract_approval_bands")
    @classmethod
    def _bands_parse(cls, value: str) -> str:
        contract_rules.parse_bands(value)  # refuses a wrong setting at start, saying what is wrong
        return value

    def contract_bands(self) -> contract_rules.Bands:
        return contract_rules.parse_bands(self.sales_contract_approval_bands)
