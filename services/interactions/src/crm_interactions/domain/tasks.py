"""The task aggregate's rules: plain functions over the stored document, no I/O.

A task arms two notices: ``reminder_due`` at ``remind_at`` and ``overdue`` at
``due_at``, each sent once (the time it went out is kept on the task). Rescheduling
arms them again; completing or deleting a task disarms them. ``next_fire_at`` is the
earliest armed notice (far in the future when none is), an indexed, never-null field
the scheduler queries (through its epoch-ms copy ``s.fire_at``: a range on a date is a
full scan on the embedded store).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from crm_interactions.domain.calendar import NEVER, day_bounds, to_millis, week_bounds
from crm_interactions.domain.interactions import TASKS
from crm_platform.auth import Principal
from crm_platform.contracts.interactions import FieldChange, TaskSnapshot
from crm_platform.errors import Conflict, Forbidden, ValidationFailed
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]
Notice = Literal["reminder_due", "overdue"]
View = Literal["overdue", "today", "week", "all"]

#: API sort keys -> stored, never-null, datetime-free copies (see crm_platform.sortkeys).
SORT_FIELDS = {"due_at": "s.due_at", "created_at": "s.created_at", "remind_at": "s.remind_at"}
#: The shape of the sort keys; documents stored with another are rewritten once at start-up.
SORT_KEYS_VERSION = 2  # 1: moments as epoch ms, the id's copy (s.id) as the last key; 2: s.fire_at

DEFAULT_SORT = "due_at"


def check_future(value: datetime, now: datetime, skew: timedelta, field: str) -> None:
    if value < now - skew:
        raise ValidationFailed.for_field(field, "is in the past")


def new_task(
    task_id: str,
    *,
    title: str,
    notes: str | None,
    due_at: datetime,
    remind_at: datetime | None,
    assignee_id: str,
    assignee_department_path: str | None,
    principal: Principal,
    customer_id: str | None,
    opportunity_id: str | None,
    interaction_id: str | None,
    now: datetime,
) -> Document:
    doc: Document = {
        "_id": task_id,
        "title": title,
        "notes": notes,
        "due_at": to_millis(due_at),
        "remind_at": to_millis(remind_at) if remind_at else None,
        "assignee_id": assignee_id,
        "assignee_department_path": assignee_department_path,
        "created_by": principal.user_id,
        "creator_department_path": principal.department_path,
        "customer_id": customer_id,
        "opportunity_id": opportunity_id,
        "interaction_id": interaction_id,
        "status": "open",
        "completed_at": None,
        "completed_by": None,
        "reminder_sent_at": None,
        "overdue_since": None,
        "hidden": False,
        "created_at": now,
        "updated_at": now,
    }
    return refresh(doc)


def next_fire_at(doc: Document) -> datetime:
    if doc.get("status") != "open" or doc.get("hidden"):
        return NEVER
    armed = [doc["due_at"]] if doc.get("overdue_since") is None else []
    if doc.get("remind_at") is not None and doc.get("reminder_sent_at") is None:
        armed.append(doc["remind_at"])
    return min(armed, default=NEVER)


def refresh(doc: Document) -> Document:
    doc["next_fire_at"] = next_fire_at(doc)
    doc["s"] = sort_keys(doc)
    return doc


def sort_keys(doc: Document) -> Document:
    """Moments as epoch ms and the id as tie-breaker: the embedded store serves ranges on those
    (every cursor page, the due-date views) from an index, but reads every row for a date."""
    return {
        "v": SORT_KEYS_VERSION,
        "due_at": epoch_ms(doc["due_at"]),
        "created_at": epoch_ms(doc["created_at"]),
        "remind_at": epoch_ms(doc.get("remind_at") or NEVER),
        # The scheduler's "due by now" (next_fire_at as epoch ms): its poll is an index range.
        "fire_at": epoch_ms(next_fire_at(doc)),
        "id": doc["_id"],
    }


def due_notice(doc: Document, now: datetime) -> Notice | None:
    """The first notice whose time has come and that has not gone out yet (reminder before overdue)."""
    if doc.get("status") != "open" or doc.get("hidden"):
        return None
    remind_at = doc.get("remind_at")
    if remind_at is not None and doc.get("reminder_sent_at") is None and remind_at <= now:
        return "reminder_due"
    if doc.get("overdue_since") is None and doc["due_at"] <= now:
        return "overdue"
    return None


def mark_sent(doc: Document, notice: Notice, now: datetime) -> Document:
    doc["reminder_sent_at" if notice == "reminder_due" else "overdue_since"] = now
    return refresh(doc)


def reschedule(doc: Document, due_at: datetime, remind_at: datetime | None) -> Document:
    ensure_open(doc, "reschedule")
    doc["due_at"] = to_millis(due_at)
    doc["remind_at"] = to_millis(remind_at) if remind_at else None
    # New times, new notices: both are armed again.
    doc["reminder_sent_at"] = None
    doc["overdue_since"] = None
    return refresh(doc)


def same_lead_time(doc: Document, due_at: datetime) -> datetime | None:
    """The reminder moved with the due time, keeping how long before it fires."""
    remind_at: datetime | None = doc.get("remind_at")
    if remind_at is None:
        return None
    lead: timedelta = doc["due_at"] - remind_at
    return due_at - lead


def complete(doc: Document, principal: Principal, now: datetime) -> Document:
    ensure_open(doc, "complete")
    doc.update(status="done", completed_at=now, completed_by=principal.user_id)
    return refresh(doc)


def reopen(doc: Document) -> Document:
    if doc.get("status") != "done":
        raise Conflict("Only a done task can be reopened.", extra={"current_status": doc.get("status")})
    # Notices already sent for these times stay sent; one not sent yet (done before due) is armed again.
    doc.update(status="open", completed_at=None, completed_by=None)
    return refresh(doc)


def ensure_open(doc: Document, action: str) -> None:
    if doc.get("status") != "open":
        raise Conflict(
            f"Cannot {action} a task that is {doc.get('status')}.", extra={"current_status": doc.get("status")}
        )


def can_act(principal: Principal, doc: Document) -> bool:
    """Assignee, creator, or a caller whose tasks scope reaches the assignee's or creator's department."""
    if principal.scope(TASKS) is None:
        return False
    if principal.user_id in (doc.get("assignee_id"), doc.get("created_by")):
        return True
    return principal.reaches_path(doc.get("assignee_department_path"), TASKS) or principal.reaches_path(
        doc.get("creator_department_path"), TASKS
    )


def ensure_may_assign(principal: Principal, assignee_id: str, assignee_department_path: str | None) -> None:
    """To oneself, or to people whose department the caller's tasks scope reaches (all: anyone)."""
    if assignee_id == principal.user_id or principal.reaches_path(assignee_department_path, TASKS):
        return
    raise Forbidden("You may assign tasks to yourself, or to people your tasks scope reaches.")


def apply_values(doc: Document, values: dict[str, Any]) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for name, value in values.items():
        if doc.get(name) != value:
            changes.append(FieldChange(field=name, old=doc.get(name), new=value))
            doc[name] = value
    return changes


def view_filter(view: View, now: datetime, tz: Any) -> Document:
    if view == "overdue":
        return {"s.due_at": {"$lt": epoch_ms(now)}}
    if view == "today":
        start, end = day_bounds(now, tz)
        return {"s.due_at": {"$gte": epoch_ms(start), "$lt": epoch_ms(end)}}
    if view == "week":
        start, end = week_bounds(now, tz)
        return {"s.due_at": {"$gte": epoch_ms(start), "$lt": epoch_ms(end)}}
    return {}


def snapshot(doc: Document) -> TaskSnapshot:
    values = {name: doc.get(name) for name in TaskSnapshot.model_fields if name in doc}
    values["task_id"] = doc["_id"]
    return TaskSnapshot.model_validate(values)
