"""The service's operational endpoints, the event catalogue, idempotent seeding on a fresh
database, and the stored shapes the queries rely on (pinned on the embedded store)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from pymongo import AsyncMongoClient

from crm_pipeline.adapters.repository import Repository
from crm_pipeline.application.pipelines import Pipelines
from crm_platform.clock import SystemClock
from crm_platform.contracts import pipeline as contracts
from crm_platform.events import EventFactory
from crm_platform.testing.fixtures import eventually


async def test_health_readiness_metrics_and_the_event_catalogue(client):
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "pipeline"}

    async def ready() -> bool:
        return (await client.get("/readyz")).status_code == 200

    await eventually(ready, timeout=60, message="ready (consumer assigned)")
    assert (await client.get("/metrics")).status_code == 200
    catalogue = (await client.get("/asyncapi.json")).json()
    text = str(catalogue)
    for event_type in (*contracts.OPPORTUNITY_EVENTS, contracts.TARGET_SET, contracts.PIPELINE_CONFIGURED):
        assert event_type.name in text, event_type.name
    assert "crm.customer.merged" in text  # what it consumes is documented too
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/opportunities/{opportunity_id}/stage",
        "/v1/forecast",
        "/v1/funnel",
        "/v1/targets/{scope}/{scope_id}/{period}",
    } <= set(paths)


async def test_seeding_on_a_fresh_database_by_racing_replicas_creates_one_default(backend):
    mongo = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    try:
        db = mongo[f"crm_pipeline_seed_{uuid.uuid4().hex[:8]}"]
        clock = SystemClock()
        replicas = [
            Pipelines(Repository(db, clock, lambda: None), clock, EventFactory("/crm/pipeline", clock))
            for _ in range(6)
        ]
        results = await asyncio.gather(*(r.seed_default() for r in replicas))
        assert results.count(True) == 1
        stored = await db["pipelines"].find_one({"_id": "default"})
        assert stored["is_default"] and len(stored["outbox"]) == 1  # one configured event, waiting for the relay
        assert stored["outbox"][0]["envelope"]["type"] == "crm.pipeline.configured"
        assert await replicas[0].seed_default() is False
    finally:
        await mongo.close()


async def test_stored_shapes_the_queries_rely_on(client, team, new_opportunity, pipeline_db):
    opp = await new_opportunity(team.rep, amount="10.00", expected_close_date="2026-11-30")
    await client.post(
        f"/v1/opportunities/{opp['id']}/stage", json={"stage_id": "needs_confirmed"}, headers=team.rep.headers
    )
    doc = await pipeline_db["opportunities"].find_one({"_id": opp["id"]})
    # Dates inside the history array come back as dates (a whole-document replace, never $push/$set).
    assert all(isinstance(entry["at"], datetime) for entry in doc["stage_history"])
    assert isinstance(doc["stage_entered_at"], datetime)
    # Sort keys hold moments as epoch ms: an integer range is an index search on the embedded store.
    assert doc["s"]["updated_at"] == int(doc["updated_at"].timestamp() * 1000) and doc["s"]["id"] == opp["id"]
    # Never-null flags; days are ISO strings with integer copies (YYYYMMDD, 0: none) in the sort
    # keys, which the ranges use: an ISO date string's range is not index-served on the embedded store.
    assert doc["hidden"] is False and doc["pending_approval"] is False and doc["won_on"] == ""
    assert doc["s"]["close_day"] == 20261130 and doc["s"]["won_day"] == 0
    assert doc["s"]["created_day"] == int(doc["created_on"].replace("-", ""))
    ids = {
        d["_id"]
        async for d in pipeline_db["opportunities"].find({"_id": opp["id"], "s.won_day": {"$gte": 1, "$lt": 21000101}})
    }
    assert ids == set()  # day 0 is outside every day range
    ranged = pipeline_db["opportunities"].find({"_id": opp["id"], "s.close_day": {"$gte": 20261101, "$lt": 20261201}})
    assert [d["_id"] async for d in ranged] == [opp["id"]]
    undated = await new_opportunity(team.rep)
    in_range = pipeline_db["opportunities"].find({"_id": undated["id"], "s.close_day": {"$gte": 1, "$lt": 21000101}})
    assert [d async for d in in_range] == []  # no date matches no range
    sort_key = (await pipeline_db["opportunities"].find_one({"_id": undated["id"]}))["s"]
    assert sort_key["close_day"] == 0 and sort_key["amount"] == -1  # sortable, never null
