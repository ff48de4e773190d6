"""The lead aggregate's rules: its stored shape, status moves, ownership, keys and sort keys (no I/O).

A lead without an owner is in the lead pool (``in_pool``, a never-null flag beside ``owner_id``:
equality on a flag is an index search on both stores, a null test is not). ``deleted`` leads
stay as documents (their events leave through the outbox they carry) but hold no keys and
show in no list.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from crm_leads.domain.model import LeadIn, LeadStatus
from crm_platform.auth import Principal
from crm_platform.company_names import normalise_name
from crm_platform.contracts import leads as ev
from crm_platform.errors import Conflict, ValidationFailed
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]

#: API sort names -> stored never-null sort keys (moments as epoch ms: see crm_platform.sortkeys).
SORT_FIELDS = {"created_at": "s.created_at", "updated_at": "s.updated_at", "score": "s.score"}
DEFAULT_SORT = "-created_at"

#: Where a status may go next. Qualified and disqualified are ends for now (conversion comes later);
#: a disqualified lead may be reopened as new.
MOVES: dict[LeadStatus, set[LeadStatus]] = {
    LeadStatus.new: {LeadStatus.contacted, LeadStatus.qualified, LeadStatus.disqualified},
    LeadStatus.contacted: {LeadStatus.qualified, LeadStatus.disqualified},
    LeadStatus.qualified: {LeadStatus.disqualified},
    LeadStatus.disqualified: {LeadStatus.new},
    # Conversion (crm_leads.domain.conversion): only a qualified lead converts; a conversion ends in
    # converted, or back in qualified when a step is refused. Converted is final.
    LeadStatus.converting: {LeadStatus.converted, LeadStatus.qualified},
    LeadStatus.converted: set(),
}
MOVES[LeadStatus.qualified] = MOVES[LeadStatus.qualified] | {LeadStatus.converting}
#: Statuses only a conversion sets (POST /v1/leads/{id}/convert and its answers), never a PATCH.
CONVERSION_STATUSES = frozenset({LeadStatus.converting, LeadStatus.converted})

#: Fields a PATCH may set directly (status goes through :func:`move`).
EDITABLE = ("company_name", "contact_name", "phones", "emails", "source", "campaign_id", "region", "industry", "notes")
NOT_CLEARABLE = ("company_name",)


def sort_keys(doc: Document) -> Document:
    return {
        "created_at": epoch_ms(doc["created_at"]),
        "updated_at": epoch_ms(doc["updated_at"]),
        "score": int(doc.get("score") or 0),  # lead scoring's (crm_leads.domain.scoring), 0 until scored
        "id": doc["_id"],
    }


def new_lead(lead_id: str, data: LeadIn, principal: Principal, now: datetime) -> Document:
    values = data.model_dump(mode="json", exclude={"in_pool"})
    doc: Document = {
        "_id": lead_id,
        **values,
        "owner_id": None if data.in_pool else principal.user_id,
        "in_pool": data.in_pool,
        "department_id": principal.department_id,
        "department_path": principal.department_path,
        "status": LeadStatus.new.value,
        "disqualified_reason": None,
        "deleted": False,
        "created_at": now,
        "created_by": principal.user_id,
        "updated_at": now,
    }
    return refresh(doc)


def refresh(doc: Document) -> Document:
    """Recompute what is derived from the fields: the normalised name and the sort keys."""
    doc["company_name_normalised"] = normalise_name(doc["company_name"])
    doc["s"] = sort_keys(doc)
    return doc


# --- duplicate-check keys ------------------------------------------------------------------------


def name_key(normalised: str) -> str:
    return f"name:{normalised}"


def phone_key(e164: str) -> str:
    return f"phones:{e164}"


def email_key(email: str) -> str:
    return f"emails:{email}"


def keys_of(doc: Document | None) -> dict[str, str]:
    """The keys a stored lead holds, each with the request field it comes from (``phones[1]``);
    a deleted lead holds none."""
    if doc is None or doc.get("deleted"):
        return {}
    keys: dict[str, str] = {}
    if doc.get("company_name_normalised"):
        keys[name_key(doc["company_name_normalised"])] = "company_name"
    for i, phone in enumerate(doc.get("phones") or []):
        keys.setdefault(phone_key(phone), f"phones[{i}]")
    for i, email in enumerate(doc.get("emails") or []):
        keys.setdefault(email_key(email), f"emails[{i}]")
    return keys


def customer_keys(kind: str, name: str, phones: Iterable[str], emails: Iterable[str]) -> set[str]:
    """The keys a customer holds for a lead's check: a company's name, every phone and email
    (the customer's and its contacts'). A person's name is no company's name."""
    keys = {phone_key(p) for p in phones} | {email_key(e) for e in emails}
    normalised = normalise_name(name) if kind == "company" else ""
    if normalised:
        keys.add(name_key(normalised))
    return keys


# --- changes ---------------------------------------------------------------------------------


def apply_values(doc: Document, values: Document) -> list[ev.FieldChange]:
    """Set the editable ``values`` on ``doc``; the changes made (old and new)."""
    changes: list[ev.FieldChange] = []
    for name in EDITABLE:
        if name not in values:
            continue
        new = values[name]
        if new is None and name in NOT_CLEARABLE:
            raise ValidationFailed.for_field(name, "cannot be cleared")
        if name in ("phones", "emails") and new is None:
            new = []
        old = doc.get(name)
        if old != new:
            changes.append(ev.FieldChange(field=name, old=old, new=new))
            doc[name] = new
    return changes


def move(doc: Document, to: LeadStatus, reason: str | None) -> LeadStatus:
    """Move ``doc`` to status ``to``; the status it had. 409 for a move the lifecycle does not allow."""
    current = LeadStatus(doc["status"])
    if current in CONVERSION_STATUSES or to in CONVERSION_STATUSES:
        ensure_open(doc)
        raise Conflict(f"A lead becomes {to.value} only by POST /v1/leads/{doc['_id']}/convert.")
    if to == current:
        raise Conflict(f"The lead is already {to.value}.")
    if to not in MOVES[current]:
        allowed = ", ".join(sorted(s.value for s in MOVES[current])) or "none"
        raise Conflict(f"A lead that is {current.value} cannot become {to.value} (allowed: {allowed}).")
    if to == LeadStatus.disqualified and not reason:
        raise ValidationFailed.for_field("reason", "required to disqualify a lead")
    doc["status"] = to.value
    doc["disqualified_reason"] = reason if to == LeadStatus.disqualified else None
    return current


def ensure_open(doc: Document) -> None:
    """409 for a lead a conversion holds: being converted (until it ends), or converted (final:
    no edit, status move, release, claim, assignment or delete)."""
    if doc.get("status") == LeadStatus.converted.value:
        raise Conflict(f"The lead was converted into customer {doc.get('customer_id')}: it changes no more.")
    if doc.get("status") == LeadStatus.converting.value:
        conversion_id = (doc.get("conversion") or {}).get("conversion_id")
        raise Conflict(f"The lead is being converted ({conversion_id}): it changes no more until that ends.")


def set_owner(doc: Document, owner_id: str | None, department_id: str | None, department_path: str | None) -> None:
    doc["owner_id"] = owner_id
    doc["in_pool"] = owner_id is None
    if owner_id is not None or department_id is not None:  # an owner's department, or a pool's (release to)
        doc["department_id"] = department_id
        doc["department_path"] = department_path


def snapshot(doc: Document) -> ev.LeadSnapshot:
    return ev.LeadSnapshot(
        lead_id=doc["_id"],
        company_name=doc["company_name"],
        contact_name=doc.get("contact_name"),
        phones=list(doc.get("phones") or []),
        emails=list(doc.get("emails") or []),
        source=doc.get("source"),
        campaign_id=doc.get("campaign_id"),
        region=doc.get("region"),
        industry=doc.get("industry"),
        owner_id=doc.get("owner_id"),
        department_id=doc.get("department_id"),
        department_path=doc.get("department_path"),
        status=doc["status"],
        disqualified_reason=doc.get("disqualified_reason"),
        notes=doc.get("notes"),
        deleted=bool(doc.get("deleted")),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        customer_id=doc.get("customer_id"),
        contact_id=doc.get("contact_id"),
        opportunity_id=doc.get("opportunity_id"),
        followup_count=int(doc.get("followup_count") or 0),
        last_followup_at=doc.get("last_followup_at"),
    )
