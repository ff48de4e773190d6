"""Settings of the reporting service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from pydantic import Field

from crm_platform.settings import ServiceSettings

DEFAULT_REQUIRED_FIELDS = ["name", "industry", "region", "source", "tier", "contact"]


class ReportingSettings(ServiceSettings):
    service_name: str = "reporting"
    http_port: int = 8006
    mongo_database: str = "crm_reporting"

    default_time_zone: str = Field(default="Asia/Shanghai", description="Business time zone of day/week/month buckets.")
    default_currency: str = Field(
        default="CNY", description="Currency of the funnel's and the forecast's amounts when a request names none."
    )
    required_customer_fields: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REQUIRED_FIELDS),
        description="Fields a complete customer record has: name, industry, region, source, tier, size, "
        "lifecycle_stage, tags, owner, and 'contact' (at least one contact with a phone or an email).",
    )
    stage_time_limit_days: dict[str, float] = Field(
        default_factory=dict,
        description="Per stage id: days an opportunity may stay in it and still advance on time.",
    )
    default_stage_time_limit_days: float = Field(default=30.0, gt=0, description="Limit for stages not listed.")
    generation_refresh_seconds: float = Field(
        default=1.0, gt=0, description="How often the projection re-reads which set of read models is active."
    )
    rebuild_timeout_seconds: float = Field(default=600.0, gt=0)
    ready_max_lag_seconds: float = Field(
        default=300.0,
        gt=0,
        description="/readyz says not ready when events wait unread and the last one applied was older than this.",
    )
