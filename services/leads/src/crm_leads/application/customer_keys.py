"""The customers' duplicate-check keys, kept from ``crm.customers.v1`` (no call to the customers service).

Per customer, a copy of the keys it holds (``customers``: ``keys``, owner, status, applied by
``source_version`` so a stale or repeated event changes nothing), and per key a document naming
its holders (``customer_keys``, looked up by ``_id``). A customer holds its company name (a
person's name is no company's), every phone and email of its own and of its contacts, while it
is active or in the recycle bin (a deleted customer still blocks a copy of itself, as in the
customers service); merged-away and purged customers hold none.

Keys are added before the copy is written and removed after, so a crash between leaves a stale
holder (the check reads the copy and ignores it), never a missing key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_leads.adapters.repository import LeadRepository
from crm_leads.domain.leads import customer_keys
from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import customers as cev
from crm_platform.events import EventEnvelope

Document = dict[str, Any]
HOLDING = ("active", "deleted")


def keys_of(customer: cev.CustomerSnapshot, contacts: list[cev.ContactData] | None = None) -> set[str]:
    if customer.status not in HOLDING:
        return set()
    phones = list(customer.match_phones or [])
    emails = list(customer.match_emails or [])
    for contact in contacts or []:  # events published before match_phones existed carry these only
        phones += contact.phones
        emails += contact.emails
    return customer_keys(customer.kind, customer.name, phones, emails)


class CustomerKeysCopy:
    def __init__(self, repo: LeadRepository) -> None:
        self.repo = repo

    def handlers(self) -> Mapping[str, Handler]:
        """Every customers event with a snapshot, and the purge (which has none)."""
        names = [t.name for t in (cev.CUSTOMER_CREATED, cev.CUSTOMER_UPDATED, cev.CONTACT_ADDED, cev.CONTACT_CHANGED)]
        names += [t.name for t in (cev.CONTACT_REMOVED, cev.OWNER_CHANGED, cev.RELEASED, cev.CLAIMED)]
        names += [t.name for t in (cev.DELETED, cev.RESTORED, cev.MERGED, cev.MERGED_AWAY, cev.PURGED)]
        return dict.fromkeys(names, self.apply)

    async def apply(self, envelope: EventEnvelope) -> None:
        data = envelope.data
        if envelope.type == cev.PURGED.name:
            customer_id = str(data["customer_id"])
            current = await self.repo.customer(customer_id)
            state: Document = {"_id": customer_id, "keys": [], "owner_id": None, "status": "purged"}
        else:
            customer = cev.CustomerSnapshot.model_validate(data["customer"])
            customer_id = customer.customer_id
            current = await self.repo.customer(customer_id)
            contacts = None
            if envelope.type == cev.CUSTOMER_CREATED.name:
                contacts = [cev.ContactData.model_validate(c) for c in data.get("contacts") or []]
            held = keys_of(customer, contacts)
            if customer.match_phones is None and current is not None and held:
                # An event from before match_phones: keep the phones and emails the copy knew.
                held |= {k for k in current.get("keys") or [] if not k.startswith("name:")}
            state = {"_id": customer_id, "keys": sorted(held), "owner_id": customer.owner_id, "status": customer.status}
        if current is not None and int(current.get("source_version", 0)) >= envelope.aggregateversion:
            return  # stale or repeated
        old = set((current or {}).get("keys") or [])
        new = set(state["keys"])
        await self.repo.customer_keys.add(new - old, customer_id)
        if await apply_versioned(self.repo.customers, envelope, state):
            await self.repo.customer_keys.remove(old - new, customer_id)
            return
        # A newer event got there first: give back only what the copy it wrote does not hold.
        latest = await self.repo.customer(customer_id)
        await self.repo.customer_keys.remove(new - old - set((latest or {}).get("keys") or []), customer_id)
