"""Field-level history of users, departments and roles, from their own events.

The generic part (event log plus pending outbox, in version order) is
``crm_platform.history``; this module turns each directory event into a sentence
and a list of ``{field, old, new}``. Users and departments have separate id spaces,
so entries are kept to the aggregate's own event types (roles too).
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.events import EventEnvelope
from crm_platform.history import HistoryEntry, history

Document = dict[str, Any]
_USER_FIELDS = (
    "email",
    "name",
    "phone",
    "language",
    "time_zone",
    "roles",
    "department_id",
    "department_path",
    "status",
)
_DEPARTMENT_FIELDS = ("name", "parent_id", "path", "manager_id")


def summarise_user(event: EventEnvelope) -> tuple[str, list[dict[str, Any]]]:
    data = event.data
    user = data.get("user") or {}
    kind = event.type.removeprefix("crm.user.")
    if kind == "created":
        changes = [{"field": f, "old": None, "new": user.get(f)} for f in _USER_FIELDS if user.get(f) not in (None, [])]
        return f"created ({data.get('via', 'api')})", changes
    if kind == "updated":
        changes = list(data.get("changes") or [])
        cause = data.get("cause") or ""
        if cause.startswith("department_moved:"):
            return f"department path changed: department {cause.split(':', 1)[1]} moved", changes
        return "changed " + ", ".join(str(c["field"]) for c in changes), changes
    if kind == "deactivated":
        reason = data.get("reason") or "no reason given"
        return f"deactivated ({reason})", [{"field": "status", "old": "active", "new": "deactivated"}]
    if kind == "reactivated":
        return "reactivated", [{"field": "status", "old": "deactivated", "new": "active"}]
    if kind == "password_changed":
        who = "by the user" if data.get("by") == "self" else "by an administrator"
        return f"password changed {who}", [{"field": "password", "old": None, "new": None}]
    return kind, []


def summarise_department(event: EventEnvelope) -> tuple[str, list[dict[str, Any]]]:
    data = event.data
    department = data.get("department") or {}
    kind = event.type.removeprefix("crm.department.")
    if kind == "created":
        changes = [
            {"field": f, "old": None, "new": department.get(f)}
            for f in _DEPARTMENT_FIELDS
            if department.get(f) is not None
        ]
        return "created", changes
    if kind == "renamed":
        return f"renamed to {data['new_name']}", [{"field": "name", "old": data["old_name"], "new": data["new_name"]}]
    if kind == "moved":
        changes = [{"field": "path", "old": data["old_path"], "new": data["new_path"]}]
        if data.get("old_parent_id") != data.get("new_parent_id"):
            changes.insert(
                0, {"field": "parent_id", "old": data.get("old_parent_id"), "new": data.get("new_parent_id")}
            )
            return f"moved under {data.get('new_parent_id') or 'the top level'}", changes
        return f"path changed: department {data.get('moved_department_id')} moved", changes
    if kind == "manager_changed":
        return f"manager changed to {data.get('new_manager_id') or 'nobody'}", [
            {"field": "manager_id", "old": data.get("old_manager_id"), "new": data.get("new_manager_id")}
        ]
    if kind == "deleted":
        return "deleted", [{"field": "status", "old": "active", "new": "deleted"}]
    return kind, []


def summarise_role(event: EventEnvelope) -> tuple[str, list[dict[str, Any]]]:
    data = event.data
    role = data.get("role") or {}
    kind = event.type.removeprefix("crm.role.")
    if kind == "created":
        fields = ("names", "description", "permissions", "scopes", "fields")
        changes = [{"field": f, "old": None, "new": role.get(f)} for f in fields if role.get(f) not in (None, [], {})]
        return f"created ({data.get('via', 'api')})", changes
    if kind == "updated":
        changes = list(data.get("changes") or [])
        return "changed " + ", ".join(str(c["field"]) for c in changes), changes
    if kind == "deleted":
        return "deleted", [{"field": "status", "old": "active", "new": "deleted"}]
    return kind, []


async def role_history(event_log: AsyncCollection[Document], doc: Document) -> list[HistoryEntry]:
    entries = await history(event_log, doc, summarise_role)
    return [e for e in entries if e.type.startswith("crm.role.")]


async def user_history(event_log: AsyncCollection[Document], doc: Document) -> list[HistoryEntry]:
    entries = await history(event_log, doc, summarise_user)
    return [e for e in entries if e.type.startswith("crm.user.")]


async def department_history(event_log: AsyncCollection[Document], doc: Document) -> list[HistoryEntry]:
    entries = await history(event_log, doc, summarise_department)
    return [e for e in entries if e.type.startswith("crm.department.")]
