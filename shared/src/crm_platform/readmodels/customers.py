"""A read copy of the customers service's customers, fed only by ``crm.customers.v1``.

Every customers event carries the full customer snapshot, so each one replaces the
copy whole, applied by ``aggregateversion`` (an older or repeated event changes
nothing). Contacts are not in the snapshot: the copy keeps them from the contact
events (``created`` lists them, ``contact_added``/``contact_changed``/``contact_removed``
change them, ``merged`` moves the duplicate's into the survivor), so one aggregate's
events must be applied in order, which the topic's keying gives.

Usage in a service::

    customers = CustomerReadModel(kit.db["customers"], on_merged=..., on_deleted=...)
    kit.on_startup(lambda _: customers.ensure_indexes())
    kit.consume([contracts.customers.TOPIC], customers.handlers())

Hooks (``on_merged``, ``on_merged_away``, ``on_deleted``, ``on_restored``, ``on_purged``,
and ``on_changed`` for every event) let the service react, e.g. move its records to a
merge survivor or hide them while the customer is in the recycle bin. A hook runs on
*every* delivery, also when the copy already had the event (``applied=False``): if the
process died after storing the copy but before the hook finished, the redelivered
event completes the effect. Hooks must therefore be idempotent, and should decide
from ``event.copy`` (the copy as it stands now) rather than from the event alone, so
that a stale redelivery (say, ``deleted`` after ``restored``) undoes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.auth import Principal
from crm_platform.consumer import Handler, apply_versioned, versioned_copy
from crm_platform.contracts import customers as ev
from crm_platform.events import EventEnvelope, registry

Document = dict[str, Any]
HookName = Literal["merged", "merged_away", "deleted", "restored", "purged", "changed"]
#: How long a request naming a customer not (yet) in the copy waits for it, look by look: 1.3 s in all.
ARRIVAL_WAITS = (0.1, 0.2, 0.4, 0.6)


@dataclass(frozen=True)
class CustomerEvent:
    """What a hook is told: the event, and the copy as it stands after applying it."""

    envelope: EventEnvelope
    customer_id: str
    applied: bool  # False: the copy already had this version or a newer one (a repeat or a stale event)
    copy: Document | None
    other_id: str | None = None  # merged: the duplicate merged into this one; merged_away: the survivor

    @property
    def type(self) -> str:
        return self.envelope.type


Hook = Callable[[CustomerEvent], Awaitable[None]]

#: The snapshot fields the copy keeps (besides id, status and contacts).
KEPT_FIELDS = (
    "name",
    "kind",
    "owner_id",
    "department_id",
    "department_path",
    "in_pool",
    "locked",
    "tags",
    "tier",
    "industry",
    "size",
    "source",
    "lifecycle_stage",
    "merged_into",
    "contact_count",
    "created_at",
    "updated_at",
)

INDEXES = [
    IndexModel([("status", ASCENDING)], name="status"),
    IndexModel([("owner_id", ASCENDING)], name="owner_id"),
    IndexModel([("department_path", ASCENDING)], name="department_path"),
    IndexModel([("merged_into", ASCENDING)], name="merged_into"),
]


def contact_entry(contact: ev.ContactData | Document) -> Document:
    data = contact.model_dump(mode="json") if isinstance(contact, ev.ContactData) else contact
    return {
        "contact_id": data["contact_id"],
        "name": data.get("name"),
        "role": data.get("role"),
        "title": data.get("title"),
        "is_primary": bool(data.get("is_primary")),
    }


def state_from_snapshot(customer: ev.CustomerSnapshot, contacts: list[Document]) -> Document:
    snapshot = customer.model_dump()  # datetimes stay datetimes: the copy is written whole, never with $set
    state: Document = {"_id": customer.customer_id, "customer_id": customer.customer_id, "status": customer.status}
    state.update({name: snapshot.get(name) for name in KEPT_FIELDS})
    if customer.contacts is not None:
        # Snapshots list the contacts: authoritative, whatever happened to earlier events.
        contacts = [contact_entry(c.model_dump()) for c in customer.contacts]
    state["contacts"] = contacts
    # Older snapshots have no contact list: then contacts come from contact events, and an event
    # lost to the dead-letter topic leaves the list short.
    state["contacts_complete"] = len(contacts) == customer.contact_count
    return state


class CustomerReadModel:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        on_merged: Hook | None = None,
        on_merged_away: Hook | None = None,
        on_deleted: Hook | None = None,
        on_restored: Hook | None = None,
        on_purged: Hook | None = None,
        on_changed: Hook | None = None,
    ) -> None:
        self.collection = collection
        self._hooks: dict[str, list[Hook]] = {}
        for name, hook in (
            ("merged", on_merged),
            ("merged_away", on_merged_away),
            ("deleted", on_deleted),
            ("restored", on_restored),
            ("purged", on_purged),
            ("changed", on_changed),
        ):
            if hook is not None:
                self.add_hook(name, hook)  # type: ignore[arg-type]

    def add_hook(self, name: HookName, hook: Hook) -> None:
        self._hooks.setdefault(name, []).append(hook)

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes(INDEXES)

    # --- reading ---------------------------------------------------------------------------

    async def get(self, customer_id: str) -> Document | None:
        return await self.collection.find_one({"_id": customer_id})

    async def arrived(self, customer_id: str, waits: tuple[float, ...] = ARRIVAL_WAITS) -> Document | None:
        """:meth:`get`, looked at again after each of ``waits`` (seconds) while the copy is missing.

        For a request naming a customer that someone created a moment ago (the console's "new
        contract" right after "new customer"): its created event is usually a few hundred ms from
        this copy, and a short wait answers the request instead of refusing it. Only a missing
        copy waits (by ``_id``, an index lookup each time); one that is there answers at once."""
        copy = await self.get(customer_id)
        for wait in waits:
            if copy is not None:
                break
            await asyncio.sleep(wait)
            copy = await self.get(customer_id)
        return copy

    @staticmethod
    def is_active(copy: Document | None) -> bool:
        return copy is not None and copy.get("status") == "active"

    @staticmethod
    def visible_to(principal: Principal, copy: Document | None) -> bool:
        """The customers service's rule: the pool is open to all, the rest by owner and customers scope."""
        if copy is None or copy.get("status") == "purged":
            return False
        if copy.get("in_pool") and copy.get("status") == "active":
            return True
        return principal.can_see_owned(copy.get("owner_id"), copy.get("department_path"), module="customers")

    @staticmethod
    def contact_ids(copy: Document | None) -> set[str]:
        return {c["contact_id"] for c in (copy or {}).get("contacts") or []}

    # --- applying events ---------------------------------------------------------------------

    def handlers(self) -> Mapping[str, Handler]:
        """One handler per customer event type, for ``kit.consume([customers.TOPIC], ...)``.

        Taken from the contracts module's registrations, so a type added there later is
        applied too (any new type carries the snapshot under ``customer``).
        """
        # A conversion's refusal (lead_refused) changed no customer and carries no snapshot.
        return {
            t.name: self.handle
            for t in registry.for_topic(ev.TOPIC)
            if t.name.startswith("crm.customer.") and t.name != ev.LEAD_REFUSED.name
        }

    async def handle(self, envelope: EventEnvelope) -> None:
        await self.apply(envelope)

    async def apply(self, envelope: EventEnvelope) -> CustomerEvent:
        """Store the copy from one event (unless stale), then run the hooks; returns what the hooks saw."""
        customer_id = envelope.subject
        kind = envelope.type.removeprefix("crm.customer.")
        other_id: str | None = None
        if envelope.type == ev.PURGED.name:
            state: Document = {
                "_id": customer_id,
                "customer_id": customer_id,
                "status": "purged",
                "contacts": [],
                "contacts_complete": True,
            }
        else:
            state, other_id = await self._state(envelope)
        applied = await apply_versioned(self.collection, envelope, state)
        # Applied: the copy is what was just written, so it is not read back (one command less).
        copy = versioned_copy(envelope, state) if applied else await self.get(customer_id)
        event = CustomerEvent(envelope, customer_id, applied, copy, other_id)
        for hook in self._hooks.get(kind, []) + self._hooks.get("changed", []):
            await hook(event)
        return event

    async def _state(self, envelope: EventEnvelope) -> tuple[Document, str | None]:
        """The copy an event makes, and the other customer of a merge.

        Snapshots list the contacts (authoritative), so the stored copy is read only for an
        event whose snapshot does not (an older producer's): then its contacts are carried
        over and changed by the event. Skipping that read spares one command per event.
        """
        t = envelope.type
        if t == ev.CUSTOMER_CREATED.name:
            created = ev.CUSTOMER_CREATED.parse(envelope)
            return state_from_snapshot(created.customer, [contact_entry(c) for c in created.contacts]), None
        snapshot, other_id = self._snapshot(envelope)
        if snapshot.contacts is not None:
            return state_from_snapshot(snapshot, []), other_id
        current = await self.get(envelope.subject)
        contacts: list[Document] = list((current or {}).get("contacts") or [])
        if t == ev.CONTACT_ADDED.name or t == ev.CONTACT_CHANGED.name:
            data: Any = (
                ev.CONTACT_ADDED.parse(envelope) if t == ev.CONTACT_ADDED.name else ev.CONTACT_CHANGED.parse(envelope)
            )
            entry = contact_entry(data.contact)
            contacts = [c for c in contacts if c["contact_id"] != entry["contact_id"]] + [entry]
        elif t == ev.CONTACT_REMOVED.name:
            removed = ev.CONTACT_REMOVED.parse(envelope)
            contacts = [c for c in contacts if c["contact_id"] != removed.contact_id]
        elif t == ev.MERGED.name:
            merged = ev.MERGED.parse(envelope)
            duplicate = await self.get(merged.merged_customer_id)
            theirs = {c["contact_id"]: c for c in (duplicate or {}).get("contacts") or []}
            have = {c["contact_id"] for c in contacts}
            for contact_id in merged.moved_contact_ids:
                if contact_id not in have:
                    # Name unknown if the duplicate's copy never had it; the id is still right.
                    contacts.append(theirs.get(contact_id) or {"contact_id": contact_id, "name": None, "role": None})
        return state_from_snapshot(snapshot, contacts), other_id

    @staticmethod
    def _snapshot(envelope: EventEnvelope) -> tuple[ev.CustomerSnapshot, str | None]:
        """The customer as the event leaves it, and the other customer of a merge."""
        if envelope.type == ev.MERGED.name:
            merged = ev.MERGED.parse(envelope)
            return merged.customer, merged.merged_customer_id
        if envelope.type == ev.MERGED_AWAY.name:
            away = ev.MERGED_AWAY.parse(envelope)
            return away.customer, away.survivor_id
        # Every other type carries the snapshot under "customer".
        return ev.CustomerSnapshot.model_validate(envelope.data["customer"]), None
