"""The customer read model, fed real customers events through the embedded broker by a real consumer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from crm_platform.auth import Principal, Role
from crm_platform.consumer import EventConsumer
from crm_platform.kafka import dead_letter_topic, ensure_topics
from crm_platform.readmodels.customers import CustomerEvent, CustomerReadModel
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.fixtures import eventually

# Its own topic and group: the customers service's suite publishes on crm.customers.v1 in the same session.
TOPIC = f"crm.readmodeltest-{uuid.uuid4().hex[:6]}.v1"
GROUP = f"crm.readmodeltest-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
async def running(backend: Backend, producer: Any) -> AsyncIterator[dict[str, Any]]:
    mongo = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    db = mongo[f"readmodel_{uuid.uuid4().hex[:8]}"]
    seen: list[tuple[str, CustomerEvent]] = []

    def recorder(name: str) -> Any:
        async def hook(event: CustomerEvent) -> None:
            seen.append((name, event))

        return hook

    model = CustomerReadModel(
        db["customers"],
        on_merged=recorder("merged"),
        on_merged_away=recorder("merged_away"),
        on_deleted=recorder("deleted"),
        on_restored=recorder("restored"),
        on_purged=recorder("purged"),
    )
    model.add_hook("changed", recorder("changed"))
    await model.ensure_indexes()
    await ensure_topics(backend.kafka_bootstrap, [TOPIC, dead_letter_topic(GROUP)])
    broker = KafkaBroker(backend.kafka_bootstrap, acks="all")
    consumer = EventConsumer(
        broker, group_id=GROUP, topics=[TOPIC], handlers=model.handlers(), max_attempts=2, backoff_initial=0.01
    )
    await broker.start()
    await eventually(consumer.assigned, timeout=60, message="partitions assigned")
    yield {"model": model, "feed": CustomerFeed(producer, topic=TOPIC), "seen": seen}
    await broker.stop()
    await mongo.close()


async def copy_at(model: CustomerReadModel, customer: FedCustomer, **expected: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        doc = await model.get(customer.id)
        if doc is None or doc.get("source_version") != customer.version:
            return None
        return doc if all(doc.get(k) == v for k, v in expected.items()) else None

    found: dict[str, Any] = await eventually(probe, timeout=30, message=f"copy of {customer.id} at v{customer.version}")
    return found


def test_handles_every_customer_event_type():
    from crm_platform.contracts import customers

    names = set(CustomerReadModel(None).handlers())  # type: ignore[arg-type]
    on_topic = {value.name for value in vars(customers).values() if getattr(value, "topic", None) == customers.TOPIC}
    # Every customer event (each carries the snapshot); not the exports' and imports' records
    # (crm.customer_export.*, crm.customer_import.*: for the audit log, no customer in them).
    expected = {name for name in on_topic if name.startswith("crm.customer.")}
    assert on_topic - expected == {"crm.customer_export.created", "crm.customer_import.completed"}
    # A lead's conversion refused (crm.customer.lead_refused) changed no customer and has no snapshot.
    expected -= {customers.LEAD_REFUSED.name}
    assert names == expected and len(names) == 16


#: Snapshots list the contacts (the copy is written without reading it), or, from an older
#: producer, do not (the copy's contacts are read and changed by the contact events).
SNAPSHOTS = pytest.mark.parametrize("snapshot_contacts", [True, False], ids=["snapshot-lists", "older-snapshots"])


@SNAPSHOTS
async def test_the_copy_follows_profile_ownership_and_contacts(running, snapshot_contacts):
    model = running["model"]
    feed = CustomerFeed(running["feed"].producer, topic=TOPIC, snapshot_contacts=snapshot_contacts)
    customer = await feed.created(
        owner_id="rep-1", department_path="/hq/east", name="甲公司", contacts=["张三", "李四"], tags=["A类"]
    )
    copy = await copy_at(model, customer)
    assert (copy["name"], copy["kind"], copy["owner_id"], copy["department_path"], copy["tags"]) == (
        "甲公司",
        "company",
        "rep-1",
        "/hq/east",
        ["A类"],
    )
    assert [c["name"] for c in copy["contacts"]] == ["张三", "李四"] and copy["contacts_complete"]
    zhang, li = customer.contact_ids
    added = await feed.contact_added(customer, "王五")
    await feed.contact_changed(customer, zhang, name="张三丰", role="handler")
    await feed.contact_removed(customer, li)
    copy = await copy_at(model, customer)
    assert {c["contact_id"]: (c["name"], c["role"]) for c in copy["contacts"]} == {
        zhang: ("张三丰", "handler"),
        added.contact_id: ("王五", None),
    }
    assert CustomerReadModel.contact_ids(copy) == {zhang, added.contact_id}
    await feed.updated(customer, tier="A", industry="制造业")
    await feed.owner_changed(customer, "rep-2", "/hq/west")
    copy = await copy_at(model, customer, owner_id="rep-2")
    assert (copy["tier"], copy["industry"], copy["department_path"]) == ("A", "制造业", "/hq/west")
    await feed.released(customer)
    copy = await copy_at(model, customer, in_pool=True)
    assert copy["owner_id"] is None and len(copy["contacts"]) == 2  # contacts survive events that do not touch them
    await feed.claimed(customer, "rep-3", "/hq/north")
    await feed.locked(customer, "审核")
    copy = await copy_at(model, customer, owner_id="rep-3", locked=True)
    assert copy["in_pool"] is False


async def test_stale_and_repeated_events_change_nothing(running):
    model, feed = running["model"], running["feed"]
    customer = await feed.created(owner_id="rep-1", department_path="/hq")
    first = await feed.updated(customer, tier="A")
    await feed.updated(customer, tier="B")
    await copy_at(model, customer, tier="B")
    await feed.publish(first)  # version 2 again, after version 3
    latest = await feed.updated(customer, industry="IT")  # same key: handled after the repeat
    copy = await copy_at(model, customer, industry="IT")
    assert copy["tier"] == "B" and copy["source_event_id"] == latest.id
    repeats = [e for name, e in running["seen"] if name == "changed" and e.envelope.id == first.id]
    assert [e.applied for e in repeats] == [True, False]  # the hooks ran both times, told it was a repeat


async def test_recycle_bin_hooks_see_the_copy_as_it_is_now(running):
    model, feed, seen = running["model"], running["feed"], running["seen"]
    customer = await feed.created(owner_id="rep-1", department_path="/hq")
    deleted = await feed.deleted(customer)
    await feed.restored(customer)
    await copy_at(model, customer, status="active")
    await feed.publish(deleted)  # a stale delete, redelivered
    await feed.updated(customer, tier="C")
    await copy_at(model, customer, tier="C")
    calls = [
        (name, e.applied, (e.copy or {}).get("status"))
        for name, e in seen
        if e.customer_id == customer.id and name != "changed"
    ]
    assert calls == [("deleted", True, "deleted"), ("restored", True, "active"), ("deleted", False, "active")]
    await feed.deleted(customer)
    await feed.purged(customer)
    copy = await copy_at(model, customer, status="purged")
    assert "name" not in copy and "owner_id" not in copy and copy["contacts"] == []
    # Hooks run right after the copy is stored: wait for them rather than for the copy.
    await eventually(
        lambda: [n for n, e in seen if e.customer_id == customer.id and n != "changed"][-2:] == ["deleted", "purged"],
        message="hooks",
    )
    assert not CustomerReadModel.visible_to(Principal(user_id="x", roles=frozenset({Role.admin})), copy)


@SNAPSHOTS
async def test_a_merge_moves_contacts_and_tells_both_sides(running, snapshot_contacts):
    model, seen = running["model"], running["seen"]
    feed = CustomerFeed(running["feed"].producer, topic=TOPIC, snapshot_contacts=snapshot_contacts)
    survivor = await feed.created(owner_id="rep-1", department_path="/hq", contacts=["甲"])
    duplicate = await feed.created(owner_id="rep-1", department_path="/hq", contacts=["乙", "丙"])
    await copy_at(model, duplicate)
    await feed.merged(survivor, duplicate)
    copy = await copy_at(model, survivor)
    assert sorted(c["name"] for c in copy["contacts"]) == ["丙", "乙", "甲"] and copy["contacts_complete"]
    gone = await copy_at(model, duplicate, status="merged")
    assert gone["merged_into"] == survivor.id

    def hook_call(kind: str, customer_id: str) -> CustomerEvent | None:
        return next((e for name, e in seen if name == kind and e.customer_id == customer_id), None)

    merged = await eventually(lambda: hook_call("merged", survivor.id), message="merged hook")
    away = await eventually(lambda: hook_call("merged_away", duplicate.id), message="merged_away hook")
    assert merged.other_id == duplicate.id and away.other_id == survivor.id


def test_visibility_follows_the_customers_rules():
    rep = Principal(user_id="rep-1", roles=frozenset({Role.rep}), department_path="/hq/east/s")
    manager = Principal(user_id="m", roles=frozenset({Role.manager}), department_path="/hq/east")
    owned = {"status": "active", "owner_id": "rep-1", "department_path": "/hq/east/s", "in_pool": False}
    other = {**owned, "owner_id": "rep-2"}
    pool = {**other, "owner_id": None, "in_pool": True}
    assert CustomerReadModel.visible_to(rep, owned) and not CustomerReadModel.visible_to(rep, other)
    assert CustomerReadModel.visible_to(manager, other) and CustomerReadModel.visible_to(rep, pool)
    assert not CustomerReadModel.visible_to(rep, None)
    assert CustomerReadModel.is_active(owned) and not CustomerReadModel.is_active({**owned, "status": "deleted"})


async def test_a_request_waits_a_moment_for_a_customer_on_its_way(running: dict[str, Any]) -> None:
    """``arrived``: a copy that lands while the request waits is answered; one that never comes is
    None after the waits, and one already there costs no wait."""
    model: CustomerReadModel = running["model"]
    customer = await running["feed"].created(owner_id="rep-arrival", department_path="/hq")
    await copy_at(model, customer)
    started = time.monotonic()
    assert await model.arrived(customer.id, waits=(5.0,)) is not None
    assert time.monotonic() - started < 1.0  # there already: no wait

    started = time.monotonic()
    assert await model.arrived(str(uuid.uuid4()), waits=(0.05, 0.1)) is None
    assert time.monotonic() - started >= 0.15

    late = str(uuid.uuid4())

    async def lands_later() -> None:
        await asyncio.sleep(0.2)
        await model.collection.insert_one({"_id": late, "customer_id": late, "status": "active"})

    writer = asyncio.create_task(lands_later())
    assert (await model.arrived(late, waits=(0.1, 0.2, 0.4))) == {"_id": late, "customer_id": late, "status": "active"}
    await writer
