"""Every write path, consumer handler and list page of the interactions service is index lookups
on the embedded store (its SQLite query plans, see crm_platform.testing.query_plans).

The service runs against the traced store with a few hundred interactions, tasks, feedback and
customers already stored (so SQLite prefers a good index to a scan); each path runs inside a
capture and any statement whose cost grows with the collection fails the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_interactions.domain import feedback as feedback_domain
from crm_interactions.domain import interactions as interactions_domain
from crm_interactions.domain import tasks as tasks_domain
from crm_interactions.main import create_app
from crm_interactions.settings import InteractionsSettings
from crm_platform.clock import SystemClock
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as pev
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.event_feed import EventFeed, opportunity
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, database
from crm_platform.testing.plans import (
    KeepingProducer,
    assert_indexed,
    consumer_commands,
    deliver,
    keys_before_epoch_ms,
    start_and_stop,
)
from crm_platform.testing.query_plans import TracedStore
from crm_platform.testing.roles import define_role

ROWS = 300
DEPT = "/hq/plans"
REP = "rep-plans"
REP_HEADERS = auth(REP, ["rep"], department_path=DEPT)
MANAGER = "mgr-plans"
MANAGER_HEADERS = auth(MANAGER, ["manager"], department_path="/hq")
#: A custom role whose scopes are "department": the path's equality must be index-served too.
DEPT_ROLE = "plans-department"
DEPT_HEADERS = auth("dept-plans", [DEPT_ROLE], department_path=DEPT)


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def ahead(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    settings = InteractionsSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_interactions_plans_{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".plans-{uuid.uuid4().hex[:6]}",
        scheduler_enabled=False,  # its passes would land in the captures; it has its own tests
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        await define_role(
            application,
            DEPT_ROLE,
            ["interactions:view", "tasks:view", "feedback:view"],
            {"interactions": "department", "tasks": "department", "feedback": "department"},
        )
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://interactions.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI, traced_store: TracedStore) -> AsyncIterator[Any]:
    async with database(traced_store.url, app.state.services.kit.settings.mongo_database) as db_:
        yield db_


@pytest.fixture(scope="module")
def feed() -> CustomerFeed:
    return CustomerFeed(KeepingProducer())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def others() -> EventFeed:
    return EventFeed(KeepingProducer())  # type: ignore[arg-type]


async def new_customer(app: FastAPI, feed: CustomerFeed) -> FedCustomer:
    customer = await feed.created(owner_id=REP, department_path=DEPT, contacts=["张三"])
    await deliver(app, feed.published[-1])
    return customer


def clones(doc: dict[str, Any], count: int, **changes: Any) -> list[dict[str, Any]]:
    """``count`` copies of a stored document under new ids (the stored shape, without pending events)."""
    base = {k: v for k, v in doc.items() if not k.startswith("outbox")}
    copies = [{**base, **changes, "_id": f"{doc['_id']}-{i}"} for i in range(count)]
    for copy in copies:
        if "s" in copy and "id" in copy["s"]:
            copy["s"] = {**copy["s"], "id": copy["_id"]}  # the tie-breaker follows the id
    return copies


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def interaction_body(customer_id: str) -> dict[str, Any]:
    return {
        "channel": "phone",
        "customer_id": customer_id,
        "occurred_at": ago(hours=1),
        "direction": "out",
        "duration_seconds": 60,
        "key_points": "预算已批",
    }


def task_body() -> dict[str, Any]:
    return {"title": "发送报价单", "due_at": ahead(days=2), "remind_at": ahead(days=1)}


def feedback_body(customer: FedCustomer) -> dict[str, Any]:
    return {
        "kind": "complaint",
        "title": "交付延期",
        "description": "晚了两周",
        "customer_id": customer.id,
        "contact_id": customer.contact_ids[0],
        "priority": "high",
    }


@pytest.fixture(scope="module")
async def filled(
    app: FastAPI, client: httpx.AsyncClient, db: Any, feed: CustomerFeed, others: EventFeed
) -> FedCustomer:
    """A few hundred of everything in its stored shape, and the rep known to the directory copy."""
    await deliver(app, await others.user(REP, "李雷", DEPT))
    await deliver(app, await others.user(MANAGER, "韩梅梅", "/hq", ["manager"]))
    customer = await new_customer(app, feed)
    await db["customers"].insert_many(clones(await db["customers"].find_one({"_id": customer.id}), ROWS))
    for url, body, collection in (
        ("/v1/interactions", interaction_body(customer.id), "interactions"),
        ("/v1/tasks", task_body(), "tasks"),
        ("/v1/feedback", feedback_body(customer), "feedback"),
    ):
        created = await post(client, url, body, REP_HEADERS)
        await db[collection].insert_many(clones(await db[collection].find_one({"_id": created["id"]}), ROWS))
    return customer


async def test_writes_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: FedCustomer, traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        await post(client, "/v1/interactions", interaction_body(filled.id), REP_HEADERS)
        task = await post(client, "/v1/tasks", task_body(), REP_HEADERS)
        path = f"/v1/tasks/{task['id']}"
        await post(client, f"{path}/reschedule", {"due_at": ahead(days=3), "reason": "客户改期"}, REP_HEADERS)
        await post(client, f"{path}/complete", {"note": "已发送"}, REP_HEADERS)
        fb = await post(client, "/v1/feedback", feedback_body(filled), REP_HEADERS)
        await post(client, f"/v1/feedback/{fb['id']}/transitions", {"status": "in_progress"}, MANAGER_HEADERS)
        await app.state.services.kit.relay.drain()
    assert_indexed(capture)


async def test_consumed_events_are_index_lookups(
    app: FastAPI,
    client: httpx.AsyncClient,
    filled: FedCustomer,
    feed: CustomerFeed,
    others: EventFeed,
    traced_store: TracedStore,
) -> None:
    survivor = await new_customer(app, feed)
    duplicate = await new_customer(app, feed)
    await post(client, "/v1/interactions", interaction_body(duplicate.id), REP_HEADERS)
    await post(client, "/v1/tasks", {**task_body(), "customer_id": duplicate.id}, REP_HEADERS)
    start = len(feed.published)
    opportunity_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    await feed.created(owner_id=REP, department_path=DEPT, contacts=["王五"])
    await feed.updated(survivor, tier="A")
    await feed.contact_added(survivor, "赵六")
    await feed.owner_changed(survivor, "rep-2", DEPT)
    await feed.deleted(duplicate)
    await feed.restored(duplicate)
    await feed.merged(survivor, duplicate)
    sent = len(others.sent)
    await others.send(
        pev.OPPORTUNITY_CREATED,
        opportunity_id,
        pev.OpportunityCreated(
            opportunity=opportunity(
                opportunity_id, survivor.id, REP, DEPT, "default", "initial", "1000.00", now, now, probability=10
            )
        ),
        now,
    )
    await others.user("rep-new", "新人", DEPT)
    envelopes = [*feed.published[start:], *others.sent[sent:]]
    before = consumer_commands()
    with traced_store.capture() as capture:
        for envelope in envelopes:
            assert await deliver(app, envelope), envelope.type
        await app.state.services.kit.relay.drain()
    per_event = (consumer_commands() - before) / len(envelopes)
    assert_indexed(capture)
    print(f"interactions: {per_event:.1f} store commands per consumed event")


LISTS = [
    *(("/v1/interactions", "interactions", s) for s in interactions_domain.SORT_FIELDS),
    *(("/v1/tasks", "tasks", s) for s in tasks_domain.SORT_FIELDS),
    *(("/v1/feedback", "feedback", s) for s in feedback_domain.SORT_FIELDS),
]


ADMIN_HEADERS = auth("admin-plans", ["admin"], department_path="/hq")
PARAMS = [(u, c, f"{d}{s}") for u, c, s in LISTS for d in ("", "-")]


@pytest.mark.parametrize("url,collection,sort", PARAMS)
async def test_list_pages_are_index_lookups(
    client: httpx.AsyncClient, filled: FedCustomer, traced_store: TracedStore, url: str, collection: str, sort: str
) -> None:
    """Page 1 and the page after it, for every sort each list offers, as a rep, a manager and an
    admin: each is an index walk in sort order (no scan, no sort of every match)."""
    for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
        params: dict[str, Any] = {"sort": sort, "limit": 20}
        if url == "/v1/tasks":
            team = headers is MANAGER_HEADERS or headers is DEPT_HEADERS
            params["scope"] = "all" if headers is ADMIN_HEADERS else "team" if team else "mine"
        with traced_store.capture() as capture:
            first = await client.get(url, params=params, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get(url, params={**params, "cursor": cursor}, headers=headers)
        assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
        assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
        assert_indexed(capture, sorted_results=True)


OWNER = "owner-plans"
OWNER_HEADERS = auth(OWNER, ["rep"], department_path="/hq/owners")


@pytest.mark.parametrize("url", ["/v1/interactions", "/v1/feedback"])
async def test_an_owners_list_is_one_equality_on_the_customers_owner(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Any,
    feed: CustomerFeed,
    filled: FedCustomer,
    traced_store: TracedStore,
    url: str,
) -> None:
    """A rep sees the records of the customers they own, whoever wrote them. Each record keeps its
    customer's owner (``customer_owner_id``, following the customers' events), so however many
    customers one owns (the rep of these tests owns 301) the alternative is one equality walked in
    sort order. It was ``customer_id $in [owned]``, a per-row subquery on the embedded store: the
    page walked every visible record testing each one, to the end of the collection when the owned
    customers had few records."""
    try:
        with traced_store.capture() as capture:
            first = await client.get(url, params={"limit": 20}, headers=OWNER_HEADERS)
            assert first.status_code == 200, first.text
        assert first.json()["items"] == [] and first.json()["next_cursor"] is None  # owns none yet
        await feed.owner_changed(filled, OWNER, "/hq/owners")
        assert await deliver(app, feed.published[-1])
        with traced_store.capture() as walk:
            first = await client.get(url, params={"limit": 20}, headers=OWNER_HEADERS)
            cursor = first.json()["next_cursor"]
            assert cursor, first.text
            second = await client.get(url, params={"limit": 20, "cursor": cursor}, headers=OWNER_HEADERS)
        assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
        assert {i["customer_id"] for i in first.json()["items"] + second.json()["items"]} == {filled.id}
        assert_indexed(capture, sorted_results=True)
        assert_indexed(walk, sorted_results=True)
    finally:
        await feed.owner_changed(filled, REP, DEPT)
        assert await deliver(app, feed.published[-1])


async def test_stats_and_the_schedulers_idle_pass_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: FedCustomer, traced_store: TracedStore
) -> None:
    """The stats' period and the task scheduler's "due by now" are ranges on moments: on a date
    the embedded store wraps the field in a function (no index), so each read every row, the
    scheduler once per poll even when nothing is due. On the integer copies they are index ranges."""
    for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
        with traced_store.capture() as capture:
            r = await client.get("/v1/interactions/stats", headers=headers)
        assert r.status_code == 200, r.text
        assert_indexed(capture)
    assert (await client.get("/v1/interactions/stats", headers=ADMIN_HEADERS)).json()["total"]["count"] > ROWS
    with traced_store.capture() as capture:
        assert await app.state.task_scheduler.tick() == 0  # the tasks are due in two days
    assert_indexed(capture)


async def test_start_up_rewrites_sort_keys_stored_in_the_old_shape(
    app: FastAPI, client: httpx.AsyncClient, db: Any, feed: CustomerFeed
) -> None:
    """An interaction stored before the epoch-ms sort keys (dates in ``s``, no ``s.v``, no ``s.id``)
    and a task stored before ``s.fire_at`` get the current keys when the service starts: the
    customer's history pages through the interaction, the scheduler finds the task."""
    customer = await new_customer(app, feed)
    ids = [(await post(client, "/v1/interactions", interaction_body(customer.id), REP_HEADERS))["id"] for _ in "ab"]
    task = await post(client, "/v1/tasks", task_body(), REP_HEADERS)
    old = await db["interactions"].find_one({"_id": ids[0]})
    await db["interactions"].update_one({"_id": ids[0]}, {"$set": {"s": keys_before_epoch_ms(old["s"])}})
    old_task = await db["tasks"].find_one({"_id": task["id"]})
    v1 = {k: v for k, v in old_task["s"].items() if k != "fire_at"} | {"v": 1}
    await db["tasks"].update_one({"_id": task["id"]}, {"$set": {"s": v1}})
    await db["migrations"].delete_many({})  # a database from before the upgrades

    await start_and_stop(create_app(app.state.services.kit.settings, SystemClock()))

    upgraded = await db["interactions"].find_one({"_id": ids[0]})
    assert upgraded["s"] == interactions_domain.sort_keys(upgraded) and upgraded["version"] == old["version"]
    upgraded_task = await db["tasks"].find_one({"_id": task["id"]})
    assert upgraded_task["s"] == tasks_domain.sort_keys(upgraded_task) and "fire_at" in upgraded_task["s"]
    assert task["id"] in await app.state.repo.due_tasks(datetime.now(UTC) + timedelta(days=3), 10_000)
    for sort in ("-occurred_at", "recorded_at"):
        seen, cursor = [], None
        for _ in range(3):
            params = {"sort": sort, "limit": 1, **({"cursor": cursor} if cursor else {})}
            r = await client.get(f"/v1/customers/{customer.id}/interactions", params=params, headers=REP_HEADERS)
            assert r.status_code == 200, r.text
            seen += [i["id"] for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids), sort


async def _filterable_interaction_field(client: httpx.AsyncClient, **definition: Any) -> str:
    """A custom field of interactions flagged filterable (its indexes are made with the flag)."""
    key = f"cf{uuid.uuid4().hex[:6]}"
    body = {"key": key, "labels": {"zh-CN": key, "en": key}, "filterable": True, **definition}
    r = await client.post("/v1/fields/interactions", json=body, headers=ADMIN_HEADERS)
    assert r.status_code == 201, r.text
    return key


async def _interactions_with(db: Any, filled: FedCustomer, key: str, values: list[Any]) -> None:
    """A few hundred of the rep's interactions of the customer, ``values`` spread over them (most holding none)."""
    seed = await db["interactions"].find_one({"customer_id": filled.id, "author_id": REP})
    copies = clones(seed, ROWS // 2)
    for i, copy in enumerate(copies):
        copy["_id"] = f"{seed['_id']}-{key}-{i}"
        copy["s"] = {**copy["s"], "id": copy["_id"]}
        copy["custom"] = {key: values[i % 10]} if i % 10 < len(values) else {}
    await db["interactions"].insert_many(copies)


@pytest.mark.parametrize("sort", [None, "-recorded_at"])
async def test_interaction_custom_field_filters_use_the_fields_index(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore, sort: str | None
) -> None:
    """``custom.<key>=<value>`` on a filterable field of interactions, across customers and in a
    customer's history, under the default sort and another: page 1 and the page after it, in
    every scope, are index searches, never a scan (under the default sort: of the field's own
    index behind the list prefix)."""
    choices = [{"key": k, "labels": {"zh-CN": k, "en": k}} for k in ("hot", "cold")]
    key = await _filterable_interaction_field(client, type="choice", options=choices)
    await _interactions_with(db, filled, key, ["hot", "cold"])
    params: dict[str, Any] = {f"custom.{key}": "hot", "limit": 5, **({"sort": sort} if sort else {})}
    for url in ("/v1/interactions", f"/v1/customers/{filled.id}/interactions"):
        for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
            with traced_store.capture() as capture:
                first = await client.get(url, params=params, headers=headers)
                assert first.status_code == 200, first.text
                cursor = first.json()["next_cursor"]
                assert cursor, "a second page exists"
                second = await client.get(url, params={**params, "cursor": cursor}, headers=headers)
                assert second.status_code == 200, second.text
            items = first.json()["items"] + second.json()["items"]
            assert len(items) == 10 and all(i["custom"][key] == "hot" for i in items)
            assert_indexed(capture)
            if sort is None:
                plans = [" ".join(s.plan) for s in capture.statements if "FROM interactions " in s.sql]
                assert any(key in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)


async def test_interaction_custom_field_ranges_use_the_fields_index(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore
) -> None:
    """``custom.<key>=<low>..<high>`` on a filterable number of interactions: a range search of the
    field's index in every scope (the matches sorted, not the scope walked)."""
    key = await _filterable_interaction_field(client, type="number")
    await _interactions_with(db, filled, key, [1, 5, 9])
    for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
        with traced_store.capture() as capture:
            r = await client.get("/v1/interactions", params={f"custom.{key}": "2..9", "limit": 100}, headers=headers)
            assert r.status_code == 200, r.text
        assert {i["custom"][key] for i in r.json()["items"]} == {5, 9}
        assert_indexed(capture)
        plans = [" ".join(s.plan) for s in capture.statements if "FROM interactions " in s.sql]
        assert any(key in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)


async def _filterable_field(client: httpx.AsyncClient, module: str) -> str:
    """A choice field of ``module`` flagged filterable (its indexes are made with the flag)."""
    key = f"cf{uuid.uuid4().hex[:6]}"
    options = [{"key": k, "labels": {"zh-CN": k, "en": k}} for k in ("hot", "cold")]
    body = {"key": key, "type": "choice", "options": options, "labels": {"zh-CN": key, "en": key}, "filterable": True}
    r = await client.post(f"/v1/fields/{module}", json=body, headers=ADMIN_HEADERS)
    assert r.status_code == 201, r.text
    return key


@pytest.mark.parametrize("collection", ["tasks", "feedback"])
async def test_task_and_feedback_custom_field_filters_use_the_fields_index(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore, collection: str
) -> None:
    """``custom.<key>=<value>`` on ``GET /v1/tasks`` and ``GET /v1/feedback``: page 1 and the page
    after it, in every scope, are searches of the field's own index behind the list's prefix."""
    key = await _filterable_field(client, collection)
    seed = await db[collection].find_one({"created_by" if collection == "tasks" else "reported_by": REP})
    copies = clones(seed, ROWS // 2)
    for i, copy in enumerate(copies):
        copy["_id"] = f"{seed['_id']}-{key}-{i}"
        copy["s"] = {**copy["s"], "id": copy["_id"]}
        copy["custom"] = {key: ("hot", "cold")[i % 10]} if i % 10 < 2 else {}
    await db[collection].insert_many(copies)
    url = f"/v1/{collection}"
    for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
        params: dict[str, Any] = {f"custom.{key}": "hot", "limit": 5}
        if collection == "tasks":
            team = headers is MANAGER_HEADERS or headers is DEPT_HEADERS
            params["scope"] = "all" if headers is ADMIN_HEADERS else "team" if team else "mine"
        with traced_store.capture() as capture:
            first = await client.get(url, params=params, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get(url, params={**params, "cursor": cursor}, headers=headers)
            assert second.status_code == 200, second.text
        items = first.json()["items"] + second.json()["items"]
        assert len(items) == 10 and all(i["custom"][key] == "hot" for i in items)
        assert_indexed(capture)
        plans = [" ".join(s.plan) for s in capture.statements if f"FROM {collection} " in s.sql]
        assert any(key in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)


#: The first few values of a field of each type, in order (for ranges and sorts).
def _value(type_: str, i: int) -> Any:
    if type_ == "date":
        return f"2026-01-{i + 1:02d}"
    if type_ == "money":
        return {"amount": f"{i * 100}.50", "currency": "CNY"}
    return i


#: Per type, a range matching values 2, 3 and 4 of :func:`_value`.
RANGES = {"date": "2026-01-03..2026-01-05", "money": "200..400.50 CNY"}
OWN_FIELD = {"interactions": "author_id", "tasks": "created_by", "feedback": "reported_by"}


async def _records_with(db: Any, filled: FedCustomer, collection: str, key: str, values: list[Any]) -> None:
    """Half as many again of the rep's records of ``collection`` (interactions: of the customer,
    whose history is listed too), ``values`` spread over them (most holding none), stored before
    the field is defined: defining it backfills their copies."""
    mine: dict[str, Any] = {OWN_FIELD[collection]: REP}
    if collection == "interactions":
        mine["customer_id"] = filled.id
    seed = await db[collection].find_one(mine)
    copies = clones(seed, ROWS // 2)
    for i, copy in enumerate(copies):
        copy["_id"] = f"{seed['_id']}-{key}-{i}"
        copy["s"] = {**copy["s"], "id": copy["_id"]}
        copy["custom"] = {key: values[i % 10]} if i % 10 < len(values) else {}
    await db[collection].insert_many(copies)


def _list_params(collection: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    if collection == "tasks":
        team = headers is MANAGER_HEADERS or headers is DEPT_HEADERS
        params["scope"] = "all" if headers is ADMIN_HEADERS else "team" if team else "mine"
    return params


@pytest.mark.parametrize("collection", ["interactions", "tasks", "feedback"])
@pytest.mark.parametrize("type_", ["date", "money"])
async def test_custom_field_ranges_on_copies_use_the_fields_index(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore, collection: str, type_: str
) -> None:
    """``custom.<key>=<low>..<high>`` on a filterable date or money field of each list, in every
    scope: a range search of the field's index on its copy (``s.cfq_<key>``: the integer day, the
    amount key) behind the list's prefix (the matches sorted, not the scope walked). A range on the
    ISO date string itself is compared through a function no index serves."""
    key = f"cq{uuid.uuid4().hex[:6]}"
    await _records_with(db, filled, collection, key, [_value(type_, i) for i in range(6)])
    r = await client.post(
        f"/v1/fields/{collection}",
        json={"key": key, "type": type_, "labels": {"zh-CN": key, "en": key}, "filterable": True},
        headers=ADMIN_HEADERS,
    )
    assert r.status_code == 201, r.text
    wanted = sorted((_value(type_, i) for i in (2, 3, 4)), key=str)
    for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
        params = _list_params(collection, headers, **{f"custom.{key}": RANGES[type_], "limit": 10})
        with traced_store.capture() as capture:
            first = await client.get(f"/v1/{collection}", params=params, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get(f"/v1/{collection}", params={**params, "cursor": cursor}, headers=headers)
            assert second.status_code == 200, second.text
        items = first.json()["items"] + second.json()["items"]
        assert sorted({str(i["custom"][key]) for i in items}) == sorted({str(v) for v in wanted}), items
        assert_indexed(capture)
        plans = [" ".join(s.plan) for s in capture.statements if f"FROM {collection} " in s.sql]
        assert any(f"cfq_{key}" in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)
    # Archived: later writes (and the sort-keys upgrade test) keep no copy of it.
    r = await client.delete(f"/v1/fields/{collection}/{key}", headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("collection", ["interactions", "tasks", "feedback"])
@pytest.mark.parametrize(("direction", "type_"), [("", "number"), ("-", "date")])
async def test_custom_field_sorts_walk_the_fields_sort_index(
    client: httpx.AsyncClient,
    db: Any,
    filled: FedCustomer,
    traced_store: TracedStore,
    collection: str,
    direction: str,
    type_: str,
) -> None:
    """``sort=custom.<key>`` (and ``-custom.<key>``) on a sortable field of each list: page 1 and
    the page after it walk the field's sort index behind the list's prefix (its sort copy
    ``s.cf_<key>`` then the id, the id running the way the key does), never a sort of the scope or
    of a tie group, for a rep, a manager, an admin and a department role. Most records have no
    value (one big tie group); a date's copy is the integer day, so the next page is a range on it."""
    key = f"cs{uuid.uuid4().hex[:6]}"
    await _records_with(db, filled, collection, key, [_value(type_, i) for i in range(3)])
    r = await client.post(
        f"/v1/fields/{collection}",
        json={"key": key, "type": type_, "labels": {"zh-CN": key, "en": key}, "sortable": True},
        headers=ADMIN_HEADERS,
    )
    assert r.status_code == 201, r.text
    sort = f"{direction}custom.{key}"
    urls = [f"/v1/{collection}"]
    if collection == "interactions":
        urls.append(f"/v1/customers/{filled.id}/interactions")
    for url in urls:
        for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
            params = _list_params(collection, headers, sort=sort, limit=20)
            with traced_store.capture() as capture:
                first = await client.get(url, params=params, headers=headers)
                assert first.status_code == 200, first.text
                cursor = first.json()["next_cursor"]
                assert cursor, "a second page exists"
                second = await client.get(url, params={**params, "cursor": cursor}, headers=headers)
                assert second.status_code == 200, second.text
            assert len(second.json()["items"]) == 20, second.text
            assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
            if direction == "-":  # the values first, highest first
                values = [i["custom"].get(key) for i in first.json()["items"]]
                assert values[0] == _value(type_, 2), values
            assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)
            plans = [" ".join(s.plan) for s in capture.statements if f"FROM {collection} " in s.sql]
            assert any(f"cf_{key}" in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)
    r = await client.patch(
        f"/v1/fields/{collection}/{key}", json={"sortable": False}, headers={**ADMIN_HEADERS, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text  # room under the cap for the next case


# --- follow-ups on leads ----------------------------------------------------------------------


def _lead_envelope(event_type: Any, lead_id: str, version: int, **changes: Any) -> Any:
    now = datetime.now(UTC)
    lead = lev.LeadSnapshot(
        lead_id=lead_id,
        company_name=f"线索 {lead_id}",
        owner_id=REP,
        department_path=DEPT,
        status="new",
        created_at=now,
        updated_at=now,
    ).model_copy(update=changes)
    data: Any = (
        lev.LeadConverted(
            lead=lead, conversion_id=f"{lead_id}:1", customer_id=lead.customer_id or "", existing_customer=False
        )
        if event_type is lev.LEAD_CONVERTED
        else event_type.data_model(lead=lead)
    )
    return event_type.build(
        source="/crm/leads", subject=lead_id, data=data, aggregate_version=version, time=now, actor=REP
    )


async def _lead_with_records(app: FastAPI, client: httpx.AsyncClient, db: Any, rows: int) -> str:
    """A lead of the rep's with one follow-up and one task logged over HTTP, and ``rows`` clones of each."""
    lead_id = f"lead-plans-{uuid.uuid4().hex[:8]}"
    assert await deliver(app, _lead_envelope(lev.LEAD_CREATED, lead_id, 1)) == 1
    body = {k: v for k, v in interaction_body("").items() if k != "customer_id"} | {"lead_id": lead_id}
    for url, payload, collection in (
        ("/v1/interactions", body, "interactions"),
        ("/v1/tasks", {**task_body(), "lead_id": lead_id}, "tasks"),
    ):
        created = await post(client, url, payload, REP_HEADERS)
        if rows:
            await db[collection].insert_many(clones(await db[collection].find_one({"_id": created["id"]}), rows))
    return lead_id


@pytest.fixture(scope="module")
async def lead_filled(app: FastAPI, client: httpx.AsyncClient, db: Any, filled: FedCustomer) -> str:
    return await _lead_with_records(app, client, db, ROWS)


@pytest.mark.parametrize("sort", [f"{d}{s}" for s in interactions_domain.SORT_FIELDS for d in ("", "-")])
async def test_a_leads_history_pages_are_index_lookups(
    client: httpx.AsyncClient, lead_filled: str, traced_store: TracedStore, sort: str
) -> None:
    """A lead's follow-ups, by path and by the list's filter, page 1 and the page after it, for whoever
    sees the lead (rep, manager, admin) and for one who sees only what their scope's authors wrote."""
    for url, extra in ((f"/v1/leads/{lead_filled}/interactions", {}), ("/v1/interactions", {"lead_id": lead_filled})):
        for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
            params: dict[str, Any] = {"sort": sort, "limit": 20, **extra}
            with traced_store.capture() as capture:
                first = await client.get(url, params=params, headers=headers)
                assert first.status_code == 200, first.text
                cursor = first.json()["next_cursor"]
                assert cursor, "a second page exists"
                second = await client.get(url, params={**params, "cursor": cursor}, headers=headers)
            assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
            assert {i["lead_id"] for i in first.json()["items"] + second.json()["items"]} == {lead_filled}
            assert_indexed(capture, sorted_results=True)


@pytest.mark.parametrize("sort", [f"{d}{s}" for s in tasks_domain.SORT_FIELDS for d in ("", "-")])
async def test_a_leads_task_pages_are_index_lookups(
    client: httpx.AsyncClient, lead_filled: str, traced_store: TracedStore, sort: str
) -> None:
    for headers, scope in (
        (REP_HEADERS, "mine"),
        (MANAGER_HEADERS, "team"),
        (ADMIN_HEADERS, "all"),
        (DEPT_HEADERS, "team"),
    ):
        params: dict[str, Any] = {"sort": sort, "limit": 20, "scope": scope, "lead_id": lead_filled}
        with traced_store.capture() as capture:
            first = await client.get("/v1/tasks", params=params, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get("/v1/tasks", params={**params, "cursor": cursor}, headers=headers)
        assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
        assert_indexed(capture, sorted_results=True)


async def test_a_leads_conversion_is_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, db: Any, lead_filled: str, feed: CustomerFeed, traced_store: TracedStore
) -> None:
    """Logging on a lead, and crm.lead.converted moving its follow-ups (the others' and its own copy)."""
    customer = await new_customer(app, feed)
    lead_id = await _lead_with_records(app, client, db, 0)
    for _ in range(2):  # logged (not cloned: a move is a guarded write of what the service stored)
        body = {k: v for k, v in interaction_body("").items() if k != "customer_id"} | {"lead_id": lead_id}
        await post(client, "/v1/interactions", body, REP_HEADERS)
        await post(client, "/v1/tasks", {**task_body(), "lead_id": lead_id}, REP_HEADERS)
    with traced_store.capture() as capture:
        body = {k: v for k, v in interaction_body("").items() if k != "customer_id"} | {"lead_id": lead_id}
        await post(client, "/v1/interactions", body, REP_HEADERS)
        converted = _lead_envelope(lev.LEAD_CONVERTED, lead_id, 2, status="converted", customer_id=customer.id)
        assert await deliver(app, converted) == 1
        await app.state.services.kit.relay.drain()
    assert_indexed(capture)
    assert await db["interactions"].count_documents({"lead_id": lead_id, "customer_id": customer.id}) == 4
    assert await db["tasks"].count_documents({"lead_id": lead_id, "customer_id": customer.id}) == 3
