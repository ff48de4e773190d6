"""Publish customers events (built with the contracts) onto Kafka, as the customers service would.

For suites of services that keep a customer read copy: they can feed it through the
real broker without running the customers service::

    feed = CustomerFeed(producer)
    customer = await feed.created(owner_id="rep-1", department_path="/hq/east", contacts=["张三"])
    await feed.deleted(customer)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from crm_platform.contracts import customers as ev
from crm_platform.events import EventEnvelope, EventType, to_kafka


@dataclass
class FedCustomer:
    """The customer as the feed last published it."""

    snapshot: ev.CustomerSnapshot
    contacts: list[ev.ContactData] = field(default_factory=list)
    version: int = 1

    @property
    def id(self) -> str:
        return self.snapshot.customer_id

    @property
    def contact_ids(self) -> list[str]:
        return [c.contact_id for c in self.contacts]


class CustomerFeed:
    def __init__(
        self, producer: AIOKafkaProducer, topic: str = ev.TOPIC, actor: str = "feed", *, snapshot_contacts: bool = True
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.actor = actor
        #: As the customers service publishes: every snapshot lists the contacts (False: an older
        #: producer's snapshots, without the list, whose contacts come from the contact events).
        self.snapshot_contacts = snapshot_contacts
        self.published: list[EventEnvelope] = []

    async def publish(self, envelope: EventEnvelope) -> EventEnvelope:
        key, value, headers = to_kafka(envelope.model_dump(mode="json"))
        await self.producer.send_and_wait(
            self.topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        self.published.append(envelope)
        return envelope

    async def _emit(
        self, customer: FedCustomer, event_type: EventType[Any], data: BaseModel, bump: bool = True
    ) -> EventEnvelope:
        if bump:
            customer.version += 1
        customer.snapshot.updated_at = datetime.now(UTC)
        if self.snapshot_contacts and getattr(data, "customer", None) is customer.snapshot:
            customer.snapshot.contacts = [
                ev.ContactSummary(
                    contact_id=c.contact_id, name=c.name, role=c.role, title=c.title, is_primary=c.is_primary
                )
                for c in customer.contacts
            ]
        envelope = event_type.build(
            source="/crm/customers",
            subject=customer.id,
            data=data,
            aggregate_version=customer.version,
            time=datetime.now(UTC),
            actor=self.actor,
        )
        return await self.publish(envelope)

    async def created(
        self,
        *,
        owner_id: str | None,
        department_path: str | None,
        name: str | None = None,
        contacts: list[str] | None = None,
        in_pool: bool = False,
        tags: list[str] | None = None,
    ) -> FedCustomer:
        now = datetime.now(UTC)
        customer_id = str(uuid.uuid4())
        department_id = department_path.rstrip("/").rsplit("/", 1)[-1] if department_path else None
        contact_data = [
            ev.ContactData(contact_id=str(uuid.uuid4()), name=n, role="decision_maker") for n in contacts or []
        ]
        snapshot = ev.CustomerSnapshot(
            customer_id=customer_id,
            kind="company",
            name=name or f"测试客户 {customer_id[:8]}",
            owner_id=owner_id,
            department_id=department_id,
            department_path=department_path,
            in_pool=in_pool,
            tags=tags or [],
            created_at=now,
            created_by=owner_id,
            updated_at=now,
            contact_count=len(contact_data),
        )
        customer = FedCustomer(snapshot, contact_data)
        await self._emit(
            customer, ev.CUSTOMER_CREATED, ev.CustomerCreated(customer=snapshot, contacts=contact_data), bump=False
        )
        return customer

    async def updated(self, customer: FedCustomer, **fields: Any) -> EventEnvelope:
        changes = [ev.FieldChange(field=k, old=getattr(customer.snapshot, k), new=v) for k, v in fields.items()]
        for name, value in fields.items():
            setattr(customer.snapshot, name, value)
        return await self._emit(
            customer, ev.CUSTOMER_UPDATED, ev.CustomerUpdated(customer=customer.snapshot, changes=changes)
        )

    async def contact_added(self, customer: FedCustomer, name: str) -> ev.ContactData:
        contact = ev.ContactData(contact_id=str(uuid.uuid4()), name=name)
        customer.contacts.append(contact)
        customer.snapshot.contact_count = len(customer.contacts)
        await self._emit(customer, ev.CONTACT_ADDED, ev.ContactAdded(customer=customer.snapshot, contact=contact))
        return contact

    async def contact_changed(self, customer: FedCustomer, contact_id: str, **fields: Any) -> EventEnvelope:
        contact = next(c for c in customer.contacts if c.contact_id == contact_id)
        changes = [ev.FieldChange(field=k, old=getattr(contact, k), new=v) for k, v in fields.items()]
        for name, value in fields.items():
            setattr(contact, name, value)
        return await self._emit(
            customer,
            ev.CONTACT_CHANGED,
            ev.ContactChanged(customer=customer.snapshot, contact=contact, changes=changes),
        )

    async def contact_removed(self, customer: FedCustomer, contact_id: str) -> EventEnvelope:
        customer.contacts = [c for c in customer.contacts if c.contact_id != contact_id]
        customer.snapshot.contact_count = len(customer.contacts)
        return await self._emit(
            customer, ev.CONTACT_REMOVED, ev.ContactRemoved(customer=customer.snapshot, contact_id=contact_id)
        )

    async def owner_changed(self, customer: FedCustomer, owner_id: str, department_path: str) -> EventEnvelope:
        previous = customer.snapshot.owner_id
        customer.snapshot.owner_id = owner_id
        customer.snapshot.department_path = department_path
        customer.snapshot.department_id = department_path.rstrip("/").rsplit("/", 1)[-1]
        return await self._emit(
            customer,
            ev.OWNER_CHANGED,
            ev.OwnerChanged(customer=customer.snapshot, previous_owner_id=previous, owner_id=owner_id),
        )

    async def released(self, customer: FedCustomer) -> EventEnvelope:
        previous = customer.snapshot.owner_id
        customer.snapshot.owner_id = None
        customer.snapshot.in_pool = True
        return await self._emit(
            customer,
            ev.RELEASED,
            ev.ReleasedToPool(customer=customer.snapshot, previous_owner_id=previous, reason="test"),
        )

    async def claimed(self, customer: FedCustomer, owner_id: str, department_path: str) -> EventEnvelope:
        customer.snapshot.owner_id = owner_id
        customer.snapshot.department_path = department_path
        customer.snapshot.in_pool = False
        return await self._emit(customer, ev.CLAIMED, ev.Claimed(customer=customer.snapshot, owner_id=owner_id))

    async def locked(self, customer: FedCustomer, reason: str | None = None) -> EventEnvelope:
        customer.snapshot.locked = True
        return await self._emit(customer, ev.LOCKED, ev.Locked(customer=customer.snapshot, reason=reason))

    async def deleted(self, customer: FedCustomer) -> EventEnvelope:
        customer.snapshot.status = "deleted"
        return await self._emit(customer, ev.DELETED, ev.Deleted(customer=customer.snapshot, reason="test"))

    async def restored(self, customer: FedCustomer) -> EventEnvelope:
        customer.snapshot.status = "active"
        return await self._emit(customer, ev.RESTORED, ev.Restored(customer=customer.snapshot))

    async def purged(self, customer: FedCustomer) -> EventEnvelope:
        customer.snapshot.status = "purged"
        return await self._emit(customer, ev.PURGED, ev.Purged(customer_id=customer.id))

    async def merged(self, survivor: FedCustomer, duplicate: FedCustomer) -> tuple[EventEnvelope, EventEnvelope]:
        """A merge as the customers service publishes it: merged_away on the duplicate, then merged on the survivor."""
        duplicate.snapshot.status = "merged"
        duplicate.snapshot.merged_into = survivor.id
        away = await self._emit(
            duplicate, ev.MERGED_AWAY, ev.MergedAway(customer=duplicate.snapshot, survivor_id=survivor.id)
        )
        known = set(survivor.contact_ids)
        moved = [c for c in duplicate.contacts if c.contact_id not in known]
        survivor.contacts += moved
        survivor.snapshot.contact_count = len(survivor.contacts)
        merged = await self._emit(
            survivor,
            ev.MERGED,
            ev.Merged(
                customer=survivor.snapshot,
                merged_customer_id=duplicate.id,
                moved_contact_ids=[c.contact_id for c in moved],
            ),
        )
        return away, merged
