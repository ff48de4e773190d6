"""Settings of the public-pool service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from pydantic import Field

from crm_platform.settings import ServiceSettings


class PoolSettings(ServiceSettings):
    service_name: str = "pool"
    http_port: int = 8004
    mongo_database: str = "crm_pool"

    scheduler_enabled: bool = Field(default=True, description="Run the recycling scheduler periodically.")
    scheduler_interval_seconds: float = Field(default=300.0, gt=0, description="How often the scheduler runs.")
    scheduler_batch_size: int = Field(default=500, ge=1, description="Customers handled per query round.")
    rebuild_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="A rebuild that has not caught up with the topics by then fails."
    )
