"""The clocks can be rebuilt from the topics: reset, replay with a new consumer group, same result."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import interactions
from crm_platform.events import to_kafka
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.fixtures import auth, eventually, unique
from crm_pool.application.clocks import projection
from crm_pool.main import rebuild
from crm_pool.settings import PoolSettings

ADMIN = auth("admin-1", ["admin"], "/hq")


async def test_a_rebuild_yields_the_same_clocks(
    pool_app: FastAPI, pool_client: Any, pool_settings: PoolSettings, pool_clock: ManualClock, producer: Any
) -> None:
    dept = f"/{unique('d')}"
    r = await pool_client.post(
        "/v1/pool/rules",
        json={"name": "r", "department_path": dept, "no_interaction_days": 10, "no_won_days": 40},
        headers=ADMIN,
    )
    assert r.status_code == 201
    feed = CustomerFeed(producer)
    reps = [unique("rep") for _ in range(3)]
    customers = [await feed.created(owner_id=rep, department_path=dept, tags=["t"]) for rep in reps]
    await feed.claimed(customers[0], reps[1], dept)
    await feed.released(customers[2])
    repo = pool_app.state.repo

    async def owner_since(customer_id: str) -> Any:
        clock = await repo.get_clock(customer_id)
        return clock and clock["owner_since"]

    since = await eventually(lambda: owner_since(customers[1].id), message="clock")
    interaction_id = unique("i")
    envelope = interactions.INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=interactions.InteractionLogged(
            interaction_id=interaction_id,
            customer_id=customers[1].id,
            author_id=reps[1],
            channel="visit",
            occurred_at=since + timedelta(days=2),
        ),
        aggregate_version=1,
        time=since,
        actor=reps[1],
    )
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(
        interactions.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
    )

    async def settled() -> list[dict[str, Any]] | None:
        clocks = [await repo.get_clock(c.id) for c in customers]
        if any(c is None for c in clocks):
            return None
        ok = (
            clocks[0]["owner_id"] == reps[1]
            and clocks[2]["in_pool"]
            and clocks[1]["last_owner_interaction_at"] is not None
        )
        return [projection(c) for c in clocks] if ok else None

    before = await eventually(settled, timeout=20, message="clocks built")
    assert before[1]["deadline"] == since + timedelta(days=12)

    count = await rebuild(pool_settings, pool_clock, timeout=120)
    assert count >= 3
    after = [projection(await repo.get_clock(c.id)) for c in customers]
    assert after == before
