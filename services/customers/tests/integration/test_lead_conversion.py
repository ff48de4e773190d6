"""The customers service's part of a lead's conversion, against the real store and broker: the
command on ``crm.leads.v1`` makes the customer (+ contact) under the ids it names or links an existing
customer; what the service would refuse over HTTP it refuses here too (``lead_refused`` with the
field errors, nothing else written); a command delivered again writes nothing twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pool
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import EventCollector, auth, eventually, unique
from crm_platform.testing.plans import deliver

NOW = datetime.now(UTC)


def mobile() -> str:
    return f"+86133{uuid.uuid4().int % 10**8:08d}"


def command(**fields: Any) -> lev.Conversion:
    lead_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "conversion_id": f"{lead_id}:1",
        "customer_id": str(uuid.uuid4()),
        "existing_customer": False,
        "customer_name": f"{unique('转化客户')}有限公司",
        "owner_id": unique("conv-owner"),
        "department_path": "/hq/conv",
        "contact": lev.ConversionContact(contact_id=str(uuid.uuid4()), name="冯经理", phones=[mobile()]),
        "requested_by": "conv-rep",
        "requested_at": NOW,
        "source": "web",
        **fields,
    }
    return lev.Conversion(**values)


def lead_of(conversion: lev.Conversion) -> str:
    return conversion.conversion_id.split(":")[0]


async def answers(events: EventCollector, conversion: lev.Conversion, kind: str) -> list[dict[str, Any]]:
    """The ``kind`` answers (lead_linked, lead_refused) published for ``conversion``."""

    def found() -> list[dict[str, Any]]:
        return [
            r.event
            for r in events.matching(type=kind)
            if r.event["data"].get("conversion_id") == conversion.conversion_id
        ]

    await eventually(found, timeout=30, message=f"{kind} published")
    return found()


async def test_a_command_through_kafka_makes_the_customer_and_its_contact_once(
    customers_app: FastAPI, client: httpx.AsyncClient, customer_events: EventCollector, producer: AIOKafkaProducer
) -> None:
    conversion = command()
    lead_id = lead_of(conversion)
    snapshot = lev.LeadSnapshot(
        lead_id=lead_id, company_name=conversion.customer_name, status="converting", created_at=NOW, updated_at=NOW
    )
    feed = EventFeed(producer)
    envelope = await feed.send(
        lev.LEAD_CONVERSION_REQUESTED, lead_id, lev.LeadConversionRequested(lead=snapshot, conversion=conversion), NOW
    )
    # Every customers service on the broker answers (the session runs several, each with its own
    # database): each answer the same, and this one's database holds the customer once (below).
    answered = await answers(customer_events, conversion, cev.LEAD_LINKED.name)
    for linked in answered:
        assert linked["subject"] == conversion.customer_id and linked["data"]["created"] is True
        assert linked["data"]["contact_id"] == conversion.contact.contact_id  # type: ignore[union-attr]
    created = customer_events.matching(type=cev.CUSTOMER_CREATED.name, subject=conversion.customer_id)[0].event
    assert created["data"]["via"] == "lead" and created["data"]["lead_id"] == lead_id
    r = await client.get(
        f"/v1/customers/{conversion.customer_id}", headers=auth(conversion.owner_id, ["rep"], "/hq/conv")
    )
    assert r.status_code == 200, r.text
    customer = r.json()
    assert customer["name"] == conversion.customer_name and customer["source"] == "website"
    assert customer["owner_id"] == conversion.owner_id and customer["department_path"] == "/hq/conv"
    assert [c["contact_id"] for c in customer["contacts"]] == [conversion.contact.contact_id]  # type: ignore[union-attr]
    # Delivered again (a crash before the offset was committed): nothing new.
    await feed.resend(envelope)
    await customers_app.state.lead_conversions.convert(lead_id, conversion)
    stored = await customers_app.state.customers.repo.get(conversion.customer_id)
    assert stored["version"] == 1 and stored["lead_ids"] == [lead_id]
    assert stored["lead_conversions"] == [conversion.conversion_id]


async def test_linking_adds_the_contact_to_an_existing_customer(
    customers_app: FastAPI, client: httpx.AsyncClient, customer_events: EventCollector
) -> None:
    owner = unique("conv-owner")
    headers = auth(owner, ["rep"], "/hq/conv")
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": f"{unique('已有')}有限公司"}, headers=headers
    )
    assert r.status_code == 201, r.text
    existing = r.json()
    conversion = command(customer_id=existing["id"], existing_customer=True)
    service = customers_app.state.lead_conversions
    await service.convert(lead_of(conversion), conversion)
    await service.convert(lead_of(conversion), conversion)  # again: nothing more
    (linked,) = await answers(customer_events, conversion, cev.LEAD_LINKED.name)
    assert linked["data"]["created"] is False and linked["data"]["customer"]["contact_count"] == 1
    stored = await customers_app.state.customers.repo.get(existing["id"])
    assert stored["version"] == 2 and [c["contact_id"] for c in stored["contacts"]] == [
        conversion.contact.contact_id  # type: ignore[union-attr]
    ]
    assert stored["lead_ids"] == [lead_of(conversion)]
    assert customer_events.matching(type=cev.CONTACT_ADDED.name, subject=existing["id"])


async def test_what_the_service_would_refuse_is_refused_with_the_fields(
    customers_app: FastAPI, client: httpx.AsyncClient, customer_events: EventCollector
) -> None:
    service = customers_app.state.lead_conversions
    repo = customers_app.state.customers.repo
    # A duplicate: the phone of a live customer.
    taken = mobile()
    headers = auth(unique("conv-owner"), ["rep"], "/hq/conv")
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": f"{unique('占用')}有限公司", "phones": [taken]},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    holder = r.json()["id"]
    duplicate = command(contact=lev.ConversionContact(contact_id=str(uuid.uuid4()), name="褚经理", phones=[taken]))
    # Invalid for a customer: a blank name.
    invalid = command(customer_name="  ")
    # Unknown, and deleted, customers to link to.
    unknown = command(customer_id=str(uuid.uuid4()), existing_customer=True)
    manager = auth(unique("mgr"), ["manager"], "/hq")
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": f"{unique('删除')}有限公司"}, headers=manager
    )
    gone = r.json()["id"]
    assert (await client.delete(f"/v1/customers/{gone}", headers={**manager, "If-Match": '"1"'})).status_code in (
        200,
        204,
    )
    deleted = command(customer_id=gone, existing_customer=True)
    for conversion in (duplicate, invalid, unknown, deleted):
        await service.convert(lead_of(conversion), conversion)
        await service.convert(lead_of(conversion), conversion)  # delivered again: the same single answer
    (refused,) = await answers(customer_events, duplicate, cev.LEAD_REFUSED.name)
    assert holder in refused["data"]["reason"]
    assert refused["data"]["errors"] and all(
        "matches existing customer" in e["reason"] for e in refused["data"]["errors"]
    )
    (refused,) = await answers(customer_events, invalid, cev.LEAD_REFUSED.name)
    assert [e["field"] for e in refused["data"]["errors"]] == ["name"]
    (refused,) = await answers(customer_events, unknown, cev.LEAD_REFUSED.name)
    assert refused["data"]["errors"][0]["field"] == "customer_id"
    (refused,) = await answers(customer_events, deleted, cev.LEAD_REFUSED.name)
    assert "deleted" in refused["data"]["reason"]
    for conversion in (duplicate, invalid, unknown):
        assert await repo.get(conversion.customer_id) is None
    assert (await repo.get(gone))["version"] == 2  # deleted: nothing added


async def test_an_owner_at_the_holding_limit_gets_nothing_more(
    customers_app: FastAPI, customer_events: EventCollector
) -> None:
    service = customers_app.state.lead_conversions
    # A department of its own with a pool rule of 3 (handed to this service's copy of the pool's
    # rules; other tests publish rules on the session's broker, e.g. 100,000 for /hq).
    path, rule_id = f"/{unique('conv-limit')}", unique("rule")
    rule = pool.CLAIM_RULES_CHANGED.build(
        source="/crm/pool",
        subject=rule_id,
        data=pool.ClaimRulesChanged(
            claim_rules=pool.ClaimRules(
                rule_id=rule_id, department_path=path, cooldown_days=0, claim_scope="company", max_held=3
            )
        ),
        aggregate_version=1,
        time=NOW,
        actor="admin-1",
    )
    assert await deliver(customers_app, rule)
    limit = (await customers_app.state.customers.holding_limit(path)).limit
    assert limit == 3
    owner = unique("conv-full")
    for _ in range(limit):
        await service.convert("lead", command(owner_id=owner, department_path=path, contact=None))
    over = command(owner_id=owner, department_path=path, contact=None)
    await service.convert(lead_of(over), over)
    (refused,) = await answers(customer_events, over, cev.LEAD_REFUSED.name)
    assert refused["data"]["errors"][0]["field"] == "owner_id" and "limit" in refused["data"]["reason"]
    assert await customers_app.state.customers.repo.get(over.customer_id) is None
