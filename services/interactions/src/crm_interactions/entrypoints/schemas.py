"""What the API returns, and the query parameters of its lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from crm_interactions.domain import feedback as feedback_rules
from crm_interactions.domain import interactions as interaction_rules
from crm_interactions.domain import tasks as task_rules
from crm_platform.contracts.interactions import (
    Channel,
    FeedbackKind,
    FeedbackPriority,
    FeedbackSnapshot,
    FeedbackStatus,
    InteractionSnapshot,
    TaskSnapshot,
)
from crm_platform.customfields import field_name
from crm_platform.errors import ValidationFailed
from crm_platform.listing import all_of
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]


class InteractionOut(InteractionSnapshot):
    id: str
    version: int
    late_by_seconds: int = Field(description="How long after it happened it was logged.")


class TaskOut(TaskSnapshot):
    id: str
    version: int
    overdue: bool = Field(description="Open and past its due time.")


class StepOut(BaseModel):
    from_status: FeedbackStatus
    to_status: FeedbackStatus
    by: str
    at: datetime
    note: str | None = None


class FeedbackOut(FeedbackSnapshot):
    id: str
    version: int
    allowed_transitions: list[FeedbackStatus]
    steps: list[StepOut]


class InteractionPage(BaseModel):
    items: list[InteractionOut]
    next_cursor: str | None = None


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = None


class FeedbackPage(BaseModel):
    items: list[FeedbackOut]
    next_cursor: str | None = None


def interaction_out(doc: Document) -> InteractionOut:
    data = interaction_rules.snapshot(doc).model_dump()
    return InteractionOut(**data, id=doc["_id"], version=doc["version"], late_by_seconds=doc.get("late_by_seconds", 0))


def task_out(doc: Document, now: datetime) -> TaskOut:
    data = task_rules.snapshot(doc).model_dump()
    overdue = doc.get("status") == "open" and doc["due_at"] < now
    return TaskOut(**data, id=doc["_id"], version=doc["version"], overdue=overdue)


def feedback_out(doc: Document) -> FeedbackOut:
    data = feedback_rules.snapshot(doc).model_dump()
    steps = [
        StepOut(from_status=s["from"], to_status=s["to"], by=s["by"], at=s["at"], note=s.get("note"))
        for s in doc.get("steps") or []
    ]
    return FeedbackOut(
        **data,
        id=doc["_id"],
        version=doc["version"],
        allowed_transitions=list(feedback_rules.allowed_from(doc["status"])),
        steps=steps,
    )


# --- list parameters ---------------------------------------------------------------------------


class Paging(BaseModel):
    """A list's paging, and its ``custom.<key>=<value>`` filters (see :meth:`with_custom`)."""

    model_config = ConfigDict(extra="forbid")

    sort: str | None = Field(
        default=None,
        description="Comma-separated keys, '-' for descending; custom.<key> (or -custom.<key>) sorts on a "
        "custom field flagged sortable. custom.<key>=<value> filters on one flagged filterable (a number "
        "or date also <low>..<high>, either end left open; money <low>..<high> CNY).",
    )
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=500)
    #: ``custom.<key>=<value>`` filters, as store conditions: where each looks (the value
    #: ``custom.<key>``, or a date's or money's copy ``s.cfq_<key>``) and what it matches there.
    _custom: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _custom_apart(cls, data: Any) -> Any:
        # custom.<key> filters name fields administrators define: checked against the definitions
        # by the caller (crm_platform.customfields.query_filters), so left out here, not refused.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not str(k).startswith(field_name(""))}
        return data

    def with_custom(self, conditions: dict[str, Any]) -> Self:
        """These parameters with the ``custom.<key>`` filters' store conditions, as
        :meth:`crm_platform.customfields.FieldSet.conditions` makes them (equalities or ranges)."""
        self._custom = dict(conditions)
        return self

    def custom_clauses(self) -> list[Document]:
        # Served by the field's indexes behind each list prefix (repository
        # custom_field_indexes, on the field's filter path), kept while it is active and filterable.
        return [{path: value} for path, value in self._custom.items()]


class InteractionFilter(Paging):
    channel: str | None = Field(default=None, description="Comma-separated: phone,email,meeting,visit,social,note.")
    opportunity_id: str | None = None
    contact_id: str | None = None
    author_id: str | None = None
    customer_id: str | None = None
    lead_id: str | None = Field(default=None, description="A lead's follow-ups (as /v1/leads/{lead_id}/interactions).")
    occurred_from: AwareDatetime | None = Field(default=None, alias="from", description="Happened at or after.")
    occurred_to: AwareDatetime | None = Field(default=None, alias="to", description="Happened before.")
    recorded_late: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def channels(self) -> list[str]:
        allowed = set(Channel.__args__)  # type: ignore[attr-defined]
        values = [c.strip() for c in (self.channel or "").split(",") if c.strip()]
        bad = [c for c in values if c not in allowed]
        if bad:
            raise ValidationFailed.for_field(
                "channel", f"unknown channel {', '.join(bad)}; use {', '.join(sorted(allowed))}", "query"
            )
        return values

    def to_mongo(self) -> Document:
        clauses: list[Document] = []
        if channels := self.channels():
            clauses.append({"channel": {"$in": channels}})
        for name in ("opportunity_id", "author_id", "customer_id", "lead_id"):
            value = getattr(self, name)
            if value:
                clauses.append({name: value})
        if self.contact_id:
            clauses.append({"contact_ids": {"$in": [self.contact_id]}})
        bounds: Document = {}
        if self.occurred_from is not None:
            bounds["$gte"] = epoch_ms(self.occurred_from)
        if self.occurred_to is not None:
            bounds["$lt"] = epoch_ms(self.occurred_to)
        if bounds:
            # The integer copy: the embedded store serves a range on it from an index, not on a date.
            clauses.append({"s.occurred_at": bounds})
        if self.recorded_late is not None:
            clauses.append({"recorded_late": self.recorded_late})
        return all_of(*clauses, *self.custom_clauses())


class TaskFilter(Paging):
    view: task_rules.View = Field(default="all", description="overdue, today, week (in tz) or all.")
    scope: Literal["mine", "created", "team", "all"] = Field(
        default="mine",
        description="mine: assigned to you; created: you created; team: your department subtree (managers); "
        "all: every task (admins).",
    )
    status: Literal["open", "done", "all"] = "open"
    tz: str | None = Field(
        default=None, description="IANA time zone of 'today' and 'this week'; default Asia/Shanghai."
    )
    assignee_id: str | None = None
    customer_id: str | None = None
    opportunity_id: str | None = None
    lead_id: str | None = Field(default=None, description="The tasks of a lead (kept after its conversion).")

    def to_mongo(self) -> Document:
        clauses = [
            {name: getattr(self, name)}
            for name in ("assignee_id", "customer_id", "opportunity_id", "lead_id")
            if getattr(self, name)
        ]
        return all_of(*clauses, *self.custom_clauses())


class FeedbackFilter(Paging):
    status: str | None = Field(default=None, description="Comma-separated statuses.")
    kind: FeedbackKind | None = None
    priority: FeedbackPriority | None = None
    customer_id: str | None = None
    handler_id: str | None = None
    reported_by: str | None = None

    def to_mongo(self) -> Document:
        clauses: list[Document] = []
        if self.status:
            statuses = [s.strip() for s in self.status.split(",") if s.strip()]
            bad = [s for s in statuses if s not in feedback_rules.TRANSITIONS]
            if bad:
                raise ValidationFailed.for_field("status", f"unknown status {', '.join(bad)}", "query")
            clauses.append({"status": {"$in": statuses}})
        for name in ("kind", "priority", "customer_id", "handler_id", "reported_by"):
            value = getattr(self, name)
            if value:
                clauses.append({name: value})
        return all_of(*clauses, *self.custom_clauses())
