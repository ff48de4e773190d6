"""Settings of the customers service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from pydantic import Field

from crm_platform.settings import ServiceSettings


class CustomersSettings(ServiceSettings):
    service_name: str = "customers"
    http_port: int = 8001
    mongo_database: str = "crm_customers"

    max_customers_per_rep: int = Field(
        default=300,
        ge=1,
        description="How many active customers one owner may hold where no pool rule (max_held) covering "
        "the owner's department sets a limit.",
    )
    reps_may_delete: bool = Field(
        default=False, description="Whether reps may move their own customers to the recycle bin."
    )
    similar_name_threshold: float = Field(default=85.0, ge=0, le=100)
    import_max_rows: int = Field(default=50_000, ge=1)
    default_phone_region: str = "CN"
