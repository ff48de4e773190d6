"""One-line summaries of events for the customer timeline (pure: envelope data in, text out)."""

from __future__ import annotations

from typing import Any

Data = dict[str, Any]


def _changes(data: Data) -> str:
    fields = [c.get("field", "?") for c in data.get("changes") or []]
    return ", ".join(fields) if fields else "-"


def summarize(event_type: str, data: Data) -> str:
    """What happened, in one line a rep reads before a visit."""
    kind = event_type.removeprefix("crm.")
    customer = data.get("customer") or {}
    opp = data.get("opportunity") or {}
    interaction = data.get("interaction") or {}
    task = data.get("task") or {}
    feedback = data.get("feedback") or {}
    move = data.get("move") or {}
    match kind:
        case "customer.created":
            return f"Customer {customer.get('name')} created ({data.get('via', 'api')})"
        case "customer.updated":
            return f"Customer updated: {_changes(data)}"
        case "customer.contact_added":
            return f"Contact added: {(data.get('contact') or {}).get('name')}"
        case "customer.contact_changed":
            return f"Contact {(data.get('contact') or {}).get('name')} changed: {_changes(data)}"
        case "customer.contact_removed":
            return f"Contact {data.get('contact_id')} removed"
        case "customer.owner_changed":
            return f"Owner changed from {data.get('previous_owner_id')} to {data.get('owner_id')}"
        case "customer.released":
            return f"Released to the public pool: {data.get('reason')}"
        case "customer.claimed":
            return f"Claimed from the public pool by {data.get('owner_id')}"
        case "customer.merged":
            return f"Customer {data.get('merged_customer_id')} merged into this one"
        case "customer.merged_away":
            return f"Merged into customer {data.get('survivor_id')}"
        case "opportunity.created":
            return f"Opportunity {opp.get('name')} created{_amount(opp)}"
        case "opportunity.stage_changed":
            return f"Opportunity {opp.get('name')}: {move.get('from_stage_name')} → {move.get('to_stage_name')}"
        case "opportunity.won":
            return f"Opportunity {opp.get('name')} won{_amount(opp)}"
        case "opportunity.lost":
            return f"Opportunity {opp.get('name')} lost: {data.get('reason')}"
        case "opportunity.reopened":
            return f"Opportunity {opp.get('name')} reopened: {data.get('reason')}"
        case "opportunity.updated":
            return f"Opportunity {opp.get('name')} updated: {_changes(data)}"
        case "opportunity.owner_changed":
            return f"Opportunity {opp.get('name')} assigned to {data.get('owner_id')}"
        case "opportunity.customer_changed":
            return f"Opportunity {opp.get('name')} moved from customer {data.get('previous_customer_id')}"
        case "interaction.logged":
            text = interaction.get("summary") or interaction.get("subject") or ""
            return f"{data.get('channel')} logged" + (f": {text}" if text else "")
        case "interaction.updated":
            return f"{interaction.get('channel')} updated: {_changes(data)}"
        case "interaction.deleted":
            return f"{interaction.get('channel')} deleted"
        case "feedback.opened":
            return f"{feedback.get('kind')} opened: {feedback.get('title')}"
        case "feedback.resolved":
            return f"{feedback.get('kind')} resolved: {data.get('resolution')}"
        case "feedback.status_changed":
            return f"{feedback.get('kind')} {data.get('from_status')} → {data.get('to_status')}"
        case "pool.recycle_warning":
            return f"Returns to the public pool in {data.get('days_left')} days ({data.get('reason')})"
        case "pool.release_decided":
            return f"Release to the public pool decided: {data.get('reason_text')}"
    if task:
        return f"Task {task.get('title')}: {kind.removeprefix('task.')}"
    if feedback:
        return f"{feedback.get('kind')} {feedback.get('title')}: {kind.removeprefix('feedback.')}"
    return kind


def _amount(opp: Data) -> str:
    """ ": 120000.00 CNY", or nothing when the opportunity has no amount yet (not "None CNY")."""
    return f": {opp['amount']} {opp.get('currency') or ''}".rstrip() if opp.get("amount") is not None else ""
