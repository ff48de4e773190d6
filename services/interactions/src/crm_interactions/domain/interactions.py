"""The interaction aggregate's rules: plain functions over the stored document, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from crm_interactions.domain.calendar import to_millis
from crm_interactions.domain.model import (
    CHANNEL_FIELDS,
    COMMON_FIELDS,
    REQUIRED_COMMON,
    REQUIRED_FIELDS,
    InteractionPatch,
    PhoneIn,
)
from crm_platform.auth import Principal
from crm_platform.contracts.interactions import FieldChange, InteractionSnapshot
from crm_platform.errors import FieldError, Forbidden, ValidationFailed
from crm_platform.sortkeys import epoch_ms

#: The data-scope modules this service honours (see the root README, "Who may do what").
INTERACTIONS = "interactions"
TASKS = "tasks"
FEEDBACK = "feedback"

Document = dict[str, Any]

#: API sort keys -> stored fields (both never null).
#: API sort keys -> stored, datetime-free copies (see crm_platform.sortkeys).
SORT_FIELDS = {"occurred_at": "s.occurred_at", "recorded_at": "s.recorded_at"}
#: The shape of the sort keys; documents stored with another are rewritten once at start-up.
SORT_KEYS_VERSION = 1  # 1: moments as epoch ms, the id's copy (s.id) as the last key

DEFAULT_SORT = "-occurred_at"

#: Every channel field, with its value when a channel does not have it.
_CHANNEL_DEFAULTS: dict[str, Any] = {
    "direction": None,
    "duration_seconds": None,
    "key_points": None,
    "objections": None,
    "subject": None,
    "participants": [],
    "body_excerpt": None,
    "message_id": None,
    "attendees": [],
    "location": None,
    "minutes": None,
    "platform": None,
    "content": None,
}


def is_late(occurred_at: datetime, recorded_at: datetime, late_after: timedelta) -> bool:
    """The 24-hour rule: logged more than ``late_after`` after it happened."""
    return recorded_at - occurred_at > late_after


def check_occurred_at(occurred_at: datetime, now: datetime, skew: timedelta, field: str = "occurred_at") -> None:
    if occurred_at > now + skew:
        raise ValidationFailed.for_field(field, "is in the future; log what has happened")


def new_interaction(
    interaction_id: str,
    data: PhoneIn | Any,
    principal: Principal,
    now: datetime,
    *,
    late_after: timedelta,
    skew: timedelta,
) -> Document:
    check_occurred_at(data.occurred_at, now, skew)
    given = data.model_dump(mode="python")
    doc: Document = {
        "_id": interaction_id,
        "channel": data.channel,
        "customer_id": data.customer_id,
        "lead_id": data.lead_id,
        "contact_ids": list(data.contact_ids),
        "opportunity_id": data.opportunity_id,
        "author_id": principal.user_id,
        "author_department_path": principal.department_path,
        "occurred_at": to_millis(data.occurred_at),
        "recorded_at": now,
        "summary": data.summary,
        **_CHANNEL_DEFAULTS,
    }
    for name in CHANNEL_FIELDS[data.channel] | {"message_id"}:
        if name in given:
            doc[name] = given[name]
    if doc.get("message_id"):
        # Only emails with a Message-ID carry the key: the sparse unique index makes a second sync collide.
        doc["message_key"] = doc["message_id"]
    doc.update({"status": "active", "hidden": False, "created_at": now, "updated_at": now, "updated_by": None})
    refresh(doc, late_after)
    return doc


def refresh(doc: Document, late_after: timedelta) -> Document:
    """Recompute what is derived: lateness, and the whole seconds it was late by (for reports)."""
    doc["recorded_late"] = is_late(doc["occurred_at"], doc["recorded_at"], late_after)
    doc["late_by_seconds"] = max(0, int((doc["recorded_at"] - doc["occurred_at"]).total_seconds()))
    doc["s"] = sort_keys(doc)
    return doc


def sort_keys(doc: Document) -> Document:
    """Moments as epoch ms and the id as tie-breaker: the embedded store serves a range on those
    (every cursor page) from an index, but reads every row for a range on a date or on _id."""
    return {
        "v": SORT_KEYS_VERSION,
        "occurred_at": epoch_ms(doc["occurred_at"]),
        "recorded_at": epoch_ms(doc["recorded_at"]),
        "id": doc["_id"],
    }


def snapshot(doc: Document) -> InteractionSnapshot:
    fields = InteractionSnapshot.model_fields
    values = {name: doc.get(name) for name in fields if name in doc}
    values["interaction_id"] = doc["_id"]
    for name in ("participants", "attendees", "contact_ids"):
        values[name] = list(doc.get(name) or [])
    return InteractionSnapshot.model_validate(values)


def can_edit(principal: Principal, doc: Document) -> bool:
    """The author, or a caller whose interactions scope reaches the author's department."""
    return principal.can_see_owned(doc.get("author_id"), doc.get("author_department_path"), module=INTERACTIONS)


def ensure_can_edit(principal: Principal, doc: Document) -> None:
    if not can_edit(principal, doc):
        raise Forbidden(
            "Only the author, or someone whose interactions scope reaches the author's department,"
            " may change this interaction."
        )


def patch_changes(doc: Document, patch: InteractionPatch) -> dict[str, Any]:
    """The fields the patch sets, checked against the channel; raises 422 naming every bad field."""
    channel = doc["channel"]
    allowed = COMMON_FIELDS | CHANNEL_FIELDS[channel]
    required = REQUIRED_COMMON | REQUIRED_FIELDS.get(channel, frozenset())
    values = patch.model_dump(mode="python", include=patch.model_fields_set - {"custom"})  # custom: apart
    errors: list[FieldError] = []
    for name, value in values.items():
        if name not in allowed:
            errors.append(FieldError(field=name, reason=f"a {channel} interaction has no {name}"))
        elif value is None and name in required:
            errors.append(FieldError(field=name, reason=f"a {channel} interaction needs it; it cannot be cleared"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    if values.get("occurred_at") is not None:
        values["occurred_at"] = to_millis(values["occurred_at"])
    return values


def apply_values(doc: Document, values: dict[str, Any], late_after: timedelta) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for name, value in values.items():
        if name in ("participants", "attendees", "contact_ids") and value is None:
            value = []
        old = doc.get(name)
        if old != value:
            changes.append(FieldChange(field=name, old=_jsonable(old), new=_jsonable(value)))
            doc[name] = value
    if changes:
        refresh(doc, late_after)
    return changes


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
