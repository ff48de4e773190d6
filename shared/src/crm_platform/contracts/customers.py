"""Events of the customers service, on ``crm.customers.v1`` (key: customer id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_platform.events import define

TOPIC = "crm.customers.v1"

CustomerStatus = Literal["active", "deleted", "merged", "purged"]


class Address(BaseModel):
    country: str | None = None
    province: str | None = None
    city: str | None = None
    district: str | None = None
    street: str | None = None
    postal_code: str | None = None


class ContactSummary(BaseModel):
    """Who the customer's contacts are, as every snapshot lists them (phones and emails are in contact events)."""

    contact_id: str
    name: str
    role: str | None = None
    title: str | None = None
    is_primary: bool = False


class CustomerSnapshot(BaseModel):
    """The customer as it stands after the change: every customers event carries it,
    so a consumer keeps a read copy from any single event (apply by ``aggregateversion``)."""

    customer_id: str
    kind: Literal["company", "person"]
    name: str
    uscc: str | None = None
    industry: str | None = None
    size: str | None = None
    address: Address | None = None
    source: str | None = None
    tier: str | None = None
    lifecycle_stage: str | None = None
    tags: list[str] = Field(default_factory=list)
    owner_id: str | None = None
    department_id: str | None = None
    department_path: str | None = None
    in_pool: bool = False
    locked: bool = False
    status: CustomerStatus = "active"
    merged_into: str | None = None
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    contact_count: int = 0
    # Added in schema 1 without a version bump (additive): None in events published before it.
    contacts: list[ContactSummary] | None = None
    # Added in schema 1 without a version bump (additive): the values of administrators' custom
    # fields by key (GET /v1/fields/customers); None in events published before it.
    custom: dict[str, Any] | None = None
    # Added in schema 1 without a version bump (additive): every phone (E.164) and email (lower-cased)
    # of the customer and of its contacts, what a duplicate check compares (the leads service keeps
    # them to check new leads against customers); None in events published before it.
    match_phones: list[str] | None = None
    match_emails: list[str] | None = None


class ContactData(BaseModel):
    contact_id: str
    name: str
    role: str | None = None
    title: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    is_primary: bool = False
    # Added in schema 1 (additive): the contact's custom field values (GET /v1/fields/contacts).
    custom: dict[str, Any] | None = None


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class CustomerCreated(BaseModel):
    customer: CustomerSnapshot
    contacts: list[ContactData] = Field(default_factory=list)
    via: Literal["api", "import", "lead"] = "api"
    # Added in schema 1 (additive): the lead it was converted from (``via="lead"``).
    lead_id: str | None = None


class LeadLinked(BaseModel):
    """The customers service's answer to ``crm.lead.conversion_requested``: the customer (made now, or
    existing) and the contact are there."""

    customer: CustomerSnapshot
    lead_id: str
    conversion_id: str
    contact_id: str | None = None
    created: bool = Field(description="True: the customer was made for this lead; false: an existing one was linked.")


class LeadRefused(BaseModel):
    """The customers service's answer when it cannot do what a conversion asks (subject: the customer id
    the conversion named; nothing was written)."""

    customer_id: str
    lead_id: str
    conversion_id: str
    reason: str
    errors: list[dict[str, Any]] = Field(default_factory=list, description="Field errors (field, reason, code).")


class CustomerUpdated(BaseModel):
    customer: CustomerSnapshot
    changes: list[FieldChange]


class ContactAdded(BaseModel):
    customer: CustomerSnapshot
    contact: ContactData


class ContactChanged(BaseModel):
    customer: CustomerSnapshot
    contact: ContactData
    changes: list[FieldChange]


class ContactRemoved(BaseModel):
    customer: CustomerSnapshot
    contact_id: str


class OwnerChanged(BaseModel):
    customer: CustomerSnapshot
    previous_owner_id: str | None
    owner_id: str | None
    reason: str | None = None


class ReleasedToPool(BaseModel):
    customer: CustomerSnapshot
    previous_owner_id: str | None
    reason: str


class Claimed(BaseModel):
    customer: CustomerSnapshot
    owner_id: str


class Locked(BaseModel):
    customer: CustomerSnapshot
    reason: str | None = None


class Unlocked(BaseModel):
    customer: CustomerSnapshot


class Deleted(BaseModel):
    customer: CustomerSnapshot
    reason: str | None = None


class Restored(BaseModel):
    customer: CustomerSnapshot


class Purged(BaseModel):
    customer_id: str


class Merged(BaseModel):
    """On the survivor: ``merged_customer_id`` now lives on as ``customer``; move its references."""

    customer: CustomerSnapshot
    merged_customer_id: str
    moved_contact_ids: list[str] = Field(default_factory=list)


class MergedAway(BaseModel):
    """On the duplicate: it was merged into ``survivor_id`` and is no longer active."""

    customer: CustomerSnapshot
    survivor_id: str


LEAD_LINKED = define(
    "crm.customer.lead_linked",
    LeadLinked,
    TOPIC,
    description="A lead's conversion made this customer (and contact) or linked the lead to it.",
)
LEAD_REFUSED = define(
    "crm.customer.lead_refused",
    LeadRefused,
    TOPIC,
    description="A lead's conversion could not make or link the customer (e.g. a duplicate, a deleted customer); "
    "nothing was written.",
)
CUSTOMER_CREATED = define(
    "crm.customer.created", CustomerCreated, TOPIC, description="A customer was created (by hand or by an import)."
)
CUSTOMER_UPDATED = define(
    "crm.customer.updated",
    CustomerUpdated,
    TOPIC,
    description="Profile fields changed; `changes` lists field, old and new.",
)
CONTACT_ADDED = define(
    "crm.customer.contact_added", ContactAdded, TOPIC, description="A contact was added to the customer."
)
CONTACT_CHANGED = define(
    "crm.customer.contact_changed", ContactChanged, TOPIC, description="A contact's fields changed."
)
CONTACT_REMOVED = define(
    "crm.customer.contact_removed", ContactRemoved, TOPIC, description="A contact was removed from the customer."
)
OWNER_CHANGED = define(
    "crm.customer.owner_changed", OwnerChanged, TOPIC, description="The customer was assigned to another owner."
)
RELEASED = define(
    "crm.customer.released",
    ReleasedToPool,
    TOPIC,
    description="The customer went to the public pool (公海) and has no owner.",
)
CLAIMED = define("crm.customer.claimed", Claimed, TOPIC, description="A rep claimed the customer from the public pool.")
LOCKED = define("crm.customer.locked", Locked, TOPIC, description="The customer was locked: read-only until unlocked.")
UNLOCKED = define("crm.customer.unlocked", Unlocked, TOPIC, description="The customer was unlocked.")
DELETED = define(
    "crm.customer.deleted",
    Deleted,
    TOPIC,
    description="The customer went to the recycle bin; references should be hidden.",
)
RESTORED = define("crm.customer.restored", Restored, TOPIC, description="The customer came back from the recycle bin.")
PURGED = define(
    "crm.customer.purged",
    Purged,
    TOPIC,
    description="An admin purged the customer from the recycle bin; its personal data is gone.",
)
MERGED = define(
    "crm.customer.merged",
    Merged,
    TOPIC,
    description="Another customer was merged into this one: move references from merged_customer_id to subject.",
)
MERGED_AWAY = define(
    "crm.customer.merged_away",
    MergedAway,
    TOPIC,
    description="This customer was merged into survivor_id and is no longer active.",
)


# --- exports (a read, recorded for the audit log) ----------------------------------------------------


class CustomersExported(BaseModel):
    """Someone exported customers as CSV (subject: the export's id; actor: who).

    Published before the first row leaves, with how many customers matched the filter then:
    an export that is cut short is recorded all the same. Its own type family
    (``crm.customer_export.*``), so consumers that keep customer read copies from every
    ``crm.customer.*`` event are not handed an event without a customer snapshot.
    """

    export_id: str
    filter: dict[str, Any] = Field(description="The list filters given (only those set), as the API took them.")
    sort: str | None = None
    rows: int = Field(
        description="Customers that matched the filter when the export started: the rows it sends, unless "
        "customers changed meanwhile."
    )


CUSTOMERS_EXPORTED = define(
    "crm.customer_export.created",
    CustomersExported,
    TOPIC,
    description="Customers were exported as CSV: who (actor), the filter and how many rows (for the audit log).",
)


# --- imports (recorded for the audit log) ---------------------------------------------------------


class CustomersImported(BaseModel):
    """Someone imported customers from a CSV file (subject: the import's id; actor: who).

    One event per import (each imported customer also has its ``crm.customer.created`` with
    ``via: import``); a dry run imports nothing and makes none. An import retried with its
    Idempotency-Key is recorded once.
    """

    import_id: str
    total_rows: int = Field(description="Rows in the file.")
    valid_rows: int = Field(description="Rows that passed every check.")
    imported: int = Field(description="Customers created.")
    errors: int = Field(description="Row errors (a row may have several).")
    duplicates: int = Field(description="Rows skipped as duplicates of existing customers or of earlier rows.")


CUSTOMERS_IMPORTED = define(
    "crm.customer_import.completed",
    CustomersImported,
    TOPIC,
    description="Customers were imported from CSV: who (actor) and the counts (for the audit log).",
)
