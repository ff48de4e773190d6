"""The customer aggregate's rules: plain functions over the stored document, no I/O.

The application layer reads a document, calls these to decide the new state and
the events, and stores both in one write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_customers.domain.model import PATCHABLE, ContactIn, ContactPatch, CustomerCreate, CustomerPatch, Kind
from crm_customers.domain.names import normalise_name
from crm_platform.auth import Principal
from crm_platform.contracts.customers import Address as AddressData
from crm_platform.contracts.customers import ContactData, ContactSummary, CustomerSnapshot, FieldChange
from crm_platform.customfields import FieldSet
from crm_platform.errors import Conflict, FieldError, Forbidden, Locked, NotFound, ValidationFailed
from crm_platform.permissions import Permission

#: The data-scope modules this service honours (see the root README, "Who may do what").
CUSTOMERS = "customers"
CONTACTS = "contacts"
POOL = "pool"


Document = dict[str, Any]

#: API sort keys -> stored, never-null fields (nulls compare badly across stores; see listing.py).
SORT_FIELDS = {
    "name": "s.name",
    "created_at": "s.created_at",
    "updated_at": "s.updated_at",
    "last_followed_up_at": "s.last_followed_up_at",
    "industry": "s.industry",
    "tier": "s.tier",
    "lifecycle_stage": "s.lifecycle_stage",
    "size": "s.size",
    "source": "s.source",
    "owner_id": "s.owner_id",
    "province": "s.province",
    "city": "s.city",
    "kind": "s.kind",
}


def name_grams(normalised: str) -> list[str]:
    """Character bigrams of a normalised name: the prefilter for fuzzy duplicate candidates."""
    text = normalised.replace(" ", "")
    if len(text) < 2:
        return [text] if text else []
    return sorted({text[i : i + 2] for i in range(len(text) - 1)})


#: The shape of the sort keys; documents with another one are rewritten at start-up.
SORT_KEYS_VERSION = 4  # 3: the id's copy (s.id) is the lists' last sort key; 4: s.tier_desc
#: Where the sort keys keep the customer's id: the tie-breaker of every list order. A range on an
#: ordinary indexed field is served by its index on the embedded store; one on ``_id`` is not.
TIEBREAK = "s.id"


#: Order-reversing copies of sort keys (listing.parse_sort's ``descending_copies``): "-tier,name"
#: ("A customers first, then by name") runs ascending on ``s.tier_desc``, so one ascending index
#: serves it; the embedded store's indexes are all ascending and sorted each tier's customers whole.
DESCENDING_COPIES = {"s.tier": "s.tier_desc"}


def descending_copy(text: str) -> str:
    """A string whose ascending order is ``text``'s descending order: each character's complement
    to the last code point, as six hex digits (ASCII, so nothing to encode), then ``~``, which sorts
    above every hex digit (so a prefix sorts after the longer strings it starts, as descending
    order wants: "A" before "")."""
    return "".join(f"{0x10FFFF - ord(c):06x}" for c in text) + "~"


def epoch_ms(value: datetime | None) -> int:
    """A moment as the integer the sort keys and date filters use (0: never)."""
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def sort_keys(doc: Document) -> Document:
    """The never-null, datetime-free copies of the fields lists sort and filter on.

    Moments are epoch milliseconds: the embedded store serves a range on an indexed integer
    from the index (6 ms at 20k rows) but scans for a range on a date (436 ms), and every
    cursor page after the first is such a range. No datetimes also means ``$set`` of the
    whole subdocument is safe there.
    """
    address = doc.get("address") or {}
    return {
        "v": SORT_KEYS_VERSION,
        "name": doc.get("name_normalised") or "",
        "created_at": epoch_ms(doc.get("created_at")),
        "updated_at": epoch_ms(doc.get("updated_at")),
        "last_followed_up_at": epoch_ms(doc.get("last_followed_up_at")),
        "industry": doc.get("industry") or "",
        "tier": doc.get("tier") or "",
        "tier_desc": descending_copy(doc.get("tier") or ""),
        "lifecycle_stage": doc.get("lifecycle_stage") or "",
        "size": doc.get("size") or "",
        "source": doc.get("source") or "",
        "owner_id": doc.get("owner_id") or "",
        "province": address.get("province") or "",
        "city": address.get("city") or "",
        "kind": doc.get("kind") or "",
        # Not a sort key: a never-null flag, because null tests differ between the stores.
        "locked": bool(doc.get("locked")),
        "id": doc["_id"],
    }


def refresh_derived(doc: Document) -> Document:
    """Recompute what is derived from the profile: match keys, unique keys, sort keys."""
    doc["name_normalised"] = normalise_name(doc["name"])
    doc["name_grams"] = name_grams(doc["name_normalised"])
    phones = list(doc.get("phones") or [])
    emails = list(doc.get("emails") or [])
    for contact in doc.get("contacts") or []:
        phones += contact.get("phones") or []
        emails += contact.get("emails") or []
    doc["match_phones"] = sorted(set(phones))
    doc["match_emails"] = sorted(set(emails))
    active = doc.get("status") == "active"
    # Sparse unique indexes on these keys enforce "first entered owns" even under races;
    # they are removed when the customer leaves the active set (recycle bin, merge).
    if active and doc.get("kind") == Kind.company:
        doc["unique_name"] = f"company:{doc['name_normalised']}"
    else:
        doc.pop("unique_name", None)
    if active and doc.get("uscc"):
        doc["unique_uscc"] = doc["uscc"]
    else:
        doc.pop("unique_uscc", None)
    doc["s"] = sort_keys(doc)
    return doc


def match_keys(doc: Document) -> list[str]:
    """The keys a duplicate check compares (查重): the company name and the names of companies
    merged into it, the USCC, every phone and email of the customer and of its contacts."""
    keys: list[str] = []
    if doc.get("kind") == Kind.company and doc.get("name_normalised"):
        keys.append(f"name:{doc['name_normalised']}")
        keys += [f"name:{n}" for n in doc.get("merged_names") or []]
    if doc.get("uscc"):
        keys.append(f"uscc:{doc['uscc']}")
    keys += [f"phones:{p}" for p in doc.get("match_phones") or []]
    keys += [f"emails:{e}" for e in doc.get("match_emails") or []]
    return keys


def identity_keys(doc: Document | None) -> set[str]:
    """The keys a stored customer holds: active customers and those in the recycle bin (a
    deleted customer still blocks a new copy of itself); merged and purged ones hold none."""
    if doc is None or doc.get("status") not in ("active", "deleted"):
        return set()
    return set(match_keys(doc))


def new_contact(data: ContactIn, now: datetime, actor: str, custom: Document | None = None) -> Document:
    """``custom``: the contact's custom field values as validated (defaults applied)."""
    return {
        "contact_id": str(uuid.uuid4()),
        **data.model_dump(mode="json", exclude={"custom"}),
        "custom": custom or {},
        "created_at": now,
        "created_by": actor,
        "updated_at": now,
    }


def new_customer(
    data: CustomerCreate,
    principal: Principal,
    now: datetime,
    customer_id: str | None = None,
    custom: Document | None = None,
    contact_custom: list[Document] | None = None,
) -> Document:
    """``custom``: the custom field values as validated against the definitions (defaults applied);
    ``contact_custom``: the same for each of ``data.contacts``."""
    owner_id, department_id, department_path = principal.user_id, principal.department_id, principal.department_path
    if data.owner_id:
        if not principal.holds(Permission.customers_assign):
            raise Forbidden("Creating a customer for someone else needs the permission customers:assign.")
        if not principal.reaches_path(data.department_path, CUSTOMERS):
            raise Forbidden("You may only give customers to people in your data scope for customers.")
        owner_id, department_id, department_path = data.owner_id, data.department_id, data.department_path
    contacts = [
        new_contact(c, now, principal.user_id, (contact_custom or [])[i] if contact_custom else None)
        for i, c in enumerate(data.contacts)
    ]
    _one_primary(contacts)
    profile = data.model_dump(
        mode="json", exclude={"contacts", "owner_id", "department_id", "department_path", "custom"}
    )
    doc: Document = {
        "_id": customer_id or str(uuid.uuid4()),
        **profile,
        "contacts": contacts,
        "owner_id": owner_id,
        "department_id": department_id,
        "department_path": department_path,
        "owner_since": now,
        "in_pool": False,
        "locked": None,
        "status": "active",
        "created_at": now,
        "created_by": principal.user_id,
        "updated_at": now,
        "updated_by": principal.user_id,
        "last_followed_up_at": None,
        "merged_from": [],
        "custom": custom or {},
    }
    return refresh_derived(doc)


def _one_primary(contacts: list[Document]) -> None:
    primaries = [c for c in contacts if c.get("is_primary")]
    if len(primaries) > 1:
        raise ValidationFailed(
            "Only one contact can be the primary contact.",
            errors=[FieldError(field="contacts", reason="more than one contact has is_primary=true")],
        )


def snapshot(doc: Document) -> CustomerSnapshot:
    return CustomerSnapshot(
        customer_id=doc["_id"],
        kind=doc["kind"],
        name=doc["name"],
        uscc=doc.get("uscc"),
        industry=doc.get("industry"),
        size=doc.get("size"),
        address=AddressData(**doc["address"]) if doc.get("address") else None,
        source=doc.get("source"),
        tier=doc.get("tier"),
        lifecycle_stage=doc.get("lifecycle_stage"),
        tags=list(doc.get("tags") or []),
        owner_id=doc.get("owner_id"),
        department_id=doc.get("department_id"),
        department_path=doc.get("department_path"),
        in_pool=bool(doc.get("in_pool")),
        locked=bool(doc.get("locked")),
        status=doc.get("status", "active"),
        merged_into=doc.get("merged_into"),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        contact_count=len(doc.get("contacts") or []),
        contacts=[
            ContactSummary(
                contact_id=c["contact_id"],
                name=c["name"],
                role=c.get("role"),
                title=c.get("title"),
                is_primary=bool(c.get("is_primary")),
            )
            for c in doc.get("contacts") or []
        ],
        custom=dict(doc.get("custom") or {}),
        match_phones=list(doc.get("match_phones") or []),
        match_emails=list(doc.get("match_emails") or []),
    )


def contact_data(contact: Document) -> ContactData:
    return ContactData(
        contact_id=contact["contact_id"],
        name=contact["name"],
        role=contact.get("role"),
        title=contact.get("title"),
        phones=list(contact.get("phones") or []),
        emails=list(contact.get("emails") or []),
        is_primary=bool(contact.get("is_primary")),
        custom=dict(contact.get("custom") or {}),
    )


# --- who may do what ---------------------------------------------------------------


def can_view(principal: Principal, doc: Document) -> bool:
    if doc.get("in_pool") and doc.get("status") == "active":
        return True  # the public pool is open to everyone
    return principal.can_see_owned(doc.get("owner_id"), doc.get("department_path"), module=CUSTOMERS)


def ensure_visible(principal: Principal, doc: Document | None, customer_id: str) -> Document:
    # A customer you may not see is reported as missing: its existence is not yours to learn here.
    if doc is None or doc.get("status") == "purged" or not can_view(principal, doc):
        raise NotFound(f"No customer with id {customer_id}.")
    return doc


def ensure_active(doc: Document) -> None:
    status = doc.get("status")
    if status == "deleted":
        raise Conflict("The customer is in the recycle bin; restore it first.", extra={"status": status})
    if status == "merged":
        raise Conflict(
            f"The customer was merged into {doc.get('merged_into')}; edit that one.",
            extra={"status": status, "merged_into": doc.get("merged_into")},
        )
    if status != "active":
        raise NotFound(f"No customer with id {doc['_id']}.")


def ensure_unlocked(doc: Document) -> None:
    lock = doc.get("locked")
    if lock:
        raise Locked(
            f"The customer was locked by {lock.get('by')} ({lock.get('reason') or 'no reason given'}); "
            "unlock it first.",
            extra={"locked_by": lock.get("by"), "locked_at": str(lock.get("at")), "lock_reason": lock.get("reason")},
        )


def ensure_can_edit(principal: Principal, doc: Document, module: str = "customers") -> None:
    """May the caller change this customer (``module`` "customers") or its contacts ("contacts")?

    A customer in the pool: only a ``pool`` scope beyond own may change it (else claim it first).
    """
    ensure_active(doc)
    if doc.get("in_pool") and not principal.reaches_beyond_own(POOL):
        raise Forbidden("The customer is in the public pool; claim it before editing.")
    if not doc.get("in_pool") and not principal.can_see_owned(
        doc.get("owner_id"), doc.get("department_path"), module=module
    ):
        raise Forbidden(f"Only the owner and those whose {module} scope reaches it may change this customer.")
    ensure_unlocked(doc)


def ensure_manager_of(principal: Principal, doc: Document, action: str) -> None:
    """Acting on someone's customer as their manager: the customer's department is in the caller's
    ``customers`` scope (department, subtree or all), or the customer sits in the pool and the
    caller's ``pool`` scope goes beyond their own."""
    if principal.reaches_path(doc.get("department_path"), CUSTOMERS):
        return
    if doc.get("in_pool") and principal.reaches_beyond_own(POOL):
        return
    raise Forbidden(f"Only those whose data scope reaches this customer's department may {action}.")


# --- changes ----------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def apply_patch(doc: Document, patch: CustomerPatch) -> list[FieldChange]:
    """Apply the fields the client sent; return what really changed (possibly nothing)."""
    sent = patch.model_fields_set
    values = patch.model_dump(mode="json")
    changes: list[FieldChange] = []
    for name in PATCHABLE:
        if name not in sent:
            continue
        new = values[name]
        if name == "name" and new is None:
            raise ValidationFailed.for_field("name", "a customer must have a name")
        if name in ("tags", "phones", "emails") and new is None:
            new = []
        if name == "uscc" and new and doc.get("kind") != Kind.company:
            raise ValidationFailed.for_field("uscc", "only companies have a unified social credit code")
        old = doc.get(name)
        if old != new:
            changes.append(FieldChange(field=name, old=_jsonable(old), new=new))
            doc[name] = new
    return changes


def apply_custom(doc: Document, custom: Document) -> list[FieldChange]:
    """Set the record's custom field values (validated already); return what changed, each as
    ``custom.<key>``."""
    old = doc.get("custom") or {}
    changes = [
        FieldChange(field=f"custom.{key}", old=old.get(key), new=custom.get(key))
        for key in sorted(set(old) | set(custom))
        if old.get(key) != custom.get(key)
    ]
    doc["custom"] = custom
    return changes


def find_contact(doc: Document, contact_id: str) -> Document:
    for contact in doc.get("contacts") or []:
        if contact["contact_id"] == contact_id:
            found: Document = contact
            return found
    raise NotFound(f"The customer has no contact with id {contact_id}.")


def apply_contact_patch(
    doc: Document, contact_id: str, patch: ContactPatch, now: datetime, fields: FieldSet | None = None
) -> tuple[Document, list[FieldChange]]:
    """``fields``: the contacts' custom fields, to validate ``patch.custom`` against the contact's values."""
    contact = find_contact(doc, contact_id)
    custom = None
    if "custom" in patch.model_fields_set and patch.custom is not None:
        custom = (fields or FieldSet({})).validate(patch.custom, contact.get("custom") or {})
    values = patch.model_dump(mode="json")
    changes: list[FieldChange] = []
    for name in patch.model_fields_set - {"custom"}:  # custom values: apply_custom, validated
        new = values[name]
        if name == "name" and new is None:
            raise ValidationFailed.for_field("name", "a contact must have a name")
        if name in ("phones", "emails") and new is None:
            new = []
        if contact.get(name) != new:
            changes.append(FieldChange(field=name, old=contact.get(name), new=new))
            contact[name] = new
    if custom is not None:
        changes += apply_custom(contact, custom)
    if changes:
        contact["updated_at"] = now
        if contact.get("is_primary"):
            for other in doc["contacts"]:
                if other is not contact:
                    other["is_primary"] = False
    return contact, changes


def touch(doc: Document, principal: Principal, now: datetime) -> Document:
    doc["updated_at"] = now
    doc["updated_by"] = principal.user_id
    return refresh_derived(doc)


def change_owner(
    doc: Document, owner_id: str | None, department_id: str | None, department_path: str | None, now: datetime
) -> str | None:
    previous = doc.get("owner_id")
    doc["previous_owner_id"] = previous
    doc["owner_id"] = owner_id
    if owner_id is not None:
        doc["department_id"] = department_id
        doc["department_path"] = department_path
        doc["owner_since"] = now
        doc["in_pool"] = False
        doc["pool_since"] = None
    return previous


def merge_into(survivor: Document, duplicate: Document) -> list[str]:
    """Move the duplicate's contacts and fill the survivor's empty fields; the survivor wins conflicts."""
    existing = {c["contact_id"] for c in survivor.get("contacts") or []}
    moved = [c for c in duplicate.get("contacts") or [] if c["contact_id"] not in existing]
    for contact in moved:
        contact["is_primary"] = (
            False if any(c.get("is_primary") for c in survivor["contacts"]) else contact.get("is_primary", False)
        )
    survivor["contacts"] = list(survivor.get("contacts") or []) + moved
    for name in ("uscc", "industry", "size", "address", "source", "tier", "website", "description"):
        if not survivor.get(name) and duplicate.get(name):
            survivor[name] = duplicate[name]
    for name in ("tags", "phones", "emails"):
        merged = list(survivor.get(name) or [])
        merged += [v for v in duplicate.get(name) or [] if v not in merged]
        survivor[name] = merged
    # Custom field values the survivor lacks come from the duplicate, like its empty profile fields.
    custom = dict(survivor.get("custom") or {})
    for key, value in (duplicate.get("custom") or {}).items():
        if custom.get(key) in (None, "", []):
            custom[key] = value
    survivor["custom"] = custom
    if duplicate.get("last_followed_up_at") and (
        not survivor.get("last_followed_up_at") or duplicate["last_followed_up_at"] > survivor["last_followed_up_at"]
    ):
        survivor["last_followed_up_at"] = duplicate["last_followed_up_at"]
    if survivor.get("kind") == Kind.company:
        # The duplicate's name is another name of the survivor now: keep it as a match key so that
        # entering "the duplicate" again is refused naming the survivor (first entered owns).
        names = set(survivor.get("merged_names") or []) | set(duplicate.get("merged_names") or [])
        names.add(duplicate["name_normalised"])
        names.discard(survivor.get("name_normalised"))
        survivor["merged_names"] = sorted(names)
    survivor.setdefault("merged_from", []).append(duplicate["_id"])
    return [c["contact_id"] for c in moved]


# --- the pool's claim rules and release decisions ------------------------------------------------


def within(path: str | None, scope: str | None) -> bool:
    """True if ``path`` is the department ``scope`` or below it (None scope: the whole company)."""
    if scope is None:
        return True
    return bool(path) and (path == scope or str(path).startswith(scope.rstrip("/") + "/"))


def claim_rule_for(rules: list[Document], department_path: str | None) -> Document | None:
    """The most specific live claim rule for a department (else the global one, else none)."""
    candidates = [r for r in rules if not r.get("deleted") and within(department_path, r.get("department_path"))]
    return max(candidates, key=lambda r: len((r.get("department_path") or "").split("/")), default=None)


def deleted_by(doc: Document) -> str | None:
    """Who moved the customer to the recycle bin (None when it is not there)."""
    deleted = doc.get("deleted")
    return str(deleted.get("by")) if doc.get("status") == "deleted" and isinstance(deleted, dict) else None


@dataclass(frozen=True)
class HoldingLimit:
    """How many active customers one owner may hold, and where that number comes from."""

    limit: int
    rule_id: str | None  # the pool rule that set it; None: this service's own default

    @property
    def source(self) -> str:
        return self.rule_id or "service default"


def holding_limit(rules: list[Document], department_path: str | None, default: int) -> HoldingLimit:
    """The holding limit of an owner in ``department_path``: the ``max_held`` of the most specific
    live pool rule covering that department that sets one (a department rule without a limit
    inherits the one above it), else the global rule's, else ``default`` (the service setting)."""
    candidates = [
        r
        for r in rules
        if not r.get("deleted") and r.get("max_held") and within(department_path, r.get("department_path"))
    ]
    best = max(candidates, key=lambda r: len((r.get("department_path") or "").split("/")), default=None)
    if best is None:
        return HoldingLimit(default, None)
    return HoldingLimit(int(best["max_held"]), str(best["rule_id"]))


def ensure_may_claim(principal: Principal, doc: Document, rules: list[Document], now: datetime) -> None:
    """The pool's claim rules: which pool the rep may claim from, and the previous owner's cool-down.

    Which pool follows the rule of the rep's department; the cool-down the rule of the customer's.
    """
    mine = claim_rule_for(rules, principal.department_path)
    # A pool scope of "all" claims across the departments' pools (the built-in admin's).
    if mine and mine.get("claim_scope") == "department" and not principal.reaches_all(POOL):
        path = doc.get("department_path")
        if path and not within(path, principal.department_path):
            raise Forbidden(
                f"You may claim only from your department's pool ({principal.department_path}) and the company pool; "
                f"this customer belongs to {path}.",
                extra={"claim_scope": "department", "department_path": path},
            )
    theirs = claim_rule_for(rules, doc.get("department_path"))
    cooldown = int((theirs or {}).get("cooldown_days") or 0)
    released = doc.get("pool_since")
    if cooldown and released and doc.get("previous_owner_id") == principal.user_id:
        claimable_from = released + timedelta(days=cooldown)
        if now < claimable_from:
            raise Conflict(
                f"You owned this customer until {released.isoformat()}; you may claim it back from "
                f"{claimable_from.isoformat()} ({cooldown}-day cool-down).",
                extra={"cooldown_days": cooldown, "claimable_from": claimable_from.isoformat()},
            )


def release_still_valid(
    doc: Document, owner_id: str, owner_since: datetime, last_interaction_at: datetime | None
) -> bool:
    """The pool decided on a basis: release only if nothing changed since (same owner, no newer follow-up)."""
    if doc.get("status") != "active" or doc.get("in_pool") or doc.get("locked"):
        return False
    if doc.get("owner_id") != owner_id:
        return False
    since = doc.get("owner_since")
    if since is not None and since > owner_since:
        return False  # re-assigned (even to the same owner) after the decision's basis
    followed = doc.get("last_followed_up_at")
    return followed is None or (last_interaction_at is not None and followed <= last_interaction_at)
