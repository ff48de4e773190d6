"""Follow-ups counted on leads (from crm.interactions.v1) and the pool's decisions to recycle leads nobody
works (from crm.pool.v1), against the session's real store and broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.contracts import interactions as iev
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pool as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, collecting

REP = auth("lead-fu-rep", ["rep"], "/hq/east/fu")


def followup(lead_id: str, occurred_at: datetime, *, author: str = "rep", top_level: bool = True) -> EventEnvelope:
    """A ``crm.interaction.logged`` of a follow-up on ``lead_id`` (no customer): the lead id at the top
    of the event (``top_level``) or only in its ``interaction`` snapshot."""
    interaction_id = str(uuid.uuid4())
    snapshot = iev.InteractionSnapshot(
        interaction_id=interaction_id,
        channel="phone",
        customer_id="",
        author_id=author,
        occurred_at=occurred_at,
        recorded_at=occurred_at,
        recorded_late=False,
        summary="电话跟进",
        updated_at=occurred_at,
    )
    data = iev.InteractionLogged(
        interaction_id=interaction_id,
        customer_id="",
        author_id=author,
        channel="phone",
        occurred_at=occurred_at,
        interaction=snapshot,
    )
    envelope = iev.INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=data,
        aggregate_version=1,
        time=occurred_at,
        actor=author,
    )
    envelope.data["customer_id"] = None
    envelope.data["interaction"]["customer_id"] = None
    envelope.data["interaction"]["lead_id"] = lead_id
    if top_level:
        envelope.data["lead_id"] = lead_id
    return envelope


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"company_name": f"跟进测试{uuid.uuid4().hex[:10]}有限公司", **fields}
    r = await client.post("/v1/leads", json=body, headers=REP)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def get(client: httpx.AsyncClient, lead_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/leads/{lead_id}", headers=REP)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_followups_count_once_each(
    client: httpx.AsyncClient, leads_app: FastAPI, producer: AIOKafkaProducer
) -> None:
    lead = await create(client)
    assert lead["followup_count"] == 0 and lead["last_followup_at"] is None
    feed = EventFeed(producer)
    first_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    first = followup(lead["id"], first_at)
    bootstrap = leads_app.state.kit.settings.kafka_bootstrap_servers
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        await feed.resend(first)  # through Kafka, as the interactions service publishes it
        await events.wait_for(1, 30, type=lev.LEAD_FOLLOWED_UP.name, subject=lead["id"])
        counted = await get(client, lead["id"])
        assert counted["followup_count"] == 1 and counted["version"] == 2
        assert moment(counted["last_followup_at"]) == first_at
        # Redelivered (by Kafka, and by hand): counted once.
        await feed.resend(first)
        await leads_app.state.followups.on_interaction_logged(first)
        # An older follow-up, its lead id only in the snapshot: counted, the last moment stays.
        older = followup(lead["id"], first_at - timedelta(days=2), top_level=False)
        await leads_app.state.followups.on_interaction_logged(older)
        records = await events.wait_for(2, 30, type=lev.LEAD_FOLLOWED_UP.name, subject=lead["id"])
        followed = [EventEnvelope.model_validate(r.event) for r in records]
    after = await get(client, lead["id"])
    assert after["followup_count"] == 2 and after["version"] == 3, after
    assert moment(after["last_followup_at"]) == first_at
    assert len(followed) == 2, [e.data for e in followed]
    data = lev.LEAD_FOLLOWED_UP.parse(followed[0])
    assert data.interaction_id == first.data["interaction_id"] and data.lead.followup_count == 1
    assert followed[1].aggregateversion == 3 and followed[1].data["lead"]["followup_count"] == 2
    r = await client.get(f"/v1/leads/{lead['id']}/history", headers=REP)
    assert r.status_code == 200, r.text
    logged = [e for e in r.json() if e["summary"] == "Follow-up logged"]
    assert sorted(c["new"] for e in logged for c in e["changes"]) == [1, 2], r.json()


async def test_followups_of_customers_unknown_or_deleted_leads_change_nothing(
    client: httpx.AsyncClient, leads_app: FastAPI
) -> None:
    followups = leads_app.state.followups
    now = datetime.now(UTC)
    unknown = str(uuid.uuid4())
    await followups.on_interaction_logged(followup(unknown, now))
    assert await leads_app.state.repo.get(unknown) is None
    # A follow-up of a customer (no lead id): not the leads service's.
    customer_only = followup(unknown, now, top_level=False)
    customer_only.data["interaction"]["lead_id"] = None
    customer_only.data["customer_id"] = str(uuid.uuid4())
    await followups.on_interaction_logged(customer_only)
    lead = await create(client)
    r = await client.delete(f"/v1/leads/{lead['id']}", headers=auth("lead-fu-mgr", ["manager"], "/hq/east"))
    assert r.status_code == 204, r.text
    await followups.on_interaction_logged(followup(lead["id"], now))
    stored = await leads_app.state.repo.get(lead["id"])
    assert stored["deleted"] and stored["version"] == 2 and not stored.get("followup_count")


def decision(lead: dict[str, Any], version: int, owner: str = "lead-fu-rep") -> pev.LeadReleaseDecided:
    now = datetime.now(UTC)
    return pev.LeadReleaseDecided(
        lead_id=lead["id"],
        owner_id=owner,
        lead_version=version,
        last_worked_at=now - timedelta(days=30),
        reason_text="not worked by the owner for 30 days (rule 线索回收)",
        rule_id="rule-fu",
        deadline=now,
    )


async def test_a_pool_decision_recycles_a_lead_still_unworked(
    client: httpx.AsyncClient, leads_app: FastAPI, producer: AIOKafkaProducer
) -> None:
    lead = await create(client)
    feed = EventFeed(producer)
    bootstrap = leads_app.state.kit.settings.kafka_bootstrap_servers
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        envelope = await feed.send(pev.LEAD_RELEASE_DECIDED, lead["id"], decision(lead, 1), datetime.now(UTC))
        records = await events.wait_for(1, 30, type=lev.LEAD_OWNER_CHANGED.name, subject=lead["id"])
        released = lev.LEAD_OWNER_CHANGED.parse(EventEnvelope.model_validate(records[0].event))
    assert released.how == "recycled" and released.previous_owner_id == "lead-fu-rep" and released.owner_id is None
    assert released.reason is not None and "线索回收" in released.reason
    after = await get(client, lead["id"])  # in the lead pool: everyone with a leads scope sees it
    assert after["in_pool"] and after["owner_id"] is None and after["version"] == 2
    # Redelivered: the lead is at a newer version now, nothing more happens.
    assert not await leads_app.state.recycling.apply(pev.LEAD_RELEASE_DECIDED.parse(envelope))
    assert (await get(client, lead["id"]))["version"] == 2


async def test_a_stale_pool_decision_is_ignored(client: httpx.AsyncClient, leads_app: FastAPI) -> None:
    recycling = leads_app.state.recycling
    # Followed up after the pool saw version 1: stays.
    worked = await create(client)
    await leads_app.state.followups.on_interaction_logged(followup(worked["id"], datetime.now(UTC)))
    assert not await recycling.apply(decision(worked, 1))
    # Another owner than the pool saw, or a lead moved to disqualified at that version: stays.
    other = await create(client)
    assert not await recycling.apply(decision(other, 1, owner="someone-else"))
    r = await client.patch(
        f"/v1/leads/{other['id']}",
        json={"status": "disqualified", "reason": "无需求"},
        headers={**REP, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert not await recycling.apply(decision(other, 2))
    for lead in (worked, other):
        after = await get(client, lead["id"])
        assert after["owner_id"] == "lead-fu-rep" and not after["in_pool"], after
    # The decision at the lead's current version goes through.
    assert await recycling.apply(decision(worked, 2))
    assert (await get(client, worked["id"]))["in_pool"]
