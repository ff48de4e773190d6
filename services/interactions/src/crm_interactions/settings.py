"""Settings of the interactions service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from crm_platform.settings import ServiceSettings


class InteractionsSettings(ServiceSettings):
    service_name: str = "interactions"
    http_port: int = 8003
    mongo_database: str = "crm_interactions"

    late_after_hours: float = Field(
        default=24.0,
        gt=0,
        description="An interaction logged more than this long after it happened is 'recorded late' "
        "(the seeds' rule: minutes within 24 hours).",
    )
    future_skew_seconds: float = Field(
        default=300.0, ge=0, description="How far in the future occurred_at may be (clocks of phones and PCs drift)."
    )
    default_timezone: str = Field(
        default="Asia/Shanghai", description="Where 'today' and 'this week' begin when a request names no tz."
    )
    stats_max_rows: int = Field(
        default=200_000,
        ge=1,
        description="The most interactions one stats request may count; narrow the period past it.",
    )

    scheduler_enabled: bool = Field(
        default=True, description="Run the reminder/overdue scheduler in this process (safe in every replica)."
    )
    scheduler_poll_seconds: float = Field(default=5.0, gt=0, description="How often the scheduler looks for due tasks.")
    scheduler_batch_size: int = Field(default=200, gt=0)
    #: How many of a converted lead's follow-ups are read per batch when they move to its customer.
    lead_move_batch_size: int = Field(default=100, gt=0)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises on an unknown zone: fail at start, not on the first request
        return value
