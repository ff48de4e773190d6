"""Every query the audit log sends is index lookups on the embedded store (its SQLite query plans,
see crm_platform.testing.query_plans): recording an event, every search shape the API offers
(each filter alone, with from/to, with a cursor, newest first), the export and the retention purge.

The service runs against the traced store with a few hundred entries already kept (so SQLite
prefers a good index to a scan); each path runs inside a capture, and a statement that reads a
whole table, walks a whole index or sorts every match fails the test, printed with its plan.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_audit.adapters.repository import FILTER_FIELDS
from crm_audit.main import create_app
from crm_audit.settings import AuditSettings
from crm_platform.clock import ManualClock
from crm_platform.contracts import customers as cev
from crm_platform.contracts import directory as dev
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth
from crm_platform.testing.plans import KeepingProducer, assert_indexed, deliver
from crm_platform.testing.query_plans import TracedStore

ROWS = 300
NOW = datetime.now(UTC).replace(microsecond=0)
ADMIN = auth("admin-plans", ["admin"])


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = AuditSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_audit_plans_{suffix}",
        consumer_group_suffix=f".plans-{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        audit_purge_enabled=False,
    )
    application = create_app(settings, ManualClock(NOW))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit.test") as c:
        yield c


async def purge(feed: EventFeed, i: int, at: datetime) -> Any:
    cid = f"plan-c{i}"
    return await feed.send(cev.PURGED, cid, cev.Purged(customer_id=cid), at, f"admin-{i % 7}")


async def test_recording_searching_exporting_and_purging_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    feed = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    await deliver(app, await feed.user("admin-1", "王管理", "/hq", ["admin"]))
    for i in range(ROWS):  # a year and some of entries, the oldest first
        await deliver(app, await purge(feed, i, NOW - timedelta(days=400) + timedelta(days=i * 1.5)))
    first = (await client.get("/v1/audit", params={"limit": 5}, headers=ADMIN)).json()
    assert len(first["items"]) == 5 and first["next_cursor"]
    window = {"from": (NOW - timedelta(days=100)).isoformat(), "to": (NOW - timedelta(days=10)).isoformat()}
    searches: list[dict[str, Any]] = [
        {},
        {"cursor": first["next_cursor"]},
        window,
        {"actor": "admin-3"},
        {"actor": "admin-3", **window, "cursor": first["next_cursor"]},
        {"action": "customer.purged"},
        {"action": "customer.purged", **window},
        {"target_type": "customer"},
        {"target_id": "plan-c17"},
        {"target_type": "customer", "target_id": "plan-c17"},
        {"address": "203.0.113.7"},
        {"address": "203.0.113.7", **window, "cursor": first["next_cursor"]},
    ]
    with traced_store.capture() as capture:
        # Recording: the actor's name by _id, the insert; a repeat fails on _id.
        envelope = await purge(feed, ROWS, NOW)
        assert await deliver(app, envelope)
        assert await deliver(app, envelope)
        await deliver(app, await feed.user("admin-1", "王管理", "/hq", ["admin"]))  # a user event: copy and entry
        for params in searches:
            r = await client.get("/v1/audit", params={"limit": 20, **params}, headers=ADMIN)
            assert r.status_code == 200, (params, r.text)
        r = await client.get("/v1/audit/export.csv", params={"actor": "admin-3", **window}, headers=ADMIN)
        assert r.status_code == 200, r.text
        deleted = await app.state.audit.purge(retention_days=365, batch_size=10)
    assert deleted > 10  # several batches: the oldest entries, a range on the key each time
    assert_indexed(capture, sorted_results=True, row_filters=True)
    statements = capture.on(app.state.kit.settings.mongo_database)
    assert any("DELETE" in s.sql for s in statements), "the purge did not reach the store"
    # The rule above excuses walking the key's index newest first with a LIMIT while testing each
    # row (what the store does without the compound indexes, reading far more than a page when
    # the filter is rare): each filtered search must walk its own (field, k) index.
    for field in FILTER_FIELDS:
        filtered = [s for s in statements if f"json_extract(data, '$.{field}') = " in s.sql and "FROM entries" in s.sql]
        assert filtered, field
        for statement in filtered:
            assert any("USING INDEX idx_entries_" in line and "_k (" in line for line in statement.plan), (
                statement.describe()
            )


async def test_a_user_event_keeps_the_directory_copy_and_the_entry(app: FastAPI) -> None:
    feed = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    await deliver(app, await feed.user("admin-1", "王管理", "/hq", ["admin"]))
    envelope = await feed.send(
        dev.USER_DEACTIVATED,
        "plan-u1",
        dev.UserDeactivated(
            user=dev.UserSnapshot(
                user_id="plan-u1",
                email="plan-u1@example.com",
                name="韩梅梅",
                roles=["rep"],
                department_id="hq",
                department_path="/hq",
                status="deactivated",
                created_at=NOW,
                updated_at=NOW,
            ),
            reason="left",
        ),
        NOW,
        "admin-1",
    )
    assert await deliver(app, envelope)
    entry = await app.state.repo.get(envelope.id)
    assert entry is not None and entry["action"] == "user.deactivated" and entry["actor_name"] == "王管理"
    assert (await app.state.repo.users.find_one({"_id": "plan-u1"}))["status"] == "deactivated"
