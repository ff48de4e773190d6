"""Field-level history (查看历史) of interactions, tasks and feedback, from their own events
(read through :mod:`crm_platform.history`)."""

from __future__ import annotations

from typing import Any

from crm_platform.events import EventEnvelope

Change = dict[str, Any]

_INTERACTION_FIELDS = (
    "channel",
    "customer_id",
    "contact_ids",
    "opportunity_id",
    "occurred_at",
    "summary",
    "direction",
    "duration_seconds",
    "subject",
    "platform",
    "location",
    "recorded_late",
)
_TASK_FIELDS = ("title", "due_at", "remind_at", "assignee_id", "customer_id", "opportunity_id")
_FEEDBACK_FIELDS = ("kind", "priority", "title", "customer_id", "contact_id", "handler_id")


def _created(snapshot: dict[str, Any], fields: tuple[str, ...]) -> list[Change]:
    return [{"field": f, "old": None, "new": snapshot.get(f)} for f in fields if snapshot.get(f) not in (None, [], "")]


def _changed(data: dict[str, Any], what: str) -> tuple[str, list[Change]]:
    changes = list(data.get("changes") or [])
    reason = f" ({data['reason']})" if data.get("reason") else ""
    return f"{what} changed: " + ", ".join(c["field"] for c in changes) + reason, changes


def summarise(event: EventEnvelope) -> tuple[str, list[Change]]:
    data = event.data
    kind = event.type.removeprefix("crm.")
    if kind == "interaction.logged":
        snapshot = data.get("interaction") or data
        late = " (recorded late)" if data.get("recorded_late") else ""
        return f"{data['channel']} logged{late}", _created(snapshot, _INTERACTION_FIELDS)
    if kind == "interaction.updated":
        return _changed(data, "interaction")
    if kind == "interaction.deleted":
        return f"deleted ({data.get('reason') or 'no reason given'})", [
            {"field": "status", "old": "active", "new": "deleted"}
        ]
    task = data.get("task") or {}
    if kind == "task.created":
        return f"task created for {task.get('assignee_id')}", _created(task, _TASK_FIELDS)
    if kind == "task.updated":
        return _changed(data, "task")
    if kind == "task.rescheduled":
        return "rescheduled" + (f" ({data['reason']})" if data.get("reason") else ""), [
            {"field": "due_at", "old": data.get("previous_due_at"), "new": task.get("due_at")},
            {"field": "remind_at", "old": data.get("previous_remind_at"), "new": task.get("remind_at")},
        ]
    if kind == "task.completed":
        return "completed" + (f": {data['note']}" if data.get("note") else ""), [
            {"field": "status", "old": "open", "new": "done"}
        ]
    if kind == "task.reopened":
        return "reopened" + (f": {data['reason']}" if data.get("reason") else ""), [
            {"field": "status", "old": "done", "new": "open"}
        ]
    if kind == "task.deleted":
        return f"deleted ({data.get('reason') or 'no reason given'})", [
            {"field": "status", "old": task.get("status"), "new": "deleted"}
        ]
    if kind == "task.reminder_due":
        return f"reminder sent to {task.get('assignee_id')}", [
            {"field": "reminder_sent_at", "old": None, "new": task.get("reminder_sent_at")}
        ]
    if kind == "task.overdue":
        return "overdue", [{"field": "overdue_since", "old": None, "new": task.get("overdue_since")}]
    feedback = data.get("feedback") or {}
    if kind == "feedback.opened":
        return f"{feedback.get('kind')} recorded", _created(feedback, _FEEDBACK_FIELDS)
    if kind == "feedback.updated":
        return _changed(data, "feedback")
    if kind == "feedback.status_changed":
        note = f": {data['note']}" if data.get("note") else ""
        changes = [{"field": "status", "old": data.get("from_status"), "new": data.get("to_status")}]
        if data.get("to_status") == "closed" and feedback.get("satisfaction") is not None:
            changes.append({"field": "satisfaction", "old": None, "new": feedback["satisfaction"]})
        return f"{data.get('from_status')} → {data.get('to_status')}{note}", changes
    if kind == "feedback.resolved":
        changes = [
            {"field": "status", "old": data.get("from_status"), "new": "resolved"},
        ]
        if "resolution" in data:
            changes.append({"field": "resolution", "old": None, "new": data["resolution"]})
        if data.get("satisfaction") is not None:
            changes.append({"field": "satisfaction", "old": None, "new": data.get("satisfaction")})
        # The resolution is left out of what a reader whose roles hide it receives.
        resolution = data.get("resolution")
        return ("resolved: " + resolution if resolution else "resolved"), changes
    return kind, []
