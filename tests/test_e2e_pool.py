"""End to end: the public pool. The customers service and the pool service run in-process, each
with its own database, the same JWT secret and one ManualClock; they talk through Kafka only.

A customer nobody follows up is warned, then released by the customers service on the pool's
decision, then claimed by another rep, while the cool-down stops its previous owner from taking
it back; a follow-up logged just before the deadline keeps the other customer with its owner.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_platform.clock import ManualClock
from crm_platform.contracts import interactions
from crm_platform.events import to_kafka
from crm_platform.kafka import ensure_topics
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import EventCollector, auth, collect, eventually, running, service_settings, unique
from crm_pool.main import create_app as create_pool_app
from crm_pool.settings import PoolSettings

TOPICS = ["crm.customers.v1", "crm.interactions.v1", "crm.pipeline.v1", "crm.pool.v1"]
ADMIN = auth("admin-e2e", ["admin"], "/hq")


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="module")
def customers_settings(backend: Backend) -> CustomersSettings:
    return CustomersSettings(**service_settings(backend, "customers"))


@pytest.fixture(scope="module")
async def customers(
    backend: Backend, customers_settings: CustomersSettings, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(backend.kafka_bootstrap, TOPICS)
    app = create_customers_app(customers_settings, clock)
    async with running(app, "http://customers.e2e") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="module")
async def pool(backend: Backend, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = PoolSettings(**service_settings(backend, "pool"), scheduler_enabled=False)
    app = create_pool_app(settings, clock)
    async with running(app, "http://pool.e2e") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="module")
async def events(backend: Backend) -> AsyncIterator[EventCollector]:
    collector = EventCollector()
    stop = asyncio.Event()
    await ensure_topics(backend.kafka_bootstrap, TOPICS)
    task = asyncio.create_task(collect(backend.kafka_bootstrap, ["crm.customers.v1", "crm.pool.v1"], collector, stop))
    yield collector
    stop.set()
    await task


@pytest.fixture(scope="module")
async def customers_db(backend: Backend, customers_settings: CustomersSettings) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    yield client[customers_settings.mongo_database]
    await client.close()


async def follow_up(producer: Any, customer_id: str, author_id: str, occurred_at: datetime) -> None:
    """What the interactions service publishes when a rep logs a call."""
    interaction_id = str(uuid.uuid4())
    envelope = interactions.INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=interactions.InteractionLogged(
            interaction_id=interaction_id,
            customer_id=customer_id,
            author_id=author_id,
            channel="phone",
            occurred_at=occurred_at,
        ),
        aggregate_version=1,
        time=occurred_at,
        actor=author_id,
    )
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(
        interactions.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
    )


async def test_warned_released_claimed_and_a_follow_up_keeps_the_other(
    customers: httpx.AsyncClient,
    pool: Any,
    events: EventCollector,
    clock: ManualClock,
    producer: Any,
    customers_db: Any,
) -> None:
    dept = f"/{unique('e2e')}/sales"
    owner_id, other_id = unique("rep"), unique("rep")
    owner, other = auth(owner_id, ["rep"], dept), auth(other_id, ["rep"], dept)
    start = clock.now()

    r = await pool.post(
        "/v1/pool/rules",
        json={
            "name": "华东销售",
            "department_path": dept,
            "no_interaction_days": 10,
            "warn_days": 3,
            "cooldown_days": 7,
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    rule_id = r.json()["rule_id"]
    # The customers service keeps the claim rules from the pool's event.
    await eventually(
        lambda: customers_db["pool_claim_rules"].find_one({"_id": rule_id}), timeout=30, message="claim rules"
    )

    ids = {}
    for name in ("idle", "followed"):
        r = await customers.post(
            "/v1/customers", json={"kind": "company", "name": f"{unique(name)}有限公司"}, headers=owner
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    repo = pool.app.state.repo
    for customer_id in ids.values():
        clock_doc = await eventually(lambda c=customer_id: repo.get_clock(c), timeout=30, message="clock")
        await eventually(lambda c=customer_id: _has_rule(repo, c, rule_id), timeout=30, message="clock with the rule")
        assert clock_doc["owner_since"] == start

    # The rep sees both counting down.
    clock.set(start + timedelta(days=1))
    mine = (await pool.get("/v1/pool/my-customers", headers=owner)).json()["items"]
    assert {(m["customer_id"], m["days_left"]) for m in mine} == {(ids["idle"], 9), (ids["followed"], 9)}

    # K days before: both owners are warned, naming the customer and the date.
    clock.set(start + timedelta(days=7))
    assert (await pool.post("/v1/pool/run", headers=ADMIN)).json()["warned"] >= 2
    warning = (await events.wait_for(1, type="crm.pool.recycle_warning", subject=ids["idle"]))[0].event["data"]
    assert warning["owner_id"] == owner_id and warning["customer_name"].endswith("有限公司")
    assert datetime.fromisoformat(warning["recycle_at"]) == start + timedelta(days=10)

    # A follow-up just before the deadline keeps "followed" with its owner.
    clock.set(start + timedelta(days=9, hours=23))
    await follow_up(producer, ids["followed"], owner_id, clock.now())
    await eventually(
        lambda: _deadline_is(repo, ids["followed"], start + timedelta(days=19, hours=23)),
        timeout=30,
        message="deadline moved",
    )

    # The deadline: the pool decides, the customers service releases "idle" only.
    clock.set(start + timedelta(days=10, seconds=1))
    run = (await pool.post("/v1/pool/run", headers=ADMIN)).json()
    assert run["decided"] >= 1
    [released] = await events.wait_for(1, type="crm.customer.released", subject=ids["idle"], timeout=30)
    assert released.event["actor"] == "system:pool"
    assert "no follow-up by the owner for 10 days" in released.event["data"]["reason"]
    idle = (await customers.get(f"/v1/customers/{ids['idle']}", headers=other)).json()
    assert (idle["in_pool"], idle["owner_id"]) == (True, None)
    followed = (await customers.get(f"/v1/customers/{ids['followed']}", headers=owner)).json()
    assert (followed["in_pool"], followed["owner_id"]) == (False, owner_id)
    assert not events.matching(type="crm.pool.release_decided", subject=ids["followed"])
    # The pool's clock follows the release: no owner, no countdown.
    await eventually(lambda: _in_pool(repo, ids["idle"]), timeout=30, message="clock in pool")

    # The cool-down stops the previous owner; another rep claims it.
    back = await customers.post(f"/v1/customers/{ids['idle']}/claim", headers=owner)
    assert back.status_code == 409 and back.json()["cooldown_days"] == 7
    claimed = await customers.post(f"/v1/customers/{ids['idle']}/claim", headers=other)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["owner_id"] == other_id
    # The new owner's clock starts over.
    clock_doc = await eventually(lambda: _owned_by(repo, ids["idle"], other_id), timeout=30, message="new owner")
    assert clock_doc["deadline"] == clock.now() + timedelta(days=10)


async def _has_rule(repo: Any, customer_id: str, rule_id: str) -> bool:
    clock = await repo.get_clock(customer_id)
    return bool(clock and clock.get("rule_id") == rule_id and clock.get("owner_id"))


async def _deadline_is(repo: Any, customer_id: str, deadline: datetime) -> bool:
    clock = await repo.get_clock(customer_id)
    return bool(clock and clock["deadline"] == deadline)


async def _in_pool(repo: Any, customer_id: str) -> bool:
    clock = await repo.get_clock(customer_id)
    return bool(clock and clock["in_pool"] and clock["deadline"].year == 9999)


async def _owned_by(repo: Any, customer_id: str, owner_id: str) -> Any:
    clock = await repo.get_clock(customer_id)
    return clock if clock and clock["owner_id"] == owner_id else None


async def test_a_holding_limit_set_on_the_pool_rule_is_enforced_by_the_customers_service(
    customers: Any, pool: Any, customers_settings: CustomersSettings
) -> None:
    """``max_held`` set through the pool's API reaches the customers service by event and limits
    the owners of that department; raised through the API, it lets them take more."""
    dept = f"/{unique('e2e')}/limited"
    rep = auth(unique("rep"), ["rep"], dept)
    r = await pool.post(
        "/v1/pool/rules",
        json={"name": "限额", "department_path": dept, "no_interaction_days": 3650, "warn_days": 1,
              "cooldown_days": 0, "claim_scope": "company", "max_held": 2},
        headers=ADMIN,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    rule_id = r.json()["rule_id"]
    service = customers.app.state.customers

    async def limit_is(n: int) -> bool:
        got = await service.holding_limit(dept)
        return bool((got.limit, got.rule_id) == (n, rule_id))

    await eventually(lambda: limit_is(2), timeout=30, message="the rule's limit reached the customers service")
    for _ in range(2):
        created = await customers.post("/v1/customers", json={"kind": "company", "name": unique("限额")}, headers=rep)
        assert created.status_code == 201, created.text
    refused = await customers.post("/v1/customers", json={"kind": "company", "name": unique("限额")}, headers=rep)
    assert refused.status_code == 409, refused.text
    assert (refused.json()["limit"], refused.json()["held"], refused.json()["limit_rule"]) == (2, 2, rule_id)
    assert customers_settings.max_customers_per_rep > 2  # the rule's limit, not the default

    r = await pool.patch(f"/v1/pool/rules/{rule_id}", json={"max_held": 3}, headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    await eventually(lambda: limit_is(3), timeout=30, message="the raised limit reached the customers service")
    again = await customers.post("/v1/customers", json={"kind": "company", "name": unique("限额")}, headers=rep)
    assert again.status_code == 201, again.text
