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
    export_approval_valid_hours: float = Field(
        default=24, gt=0, le=24 * 30, description="How long an approved export request can be downloaded."
    )

    # Retention of the source records (export and import records here, sign-in attempts in the
    # directory): kept until the audit service has long consumed their events, then deleted.
    record_retention_days: float = Field(
        default=90,
        ge=1,
        description="Source records (whose events the audit log keeps) older than this many days are deleted, "
        "once their events are published.",
    )
    record_purge_enabled: bool = Field(default=True, description="Run the source records' retention purge.")
    record_purge_interval_seconds: float = Field(default=3600.0, gt=0, description="How often that purge runs.")
    record_purge_batch_size: int = Field(default=500, ge=1, le=10000, description="Records deleted per store command.")
