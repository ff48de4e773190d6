"""End to end: pool rules apply to leads. The leads service and the pool service run in-process, each with
its own database, the same JWT secret and one ManualClock; they talk through Kafka only.

A lead nobody works is warned, then released to the lead pool by the leads service on the pool's
decision (``how: recycled``); a follow-up logged on the other lead (an interaction event naming it)
is counted by the leads service, reaches the pool as ``crm.lead.followed_up`` and keeps that lead
with its owner.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_leads.main import create_app as create_leads_app
from crm_leads.settings import LeadsSettings
from crm_platform.clock import ManualClock
from crm_platform.contracts import interactions
from crm_platform.events import to_kafka
from crm_platform.kafka import ensure_topics
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import EventCollector, auth, collect, eventually, running, service_settings, unique
from crm_pool.main import create_app as create_pool_app
from crm_pool.settings import PoolSettings

TOPICS = ["crm.leads.v1", "crm.interactions.v1", "crm.pool.v1"]
ADMIN = auth("admin-e2e-leads", ["admin"], "/hq")
FAST = {"consumer_backoff_initial_seconds": 0.05, "consumer_max_attempts": 3}


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
async def leads(backend: Backend, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(backend.kafka_bootstrap, TOPICS)
    app = create_leads_app(LeadsSettings(**service_settings(backend, "leads"), **FAST), clock)
    async with running(app, "http://leads.e2e") as client:
        yield client


@pytest.fixture(scope="module")
async def pool(backend: Backend, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = PoolSettings(**service_settings(backend, "pool"), scheduler_enabled=False, **FAST)
    app = create_pool_app(settings, clock)
    async with running(app, "http://pool.e2e") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="module")
async def events(backend: Backend) -> AsyncIterator[EventCollector]:
    collector = EventCollector()
    stop = asyncio.Event()
    await ensure_topics(backend.kafka_bootstrap, TOPICS)
    task = asyncio.create_task(collect(backend.kafka_bootstrap, ["crm.leads.v1", "crm.pool.v1"], collector, stop))
    yield collector
    stop.set()
    await task


async def follow_up(producer: Any, lead_id: str, author_id: str, occurred_at: datetime) -> None:
    """What the interactions service publishes when a rep logs a call on a lead (no customer yet)."""
    interaction_id = str(uuid.uuid4())
    envelope = interactions.INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=interactions.InteractionLogged(
            interaction_id=interaction_id, customer_id="", author_id=author_id, channel="phone", occurred_at=occurred_at
        ),
        aggregate_version=1,
        time=occurred_at,
        actor=author_id,
    )
    envelope.data["customer_id"] = None
    envelope.data["lead_id"] = lead_id
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(
        interactions.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
    )


async def run(pool: httpx.AsyncClient) -> dict[str, Any]:
    r = await pool.post("/v1/pool/run", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_an_idle_lead_is_recycled_and_a_followed_up_one_stays(
    leads: httpx.AsyncClient, pool: httpx.AsyncClient, events: EventCollector, clock: ManualClock, producer: Any
) -> None:
    dept = f"/{unique('e2e')}/leads"
    owner_id = unique("rep")
    owner = auth(owner_id, ["rep"], dept)
    start = clock.now()
    rule = {"name": "线索回收", "department_path": dept, "lead_no_work_days": 10, "lead_warn_days": 3}
    r = await pool.post("/v1/pool/rules", json=rule, headers=ADMIN)
    assert r.status_code == 201, r.text

    ids = {}
    for name in ("idle", "followed"):
        r = await leads.post("/v1/leads", json={"company_name": f"{name}{uuid.uuid4().hex[:8]}有限公司"}, headers=owner)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]

    # Day 7: both warned (K = 3 days before day 10).
    clock.set(start + timedelta(days=7))

    async def warned() -> bool:
        await run(pool)
        return all(events.matching(type="crm.pool.lead_recycle_warning", subject=i) for i in ids.values())

    await eventually(warned, timeout=30, message="both leads warned")
    # Day 8: the owner calls the second lead; the leads service counts it, the pool hears of it.
    await follow_up(producer, ids["followed"], owner_id, start + timedelta(days=8))
    await events.wait_for(1, 30, type="crm.lead.followed_up", subject=ids["followed"])
    r = await leads.get(f"/v1/leads/{ids['followed']}", headers=owner)
    assert r.json()["followup_count"] == 1, r.text
    lead_clocks = pool.app.state.lead_recycling.clocks  # type: ignore[attr-defined]

    async def heard() -> bool:
        clock_doc = await lead_clocks.get(ids["followed"])
        return bool(clock_doc and clock_doc["version"] == 2)

    await eventually(heard, timeout=30, message="the pool heard of the follow-up")

    # Day 10: the idle lead is decided and released to the lead pool; the followed one stays.
    clock.set(start + timedelta(days=10, seconds=1))

    async def released() -> bool:
        await run(pool)
        r = await leads.get(f"/v1/leads/{ids['idle']}", headers=owner)
        return bool(r.json()["in_pool"])

    await eventually(released, timeout=30, message="the idle lead back in the lead pool")
    [changed] = events.matching(type="crm.lead.owner_changed", subject=ids["idle"])
    data = changed.event["data"]
    assert (data["how"], data["previous_owner_id"], data["owner_id"]) == ("recycled", owner_id, None)
    assert "线索回收" in data["reason"] and changed.event["actor"] == "system:pool"
    assert not events.matching(type="crm.pool.lead_release_decided", subject=ids["followed"])
    r = await leads.get(f"/v1/leads/{ids['followed']}", headers=owner)
    assert r.json()["owner_id"] == owner_id and not r.json()["in_pool"]
