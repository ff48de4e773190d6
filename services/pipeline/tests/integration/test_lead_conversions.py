"""A lead's conversion asks the pipeline for an opportunity (crm.lead.conversion_progressed): made once,
refused with field errors (nothing else written), parked while the customer has not arrived yet,
made once it has, refused when it never comes.

The commands are real envelopes (the contracts' ``build``), handed to the handler the service's
consumer registers, or published on the broker for the consumer itself to take.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed, customer
from crm_platform.testing.fixtures import eventually
from crm_platform.testing.plans import deliver


def command(customer_id: str, owner: Any, **opportunity: Any) -> EventEnvelope:
    """``crm.lead.conversion_progressed`` as the leads service publishes it once the customer is made."""
    now = datetime.now(UTC)
    lead_id = f"lead-{uuid.uuid4().hex[:12]}"
    lead = lev.LeadSnapshot(
        lead_id=lead_id,
        company_name=f"转化测试 {uuid.uuid4().hex[:8]}",
        owner_id=owner.id,
        department_path=owner.dept,
        status="converting",
        campaign_id="camp-expo",
        created_at=now,
        updated_at=now,
    )
    asked = lev.ConversionOpportunity(
        opportunity_id=str(uuid.uuid4()),
        **{"name": "首单", "amount": "125000.00", "expected_close_date": date(2027, 3, 31), **opportunity},
    )
    conversion = lev.Conversion(
        conversion_id=f"{lead_id}:1",
        customer_id=customer_id,
        existing_customer=False,
        customer_name=lead.company_name,
        campaign_id="camp-expo",
        owner_id=owner.id,
        department_id=owner.dept.rsplit("/", 1)[-1],
        department_path=owner.dept,
        opportunity=asked,
        requested_by=owner.id,
        requested_at=now,
    )
    data = lev.LeadConversionProgressed(lead=lead, conversion=conversion, step="customer", customer_id=customer_id)
    return lev.LEAD_CONVERSION_PROGRESSED.build(
        source="/crm/leads", subject=lead_id, data=data, aggregate_version=3, time=now, actor=owner.id
    )


def asked_id(envelope: EventEnvelope) -> str:
    opportunity_id: str = envelope.data["conversion"]["opportunity"]["opportunity_id"]
    return opportunity_id


async def settle(app: Any) -> None:
    await app.state.kit.relay.drain()


async def test_the_opportunity_is_made_once_under_the_conversions_id(
    pipeline_app, client, team, customer_of, pipeline_db, pipeline_events
):
    customer = await customer_of(team.rep)
    envelope = command(customer.id, team.rep)
    opportunity_id = asked_id(envelope)
    assert await deliver(pipeline_app, envelope) == 1
    doc = await pipeline_db["opportunities"].find_one({"_id": opportunity_id})
    assert doc is not None
    assert (doc["customer_id"], doc["owner_id"], doc["department_path"]) == (customer.id, team.rep.id, team.rep.dept)
    assert (doc["lead_id"], doc["source_campaign"], doc["stage_id"]) == (
        envelope.subject,
        "camp-expo",
        "initial_contact",
    )
    assert doc["created_by"] == team.rep.id and doc["amount_minor"] == 12_500_000

    r = await client.get(f"/v1/opportunities/{opportunity_id}", headers=team.rep.headers)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "首单" and r.json()["amount"] == "125000.00"

    # Redelivered: the opportunity is there; nothing new is written or published.
    assert await deliver(pipeline_app, envelope) == 1
    assert (await pipeline_db["opportunities"].find_one({"_id": opportunity_id}))["version"] == 1
    [created] = await pipeline_events.wait_for(type="crm.opportunity.created", subject=opportunity_id)
    snapshot = created.event["data"]["opportunity"]
    assert snapshot["lead_id"] == envelope.subject and snapshot["source_campaign"] == "camp-expo"
    await settle(pipeline_app)
    assert len(pipeline_events.matching(type="crm.opportunity.created", subject=opportunity_id)) == 1


@pytest.mark.parametrize(
    "asked,field",
    [
        ({"pipeline_id": "no-such-pipeline"}, "pipeline_id"),
        ({"amount": "12.345"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"name": "长" * 1000}, "name"),
        ({"currency": "XXQ"}, "currency"),
    ],
)
async def test_what_cannot_be_made_is_refused_with_field_errors_and_nothing_written(
    pipeline_app, team, customer_of, pipeline_db, pipeline_events, asked, field
):
    customer = await customer_of(team.rep)
    envelope = command(customer.id, team.rep, **asked)
    opportunity_id = asked_id(envelope)
    for _ in range(2):  # redelivered: refused once
        assert await deliver(pipeline_app, envelope) == 1
    assert await pipeline_db["opportunities"].find_one({"_id": opportunity_id}) is None
    [refused] = await pipeline_events.wait_for(type="crm.opportunity.lead_refused", subject=opportunity_id)
    data = refused.event["data"]
    assert (data["lead_id"], data["conversion_id"]) == (envelope.subject, f"{envelope.subject}:1")
    assert field in [e["field"] for e in data["errors"]], data
    await settle(pipeline_app)
    assert len(pipeline_events.matching(type="crm.opportunity.lead_refused", subject=opportunity_id)) == 1
    assert not pipeline_events.matching(type="crm.opportunity.created", subject=opportunity_id)


async def test_a_customer_in_the_recycle_bin_is_refused(
    pipeline_app, team, feed, customer_of, arrives, pipeline_db, pipeline_events
):
    customer = await customer_of(team.rep)
    await feed.deleted(customer)
    await arrives(customer, status="deleted")
    envelope = command(customer.id, team.rep)
    assert await deliver(pipeline_app, envelope) == 1
    [refused] = await pipeline_events.wait_for(type="crm.opportunity.lead_refused", subject=asked_id(envelope))
    assert [e["field"] for e in refused.event["data"]["errors"]] == ["customer_id"]
    assert await pipeline_db["opportunities"].find_one({"_id": asked_id(envelope)}) is None


async def test_a_command_whose_customer_is_not_known_yet_waits_parked_then_is_made(
    pipeline_app, team, pipeline_db, pipeline_events, producer: AIOKafkaProducer
):
    customer_id = str(uuid.uuid4())
    envelope = command(customer_id, team.rep)
    conversion_id = f"{envelope.subject}:1"
    # Handed over: acknowledged (it holds up nothing behind it), parked, nothing else written.
    assert await deliver(pipeline_app, envelope) == 1
    assert await deliver(pipeline_app, envelope) == 1  # redelivered: parked once
    parked = await pipeline_db["lead_conversions_waiting"].find_one({"_id": conversion_id})
    assert parked is not None and parked["customer_id"] == customer_id
    assert EventEnvelope.model_validate(parked["envelope"]).id == envelope.id
    assert await pipeline_db["opportunities"].find_one({"_id": asked_id(envelope)}) is None
    assert await pipeline_db["lead_conversions"].find_one({"_id": conversion_id}) is None
    # A pass before the customer is here: tried again later, still parked.
    await pipeline_app.state.lead_conversions.resume()
    assert await pipeline_db["lead_conversions_waiting"].find_one({"_id": conversion_id}) is not None

    # The customer arrives (through the broker, and handed to the copy directly: in a long session
    # the app's customers consumer may still be replaying the topic's history). The background pass
    # makes the opportunity and lets the parked command go.
    feed = EventFeed(producer)
    now = datetime.now(UTC)
    created = await feed.send(
        cev.CUSTOMER_CREATED,
        customer_id,
        cev.CustomerCreated(customer=customer(customer_id, team.rep.id, team.rep.dept, now)),
        now,
    )
    await deliver(pipeline_app, created)
    await eventually(
        lambda: pipeline_db["opportunities"].find_one({"_id": asked_id(envelope)}),
        timeout=60,
        message="the opportunity made once the customer arrived",
    )
    await eventually(
        lambda: _gone(pipeline_db["lead_conversions_waiting"], conversion_id), timeout=30, message="unparked"
    )
    [made] = await pipeline_events.wait_for(type="crm.opportunity.created", subject=asked_id(envelope))
    assert made.event["data"]["opportunity"]["lead_id"] == envelope.subject
    assert not pipeline_events.matching(type="crm.opportunity.lead_refused", subject=asked_id(envelope))


async def test_a_parked_command_whose_customer_never_comes_is_refused_once_the_wait_is_over(
    pipeline_app, team, clock, pipeline_db, pipeline_events
):
    envelope = command(str(uuid.uuid4()), team.rep)
    conversion_id = f"{envelope.subject}:1"
    assert await deliver(pipeline_app, envelope) == 1
    conversions = pipeline_app.state.lead_conversions
    clock.advance(timedelta(seconds=conversions.settings.lead_conversion_wait_seconds + 60))
    await conversions.resume()
    [refused] = await pipeline_events.wait_for(type="crm.opportunity.lead_refused", subject=asked_id(envelope))
    data = refused.event["data"]
    assert data["conversion_id"] == conversion_id and data["lead_id"] == envelope.subject
    assert [e["field"] for e in data["errors"]] == ["customer_id"] and "did not reach" in data["reason"]
    assert await pipeline_db["lead_conversions_waiting"].find_one({"_id": conversion_id}) is None
    assert await pipeline_db["opportunities"].find_one({"_id": asked_id(envelope)}) is None
    # Delivered again after that: the refusal stands, nothing is parked or published again.
    assert await deliver(pipeline_app, envelope) == 1
    assert await pipeline_db["lead_conversions_waiting"].find_one({"_id": conversion_id}) is None
    await settle(pipeline_app)
    assert len(pipeline_events.matching(type="crm.opportunity.lead_refused", subject=asked_id(envelope))) == 1


async def _gone(collection: Any, _id: str) -> bool:
    return await collection.find_one({"_id": _id}) is None
