"""Customer feedback's rules: the status machine, plain functions, no I/O.

    open ──► in_progress ──► resolved ──► closed
      ▲                         │            │
      └──────── reopen ─────────┴────────────┘

Resolving needs a resolution; the customer's satisfaction (1-5) is recorded on
resolve or close, and a complaint is not closed without it (the loop is closed
with the customer, 回访). Reopening clears the resolution and counts the reopen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_interactions.domain.model import TransitionIn
from crm_platform.auth import Principal
from crm_platform.contracts.interactions import FeedbackSnapshot, FeedbackStatus, FieldChange
from crm_platform.errors import Conflict, ValidationFailed
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]

TRANSITIONS: dict[str, tuple[FeedbackStatus, ...]] = {
    "open": ("in_progress",),
    "in_progress": ("resolved",),
    "resolved": ("closed", "open"),
    "closed": ("open",),
}

#: API sort keys -> stored, datetime-free copies (see crm_platform.sortkeys).
SORT_FIELDS = {"opened_at": "s.opened_at", "updated_at": "s.updated_at", "priority": "s.priority"}
#: The shape of the sort keys; documents stored with another are rewritten once at start-up.
SORT_KEYS_VERSION = 1  # 1: moments as epoch ms, the id's copy (s.id) as the last key

DEFAULT_SORT = "-opened_at"
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


def allowed_from(status: str) -> tuple[FeedbackStatus, ...]:
    return TRANSITIONS.get(status, ())


def ensure_allowed(current: str, target: str) -> None:
    allowed = allowed_from(current)
    if target not in allowed:
        raise Conflict(
            f"Feedback that is {current} cannot move to {target}; it can move to: {', '.join(allowed) or 'nothing'}.",
            extra={"current_status": current, "allowed": list(allowed)},
        )


def new_feedback(
    feedback_id: str,
    *,
    kind: str,
    title: str,
    description: str,
    priority: str,
    customer_id: str,
    contact_id: str | None,
    handler_id: str | None,
    handler_department_path: str | None,
    principal: Principal,
    now: datetime,
) -> Document:
    doc: Document = {
        "_id": feedback_id,
        "kind": kind,
        "priority": priority,
        "title": title,
        "description": description,
        "customer_id": customer_id,
        "contact_id": contact_id,
        "status": "open",
        "reported_by": principal.user_id,
        "reporter_department_path": principal.department_path,
        "handler_id": handler_id,
        "handler_department_path": handler_department_path,
        "resolution": None,
        "satisfaction": None,
        "reopen_count": 0,
        "opened_at": now,
        "resolved_at": None,
        "closed_at": None,
        "hidden": False,
        "updated_at": now,
        "steps": [],
    }
    return refresh(doc)


def refresh(doc: Document) -> Document:
    doc["s"] = sort_keys(doc)
    return doc


def sort_keys(doc: Document) -> Document:
    """Moments as epoch ms and the id as tie-breaker: the embedded store serves a range on those
    (every cursor page) from an index, but reads every row for a range on a date or on _id."""
    return {
        "v": SORT_KEYS_VERSION,
        "priority": PRIORITY_RANK.get(doc.get("priority") or "normal", 1),
        "opened_at": epoch_ms(doc["opened_at"]),
        "updated_at": epoch_ms(doc.get("updated_at") or doc["opened_at"]),
        "id": doc["_id"],
    }


def transition(
    doc: Document,
    move: TransitionIn,
    principal: Principal,
    now: datetime,
    *,
    handler_department_path: str | None = None,
) -> FeedbackStatus:
    """Apply one status move to ``doc``; returns the status it left. Raises 409/422 before changing anything."""
    current: FeedbackStatus = doc["status"]
    target = move.status
    ensure_allowed(current, target)
    if move.satisfaction is not None and target not in ("resolved", "closed"):
        raise ValidationFailed.for_field("satisfaction", "is recorded when resolving or closing")
    if move.resolution is not None and target != "resolved":
        raise ValidationFailed.for_field("resolution", "is given when resolving")
    if target == "in_progress":
        if move.handler_id is not None:
            doc["handler_id"] = move.handler_id
            doc["handler_department_path"] = handler_department_path
        elif doc.get("handler_id") is None:
            doc["handler_id"] = principal.user_id
            doc["handler_department_path"] = principal.department_path
    elif target == "resolved":
        if not move.resolution:
            raise ValidationFailed.for_field("resolution", "say how it was resolved")
        doc["resolution"] = move.resolution
        doc["resolved_at"] = now
        doc["resolved_by"] = principal.user_id
        if move.satisfaction is not None:
            doc["satisfaction"] = move.satisfaction
    elif target == "closed":
        if move.satisfaction is not None:
            doc["satisfaction"] = move.satisfaction
        if doc["kind"] == "complaint" and doc.get("satisfaction") is None:
            raise ValidationFailed.for_field(
                "satisfaction", "a complaint is closed with the customer's satisfaction (1-5)"
            )
        doc["closed_at"] = now
        doc["closed_by"] = principal.user_id
    elif target == "open":
        doc["reopen_count"] = int(doc.get("reopen_count") or 0) + 1
        doc.update(resolution=None, satisfaction=None, resolved_at=None, closed_at=None)
    doc["status"] = target
    doc["updated_at"] = now
    doc["steps"] = [
        *doc.get("steps", []),
        {"from": current, "to": target, "by": principal.user_id, "at": now, "note": move.note},
    ]
    refresh(doc)  # the updated_at sort key follows the change of status
    return current


def apply_values(doc: Document, values: dict[str, Any]) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for name, value in values.items():
        if doc.get(name) != value:
            changes.append(FieldChange(field=name, old=doc.get(name), new=value))
            doc[name] = value
    refresh(doc)
    return changes


def ensure_editable(doc: Document) -> None:
    if doc["status"] == "closed":
        raise Conflict("Closed feedback cannot be changed; reopen it first.", extra={"current_status": "closed"})


def snapshot(doc: Document) -> FeedbackSnapshot:
    values = {name: doc.get(name) for name in FeedbackSnapshot.model_fields if name in doc}
    values["feedback_id"] = doc["_id"]
    return FeedbackSnapshot.model_validate(values)
