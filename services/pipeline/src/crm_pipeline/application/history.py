"""Field-level history of opportunities, pipelines and targets, from their own events."""

from __future__ import annotations

from typing import Any

from crm_platform.events import EventEnvelope

Change = dict[str, Any]


def _move(data: dict[str, Any]) -> tuple[str, list[Change]]:
    move = data.get("move") or {}
    days = move.get("time_in_previous_stage_seconds")
    spent = f", after {days / 86400:.1f} days in {move.get('from_stage_name')}" if days is not None else ""
    changes = [{"field": "stage_id", "old": move.get("from_stage_id"), "new": move.get("to_stage_id")}]
    return f"{move.get('from_stage_name')} → {move.get('to_stage_name')}{spent}", changes


def summarise(event: EventEnvelope) -> tuple[str, list[Change]]:
    data = event.data
    kind = event.type.removeprefix("crm.")
    if kind == "opportunity.created":
        opp = data["opportunity"]
        fields = (
            "name",
            "customer_id",
            "amount",
            "currency",
            "expected_close_date",
            "probability",
            "stage_id",
            "owner_id",
        )
        return f"created in {opp['stage_name']}", [
            {"field": f, "old": None, "new": opp.get(f)} for f in fields if opp.get(f) is not None
        ]
    if kind == "opportunity.updated":
        changes = list(data.get("changes") or [])
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return "changed " + ", ".join(c["field"] for c in changes) + reason, changes
    if kind == "opportunity.stage_changed":
        return _move(data)
    if kind == "opportunity.won":
        summary, changes = _move(data)
        return f"won: {data.get('reason')} ({summary})", [*changes, {"field": "status", "old": "open", "new": "won"}]
    if kind == "opportunity.lost":
        summary, changes = _move(data)
        competitor = f" to {data['competitor']}" if data.get("competitor") else ""
        return f"lost{competitor}: {data.get('reason')} ({summary})", [
            *changes,
            {"field": "status", "old": "open", "new": "lost"},
        ]
    if kind == "opportunity.reopened":
        summary, changes = _move(data)
        return f"reopened: {data.get('reason')} ({summary})", [
            *changes,
            {"field": "status", "old": data.get("previous_status"), "new": "open"},
        ]
    if kind == "opportunity.owner_changed":
        return f"assigned to {data.get('owner_id')}", [
            {"field": "owner_id", "old": data.get("previous_owner_id"), "new": data.get("owner_id")},
            {
                "field": "department_path",
                "old": data.get("previous_department_path"),
                "new": data["opportunity"].get("department_path"),
            },
        ]
    if kind == "opportunity.customer_changed":
        return f"moved to customer {data.get('customer_id')} (customers merged)", [
            {"field": "customer_id", "old": data.get("previous_customer_id"), "new": data.get("customer_id")}
        ]
    if kind == "pipeline.configured":
        return f"pipeline {data.get('action', 'changed').replace('_', ' ')}", list(data.get("changes") or [])
    if kind == "target.set":
        target = data["target"]
        return f"target set to {target['amount']} {target['currency']}", [
            {"field": "amount", "old": data.get("previous_amount"), "new": target["amount"]}
        ]
    return kind, []
