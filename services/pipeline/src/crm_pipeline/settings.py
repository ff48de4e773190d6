"""Settings of the pipeline service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from crm_platform.settings import ServiceSettings


class PipelineSettings(ServiceSettings):
    service_name: str = "pipeline"
    http_port: int = 8002
    mongo_database: str = "crm_pipeline"

    default_currency: str = Field(default="CNY", description="Currency of amounts and targets when none is given.")
    business_timezone: str = Field(
        default="Asia/Shanghai",
        description="Where the day a deal is won, and the months of targets, begin and end.",
    )
    lead_conversion_max_attempts: int = Field(
        default=30,
        gt=0,
        description="Attempts at a lead conversion's command when handling it fails (the store unreachable, "
        "say), with the consumer's backoff, before it goes to the dead-letter topic. A command whose customer "
        "has not reached this service yet is not retried this way: it waits, parked.",
    )
    lead_conversion_wait_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long a parked conversion command waits for its customer's copy before it is refused "
        "(the lead goes back to qualified, its requester is told why).",
    )
    lead_conversion_resume_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often this service looks for parked conversion commands whose next try has come.",
    )

    @field_validator("business_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # Fail at start, not on the first win, and name the setting: ZoneInfoNotFoundError is a
        # KeyError, which pydantic would let through raw.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'; use an IANA name such as Asia/Shanghai") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)
