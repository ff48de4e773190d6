"""What the audit log keeps of an event: one entry per auditable action (no I/O here).

An entry says who (the actor's id, and name when the directory knows it), when (the event's
time), from where (the client address the owning service saw, through its trusted proxies),
what (an action, the target's type and id) and the details that matter for that action (a
merge's two customers, a role change's old and new roles, a webhook's URL and changes, a custom
field definition's changes...).

Which events are audited, and how each becomes an entry, is the table :data:`RULES`; events on
the directory topic that it does not name but whose type is ``crm.role.*`` (administrator-defined
roles) are kept generically (:func:`generic_entry`). Everything else is business history, which
stays with the services that own it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_platform.contracts import custom_fields as fev
from crm_platform.contracts import customers as cev
from crm_platform.contracts import directory as dev
from crm_platform.contracts import export_approval as xev
from crm_platform.events import EventEnvelope

Document = dict[str, Any]
Rule = Callable[[EventEnvelope], tuple[str, Document] | None]
#: A generic entry keeps at most this many characters of the event's data (as JSON-ready values).
MAX_GENERIC_TEXT = 2000
#: Event types the audit log takes generically (role events of the directory, whatever their verb).
GENERIC_PREFIXES = ("crm.role.",)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    entry_id: str  # the event id: a repeated delivery finds it stored already
    at: datetime
    action: str
    target_type: str
    target_id: str
    actor_id: str | None = None
    client_address: str | None = None
    source: str = ""
    event_type: str = ""
    details: Document = field(default_factory=dict)


def moment_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def sort_key(at_ms: int, entry_id: str) -> str:
    """The one key entries are listed by (newest first) and ranged on (from/to, the cursor, the purge):
    the moment in epoch milliseconds, zero-padded so text order is time order, then the id, so it is
    unique. A range on one indexed string field is what the embedded store serves from an index."""
    return f"{max(at_ms, 0):015d}:{entry_id}"


def bound(at: datetime) -> str:
    """The sort key every entry at or after ``at`` is greater than or equal to."""
    return f"{max(moment_ms(at), 0):015d}:"


# --- the rules: event type -> entry ----------------------------------------------------------------


def _customer_merged(e: EventEnvelope) -> tuple[str, Document]:
    return "customer.merged", {
        "survivor_id": e.subject,
        "merged_customer_id": e.data.get("merged_customer_id"),
        "survivor_name": (e.data.get("customer") or {}).get("name"),
        "moved_contact_ids": e.data.get("moved_contact_ids", []),
    }


def _customer_purged(e: EventEnvelope) -> tuple[str, Document]:
    return "customer.purged", {}


def _customers_imported(e: EventEnvelope) -> tuple[str, Document]:
    keys = ("total_rows", "valid_rows", "imported", "errors", "duplicates")
    return "customer.imported", {k: e.data.get(k) for k in keys}


def _customer_exported(e: EventEnvelope) -> tuple[str, Document]:
    return "customer.exported", {"filter": e.data.get("filter", {}), "rows": e.data.get("rows")}


def _export_policy_changed(e: EventEnvelope) -> tuple[str, Document]:
    return "customer.export_policy_changed", {
        "approval_above_rows": e.data.get("approval_above_rows"),
        "previous": e.data.get("previous"),
    }


def _export_request(verb: str) -> Rule:
    """An export request's steps: the filter and rows asked for, who asked, the decision and its comment."""

    def rule(e: EventEnvelope) -> tuple[str, Document]:
        request = e.data.get("request") or {}
        details: Document = {
            "requester_id": request.get("requester_id"),
            "filter": request.get("filter", {}),
            "rows": e.data.get("rows", request.get("rows")),
            "threshold": request.get("threshold"),
        }
        if verb in ("approved", "rejected"):
            details |= {"comment": request.get("comment"), "valid_until": request.get("valid_until")}
        return f"customer.export_{verb}", details

    return rule


def _user(verb: str) -> Callable[[EventEnvelope], tuple[str, Document] | None]:
    def rule(e: EventEnvelope) -> tuple[str, Document] | None:
        user = e.data.get("user") or {}
        details: Document = {"email": user.get("email"), "name": user.get("name"), "roles": user.get("roles")}
        action = f"user.{verb}"
        if verb == "updated":
            if e.data.get("cause"):
                return None  # moved along with its department: the department's move is the audited action
            changes = e.data.get("changes", [])
            details["changes"] = changes
            if any(c.get("field") == "roles" for c in changes):
                action = "user.roles_changed"
        elif verb == "created":
            details |= {"department_path": user.get("department_path"), "via": e.data.get("via")}
        elif verb == "deactivated":
            details["reason"] = e.data.get("reason")
        elif verb == "password_changed":
            details["by"] = e.data.get("by")
        return action, details

    return rule


def _department(verb: str) -> Callable[[EventEnvelope], tuple[str, Document] | None]:
    def rule(e: EventEnvelope) -> tuple[str, Document] | None:
        department = e.data.get("department") or {}
        if verb == "moved" and e.data.get("moved_department_id") not in (None, e.subject):
            return None  # a department below the one moved: one entry for the move is enough
        details: Document = {"name": department.get("name"), "path": department.get("path")}
        details |= {k: v for k, v in e.data.items() if k != "department"}
        return f"department.{verb}", details

    return rule


def _webhook(verb: str) -> Callable[[EventEnvelope], tuple[str, Document] | None]:
    def rule(e: EventEnvelope) -> tuple[str, Document] | None:
        subscription = e.data.get("subscription") or {}
        details: Document = {
            "url": subscription.get("url"),
            "event_types": subscription.get("event_types"),
            "enabled": subscription.get("enabled"),
            "owner_id": subscription.get("owner_id"),
        }
        details |= {k: v for k, v in e.data.items() if k != "subscription"}
        return f"webhook.{verb}", details

    return rule


def _custom_field(verb: str) -> Rule:
    """A custom field definition defined, changed or archived by an administrator (whatever the
    owning service's topic): the module, key and type, and what changed."""

    def rule(e: EventEnvelope) -> tuple[str, Document]:
        definition = e.data.get("field") or {}
        details: Document = {k: definition.get(k) for k in ("module", "key", "type")}
        if verb == "changed":
            details["changes"] = e.data.get("changes", [])
        elif verb == "defined":
            details |= {k: definition.get(k) for k in ("required", "filterable", "sortable", "labels")}
        return f"custom_field.{verb}", details

    return rule


def _signed_in(e: EventEnvelope) -> tuple[str, Document]:
    return "auth.signed_in", {"email": e.data.get("email")}


def _sign_in_failed(e: EventEnvelope) -> tuple[str, Document]:
    return "auth.sign_in_failed", {"email": e.data.get("email"), "reason": e.data.get("reason")}


#: Event type -> (target type, rule). A rule answers None for an event of its type that is not audited.
RULES: Mapping[str, tuple[str, Rule]] = {
    "crm.customer.merged": ("customer", _customer_merged),
    "crm.customer.purged": ("customer", _customer_purged),
    cev.CUSTOMERS_IMPORTED.name: ("customers_import", _customers_imported),
    cev.CUSTOMERS_EXPORTED.name: ("customers_export", _customer_exported),
    xev.EXPORT_POLICY_CHANGED.name: ("export_policy", _export_policy_changed),
    xev.EXPORT_REQUESTED.name: ("export_request", _export_request("requested")),
    xev.EXPORT_APPROVED.name: ("export_request", _export_request("approved")),
    xev.EXPORT_REJECTED.name: ("export_request", _export_request("rejected")),
    xev.EXPORT_DOWNLOADED.name: ("export_request", _export_request("downloaded")),
    **{f"crm.user.{v}": ("user", _user(v)) for v in ("created", "updated", "deactivated", "reactivated")},
    "crm.user.password_changed": ("user", _user("password_changed")),
    **{
        f"crm.department.{v}": ("department", _department(v))
        for v in ("created", "renamed", "moved", "manager_changed", "deleted")
    },
    **{
        f"crm.webhook.subscription_{v}": ("webhook", _webhook(f"subscription_{v}"))
        for v in ("created", "changed", "disabled", "deleted")
    },
    **{t.name: ("custom_field", _custom_field(t.name.rsplit(".", 1)[1])) for t in fev.FIELD_EVENTS},
    dev.SIGNED_IN.name: ("user", _signed_in),
    dev.SIGN_IN_FAILED.name: ("sign_in", _sign_in_failed),
}


def entry_for(envelope: EventEnvelope) -> Entry | None:
    """The entry an event makes, or None when it is not an auditable action."""
    known = RULES.get(envelope.type)
    if known is not None:
        target_type, rule = known
        made = rule(envelope)
        if made is None:
            return None
        action, details = made
        return _entry(envelope, action, target_type, details)
    if envelope.type.startswith(GENERIC_PREFIXES):
        return generic_entry(envelope)
    return None


def generic_entry(envelope: EventEnvelope) -> Entry:
    """An event of a type the table does not name (e.g. ``crm.role.created``): its data, bounded."""
    aggregate = envelope.type.split(".")[1] if envelope.type.count(".") >= 2 else "event"
    details = _bounded(envelope.data)
    return _entry(envelope, envelope.type.removeprefix("crm."), aggregate, details)


def _bounded(data: Document) -> Document:
    text = repr(data)
    if len(text) <= MAX_GENERIC_TEXT:
        return dict(data)
    return {"truncated": True, "text": text[:MAX_GENERIC_TEXT]}


def _entry(envelope: EventEnvelope, action: str, target_type: str, details: Document) -> Entry:
    return Entry(
        entry_id=envelope.id,
        at=envelope.time.astimezone(UTC) if envelope.time.tzinfo else envelope.time.replace(tzinfo=UTC),
        action=action,
        target_type=target_type,
        target_id=envelope.subject,
        actor_id=envelope.actor,
        client_address=envelope.clientaddress,
        source=envelope.source,
        event_type=envelope.type,
        details=details,
    )


def to_document(entry: Entry, actor_name: str | None) -> Document:
    """The stored form: ``_id`` is the event id; ``k`` orders and ranges (see :func:`sort_key`)."""
    at_ms = moment_ms(entry.at)
    return {
        "_id": entry.entry_id,
        "k": sort_key(at_ms, entry.entry_id),
        "at_ms": at_ms,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "actor_id": entry.actor_id or "",
        "actor_name": actor_name,
        "client_address": entry.client_address,
        "source": entry.source,
        "event_type": entry.event_type,
        "details": entry.details,
    }


def to_view(doc: Document) -> Document:
    """An entry as the API shows it."""
    return {
        "entry_id": doc["_id"],
        "at": (EPOCH + timedelta(milliseconds=int(doc["at_ms"]))).isoformat().replace("+00:00", "Z"),
        "actor_id": doc.get("actor_id") or None,
        "actor_name": doc.get("actor_name"),
        "client_address": doc.get("client_address"),
        "action": doc["action"],
        "target_type": doc["target_type"],
        "target_id": doc["target_id"],
        "source": doc.get("source", ""),
        "event_type": doc.get("event_type", ""),
        "details": doc.get("details") or {},
    }
