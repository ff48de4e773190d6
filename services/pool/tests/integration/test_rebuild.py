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


async def test_a_rebuild_over_http_runs_in_the_background_once_and_pauses_the_scheduler(
    pool_app: FastAPI, pool_client: Any, producer: Any
) -> None:
    dept = f"/{unique('d')}"
    r = await pool_client.post(
        "/v1/pool/rules", json={"name": "r", "department_path": dept, "no_interaction_days": 10}, headers=ADMIN
    )
    assert r.status_code == 201
    rep = unique("rep")
    customer = await CustomerFeed(producer).created(owner_id=rep, department_path=dept)
    repo = pool_app.state.repo

    async def built() -> dict[str, Any] | None:
        clock = await repo.get_clock(customer.id)
        return projection(clock) if clock and clock.get("rule_id") else None

    before = await eventually(built, timeout=20, message="clock built")

    rep_headers = auth(rep, ["rep"], dept)
    assert (await pool_client.post("/v1/pool/rebuilds", headers=rep_headers)).status_code == 403
    started = await pool_client.post("/v1/pool/rebuilds", headers=ADMIN)
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["status"], job["requested_by"]) == ("running", "admin-1")
    assert started.headers["location"] == f"/v1/pool/rebuilds/{job['rebuild_id']}"

    # One at a time; the scheduler waits for it.
    again = await pool_client.post("/v1/pool/rebuilds", headers=ADMIN)
    assert again.status_code == 409 and again.json()["rebuild_id"] == job["rebuild_id"]
    run = await pool_client.post("/v1/pool/run", headers=ADMIN)
    assert run.json()["paused"] is True

    async def finished() -> dict[str, Any] | None:
        r = await pool_client.get(started.headers["location"], headers=ADMIN)
        assert r.status_code == 200
        return r.json() if r.json()["status"] != "running" else None

    done = await eventually(finished, timeout=180, message="rebuild finished")
    assert done["status"] == "succeeded", done
    assert done["clocks"] >= 1 and done["finished_at"] is not None
    assert await built() == before
    assert (await pool_client.post("/v1/pool/run", headers=ADMIN)).json()["paused"] is False
    missing = await pool_client.get("/v1/pool/rebuilds/no-such-rebuild", headers=ADMIN)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
