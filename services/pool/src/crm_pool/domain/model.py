"""The request models of the pool's rules: validated at the edge, so a bad rule never reaches the store."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

ClaimScope = Literal["department", "company"]

#: Fields a rule change may touch (the scope is fixed at creation: delete and recreate to move it).
EDITABLE = (
    "name",
    "enabled",
    "no_interaction_days",
    "no_won_days",
    "warn_days",
    "exempt_stage_id",
    "exempt_tags",
    "cooldown_days",
    "claim_scope",
    "max_held",
    "lead_no_work_days",
    "lead_warn_days",
)
CLAIM_FIELDS = ("cooldown_days", "claim_scope", "max_held")


def _path(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value.startswith("/") or value == "/" or "//" in value:
        raise ValueError("a department path such as /hq/east (None for the global rule)")
    return value.rstrip("/")


class RuleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    enabled: bool | None = None
    no_interaction_days: int | None = Field(default=None, ge=1, le=3650)
    no_won_days: int | None = Field(default=None, ge=1, le=3650)
    warn_days: int | None = Field(default=None, ge=0, le=365)
    exempt_stage_id: str | None = Field(default=None, min_length=1, max_length=100)
    exempt_tags: list[str] | None = Field(default=None, max_length=50)
    cooldown_days: int | None = Field(default=None, ge=0, le=3650)
    claim_scope: ClaimScope | None = None
    max_held: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="How many active customers one owner in this scope may hold (claim, assign, import, restore); "
        "None: the limit of the next rule up, else the customers service's default.",
    )
    # Leads (additive): unset lead_no_work_days = this rule recycles no lead.
    lead_no_work_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Recycle an open lead (new, contacted, qualified) its owner has not worked (claimed, moved on, "
        "followed up) for so many days; None: leads under this rule are not recycled.",
    )
    lead_warn_days: int | None = Field(
        default=None, ge=0, le=365, description="Warn the lead's owner so many days ahead (None: 0)."
    )

    @field_validator("lead_warn_days")
    @classmethod
    def _lead_warning_first(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = info.data.get("lead_no_work_days")
        if value is not None and limit is not None and value >= limit:
            raise ValueError("must be less than lead_no_work_days")
        return value

    @field_validator("exempt_tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        tags = [t.strip() for t in value]
        if any(not t for t in tags):
            raise ValueError("tags must not be empty")
        return list(dict.fromkeys(tags))


class RuleCreate(RuleFields):
    name: str = Field(min_length=1, max_length=100)
    department_path: str | None = Field(default=None, description="None: the global rule.")
    warn_days: int = Field(default=3, ge=0, le=365)
    cooldown_days: int = Field(default=30, ge=0, le=3650)
    claim_scope: ClaimScope = "department"
    enabled: bool = True
    exempt_tags: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("department_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        return _path(value)

    @model_validator(mode="after")
    def _needs_a_limit(self) -> RuleCreate:
        if self.no_interaction_days is None and self.no_won_days is None and self.lead_no_work_days is None:
            raise ValueError("set no_interaction_days and/or no_won_days (or lead_no_work_days)")
        for limit in (self.no_interaction_days, self.no_won_days):
            if limit is not None and self.warn_days >= limit:
                raise ValueError("warn_days must be less than the recycling days")
        return self


class RulePatch(RuleFields):
    """Only the fields sent change; an explicit null clears an optional limit or the exempt stage."""


class DraftPreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: RuleCreate = Field(description="The rule as it would be saved (POST /v1/pool/rules).")
    at: datetime | None = Field(default=None, description="The moment (ISO 8601); default: now.")
    limit: int = Field(default=500, ge=1, le=5000)
