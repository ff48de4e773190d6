"""Field-level history (查看历史): who changed what, when, from what to what.

The history is the customer's own events: the relay archives each published event
in the service's event log, and events still waiting in the outbox are shown too,
so a change appears in the history the moment it is written.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from crm_customers.domain.fields import redact_changes
from crm_platform.auth import Principal
from crm_platform.events import EventEnvelope
from crm_platform.history import HistoryEntry
from crm_platform.history import history as platform_history

Document = dict[str, Any]
_PROFILE = (
    "name",
    "uscc",
    "industry",
    "size",
    "address",
    "source",
    "tier",
    "lifecycle_stage",
    "tags",
    "phones",
    "emails",
    "website",
    "description",
)


def _summary(event: EventEnvelope) -> tuple[str, list[dict[str, Any]]]:
    data = event.data
    customer = data.get("customer") or {}
    kind = event.type.removeprefix("crm.customer.")
    if kind == "created":
        changes = [
            {"field": f, "old": None, "new": customer.get(f)} for f in _PROFILE if customer.get(f) not in (None, [], "")
        ]
        changes += [
            {"field": f"custom.{k}", "old": None, "new": v} for k, v in sorted((customer.get("custom") or {}).items())
        ]
        return f"created ({data.get('via', 'api')})", changes
    if kind == "updated":
        changes = data.get("changes", [])
        return "changed " + ", ".join(c["field"] for c in changes), changes
    if kind == "contact_added":
        return f"added contact {data['contact']['name']}", [{"field": "contacts", "old": None, "new": data["contact"]}]
    if kind == "contact_changed":
        name = data["contact"]["name"]
        changes = [
            {**c, "field": f"contacts[{data['contact']['contact_id']}].{c['field']}"} for c in data.get("changes", [])
        ]
        return f"changed contact {name}", changes
    if kind == "contact_removed":
        return "removed a contact", [{"field": "contacts", "old": data["contact_id"], "new": None}]
    if kind == "owner_changed":
        return f"assigned to {data.get('owner_id')}", [
            {"field": "owner_id", "old": data.get("previous_owner_id"), "new": data.get("owner_id")}
        ]
    if kind == "released":
        return f"released to the public pool: {data.get('reason')}", [
            {"field": "owner_id", "old": data.get("previous_owner_id"), "new": None}
        ]
    if kind == "claimed":
        return "claimed from the public pool", [{"field": "owner_id", "old": None, "new": data.get("owner_id")}]
    if kind == "merged":
        return f"merged {data.get('merged_customer_id')} into this customer", []
    if kind == "merged_away":
        return f"merged into {data.get('survivor_id')}", [{"field": "status", "old": "active", "new": "merged"}]
    if kind == "locked":
        return f"locked ({data.get('reason') or 'no reason given'})", [{"field": "locked", "old": False, "new": True}]
    if kind == "unlocked":
        return "unlocked", [{"field": "locked", "old": True, "new": False}]
    if kind == "deleted":
        return f"moved to the recycle bin ({data.get('reason') or 'no reason given'})", [
            {"field": "status", "old": "active", "new": "deleted"}
        ]
    if kind == "restored":
        return "restored from the recycle bin", [{"field": "status", "old": "deleted", "new": "active"}]
    return kind, []


async def history(event_log: AsyncCollection[Document], doc: Document) -> list[HistoryEntry]:
    return await platform_history(event_log, doc, _summary)


def redact(entries: list[HistoryEntry], principal: Principal) -> list[HistoryEntry]:
    """The history as this caller may see it: no change to a field their roles hide.

    An entry whose every change was hidden is left out (its summary would name the field);
    a "changed ..." summary names only the fields that remain.
    """
    if not (principal.fields("customers").hidden or principal.fields("contacts").hidden):
        return entries
    out: list[HistoryEntry] = []
    for entry in entries:
        changes = redact_changes(entry.changes, principal)
        if entry.changes and not changes:
            continue
        summary = entry.summary
        if len(changes) != len(entry.changes) and entry.type == "crm.customer.updated":
            summary = "changed " + ", ".join(str(c["field"]) for c in changes)
        out.append(entry.model_copy(update={"changes": changes, "summary": summary}))
    return out
