"""Every write path, consumer handler and list page of the pipeline service is index lookups on
the embedded store (its SQLite query plans, see crm_platform.testing.query_plans).

The service runs against the traced store with a few hundred opportunities and customers
already stored (so SQLite prefers a good index to a scan); each path runs inside a capture
and any statement whose cost grows with the collection fails the test, printed with its plan.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_pipeline.domain import opportunities as opportunity_rules
from crm_pipeline.domain.opportunities import SORT_FIELDS
from crm_pipeline.main import create_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.clock import SystemClock
from crm_platform.contracts import leads as lev
from crm_platform.contracts import sales as sev
from crm_platform.customfields import copies as field_copies
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, database, unique
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
MANAGER_HEADERS = auth("mgr-plans", ["manager"], department_path="/hq")
#: A custom role whose opportunities scope is "department": the path's equality must be index-served.
DEPT_ROLE = "plans-department"
DEPT_HEADERS = auth("dept-plans", [DEPT_ROLE], department_path=DEPT)
DOC = {"kind": "requirements", "name": "需求说明书", "url": "https://docs.example.com/req.pdf"}


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    settings = PipelineSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_pipeline_plans_{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".plans-{uuid.uuid4().hex[:6]}",
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        await define_role(application, DEPT_ROLE, ["opportunities:view"], {"opportunities": "department"})
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pipeline.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI, traced_store: TracedStore) -> AsyncIterator[Any]:
    async with database(traced_store.url, app.state.kit.settings.mongo_database) as db_:
        yield db_


@pytest.fixture(scope="module")
def feed() -> CustomerFeed:
    return CustomerFeed(KeepingProducer())  # type: ignore[arg-type]


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


@pytest.fixture(scope="module")
async def filled(app: FastAPI, client: httpx.AsyncClient, db: Any, feed: CustomerFeed) -> FedCustomer:
    """A few hundred customers in the read copy and opportunities of them, in their stored shape."""
    customer = await new_customer(app, feed)
    stored = await db["customers"].find_one({"_id": customer.id})
    await db["customers"].insert_many(clones(stored, ROWS))
    r = await client.post(
        "/v1/opportunities", json={"customer_id": customer.id, "name": "种子", "amount": "1000"}, headers=REP_HEADERS
    )
    assert r.status_code == 201, r.text
    opportunity = await db["opportunities"].find_one({"_id": r.json()["id"]})
    await db["opportunities"].insert_many(clones(opportunity, ROWS))
    return customer


async def test_opportunity_writes_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: FedCustomer, feed: CustomerFeed, traced_store: TracedStore
) -> None:
    customer = await new_customer(app, feed)
    with traced_store.capture() as capture:
        r = await client.post(
            "/v1/opportunities",
            json={"customer_id": customer.id, "name": unique("商机"), "amount": "300000.00"},
            headers=REP_HEADERS,
        )
        assert r.status_code == 201, r.text
        url = f"/v1/opportunities/{r.json()['id']}"
        r = await client.patch(url, json={"quotation_amount": "310000.00"}, headers={**REP_HEADERS, "If-Match": '"1"'})
        assert r.status_code == 200, r.text
        r = await client.post(f"{url}/stage", json={"stage_id": "needs_confirmed"}, headers=REP_HEADERS)
        assert r.status_code == 200, r.text
        r = await client.post(f"{url}/documents", json=DOC, headers=REP_HEADERS)
        assert r.status_code == 201, r.text
        r = await client.post(f"{url}/win", json={"reason": "签了"}, headers=REP_HEADERS)
        assert r.status_code == 200, r.text
        lost = await client.post(
            "/v1/opportunities", json={"customer_id": customer.id, "name": unique("商机")}, headers=REP_HEADERS
        )
        r = await client.post(
            f"/v1/opportunities/{lost.json()['id']}/lose",
            json={"reason": "价格", "competitor": "某"},
            headers=REP_HEADERS,
        )
        assert r.status_code == 200, r.text
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_targets_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: FedCustomer, traced_store: TracedStore
) -> None:
    # Targets take the rep's path from the directory read copy.
    directory = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    await deliver(app, await directory.user(REP, "李雷", DEPT))
    with traced_store.capture() as capture:
        r = await client.put(
            f"/v1/targets/rep/{REP}/2026-11",
            json={"amount": "100000.00", "department_path": DEPT},
            headers=MANAGER_HEADERS,
        )
        assert r.status_code == 200, r.text
        r = await client.get("/v1/targets", params={"year": "2026", "department": DEPT}, headers=MANAGER_HEADERS)
        assert r.status_code == 200 and len(r.json()) == 1, r.text
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_customer_and_directory_events_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: FedCustomer, feed: CustomerFeed, traced_store: TracedStore
) -> None:
    survivor = await new_customer(app, feed)
    duplicate = await new_customer(app, feed)
    r = await client.post(
        "/v1/opportunities", json={"customer_id": duplicate.id, "name": unique("商机")}, headers=REP_HEADERS
    )
    assert r.status_code == 201, r.text
    directory = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    before = consumer_commands()
    events = 0
    with traced_store.capture() as capture:
        for make in (
            lambda: feed.created(owner_id=REP, department_path=DEPT, contacts=["王五"]),
            lambda: feed.updated(survivor, tier="A"),
            lambda: feed.contact_added(survivor, "赵六"),
            lambda: feed.owner_changed(survivor, "rep-2", DEPT),
            lambda: feed.deleted(duplicate),
            lambda: feed.restored(duplicate),
            lambda: feed.merged(survivor, duplicate),
            lambda: directory.user(unique("u"), "韩梅梅", DEPT),
        ):
            await make()
        for envelope in [*feed.published[-9:], *directory.sent]:
            events += 1
            await deliver(app, envelope)
        await app.state.kit.relay.drain()
    assert_indexed(capture)
    moved = await client.get(f"/v1/opportunities/{r.json()['id']}", headers=REP_HEADERS)
    assert moved.json()["customer_id"] == survivor.id
    print(f"pipeline: {(consumer_commands() - before) / events:.1f} store commands per consumed event")


ADMIN_HEADERS = auth("admin-plans", ["admin"], department_path="/hq")
SORTS = [*SORT_FIELDS, *(f"-{f}" for f in SORT_FIELDS)]


@pytest.mark.parametrize("sort", SORTS)
async def test_list_pages_are_index_lookups(
    client: httpx.AsyncClient, filled: FedCustomer, traced_store: TracedStore, sort: str
) -> None:
    """Page 1 and the page after it, for every sort the list offers, as a rep, a manager and an
    admin: each is an index walk in sort order (no scan, no sort of every match)."""
    for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
        with traced_store.capture() as capture:
            first = await client.get("/v1/opportunities", params={"sort": sort, "limit": 20}, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get(
                "/v1/opportunities", params={"sort": sort, "limit": 20, "cursor": cursor}, headers=headers
            )
        assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
        assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
        assert_indexed(capture, sorted_results=True)


async def test_cursor_of_the_datetime_sort_keys_is_refused(client: httpx.AsyncClient, filled: FedCustomer) -> None:
    """A cursor from before the integer sort keys (dates, tie-broken on _id) gets a 422, not a wrong page."""
    payload = {"s": ["-s.updated_at", "_id"], "v": [{"$dt": "2026-11-01T00:00:00+00:00"}, "x"]}
    old = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    r = await client.get("/v1/opportunities", params={"cursor": old}, headers=REP_HEADERS)
    assert r.status_code == 422, r.text


async def _keys_with_copies(app: FastAPI, doc: dict[str, Any]) -> dict[str, Any]:
    """The sort keys the service writes for ``doc``: its own and the custom fields' copies."""
    fields = await app.state.custom_fields.fieldset("opportunities")
    return {**opportunity_rules.sort_keys(doc), **fields.copies(doc.get("custom"))}


async def test_start_up_rewrites_sort_keys_stored_in_the_old_shape(
    app: FastAPI, client: httpx.AsyncClient, db: Any, feed: CustomerFeed
) -> None:
    """An opportunity stored before the epoch-ms sort keys (dates in ``s``, no ``s.v``, no ``s.id``)
    gets the new keys when the service starts, and lists page through it with the others."""
    customer = await new_customer(app, feed)
    ids = []
    for name in ("旧", "新"):
        r = await client.post(
            "/v1/opportunities", json={"customer_id": customer.id, "name": name, "amount": "100"}, headers=REP_HEADERS
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    stored = await db["opportunities"].find_one({"_id": ids[0]})
    await db["opportunities"].update_one({"_id": ids[0]}, {"$set": {"s": keys_before_epoch_ms(stored["s"])}})
    await db["migrations"].delete_many({})  # a database from before the upgrade existed

    await start_and_stop(create_app(app.state.kit.settings, SystemClock()))

    upgraded = await db["opportunities"].find_one({"_id": ids[0]})
    assert upgraded["s"] == await _keys_with_copies(app, upgraded)
    assert upgraded["version"] == stored["version"]  # not a change of the opportunity
    for sort in ("-updated_at", "created_at", "name"):
        seen, cursor = [], None
        for _ in range(3):
            params = {"customer_id": customer.id, "sort": sort, "limit": 1, **({"cursor": cursor} if cursor else {})}
            r = await client.get("/v1/opportunities", params=params, headers=REP_HEADERS)
            assert r.status_code == 200, r.text
            seen += [i["id"] for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids), sort


async def _filterable(client: httpx.AsyncClient, **definition: Any) -> str:
    """A custom field of opportunities flagged filterable (its indexes are made with the flag)."""
    return (await _defined(client, filterable=True, **definition))["key"]


async def _defined(client: httpx.AsyncClient, **definition: Any) -> dict[str, Any]:
    """A custom field of opportunities (its indexes are made with its flags); its definition."""
    key = f"cf{uuid.uuid4().hex[:6]}"
    labels = {"zh-CN": key, "en": key}
    r = await client.post(
        "/v1/fields/opportunities", json={"key": key, "labels": labels, **definition}, headers=ADMIN_HEADERS
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _with_values(client: httpx.AsyncClient, db: Any, key: str, values: list[Any]) -> None:
    """A few hundred opportunities of the rep, ``values`` spread over them (most holding none),
    with the copies the service writes beside their sort keys (a date's or money's filter copy,
    a sortable field's sort copy)."""
    r = await client.get(f"/v1/fields/opportunities/{key}", headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    definition = r.json()
    seed = await db["opportunities"].find_one({"owner_id": REP})
    made = clones(seed, ROWS // 2)
    for i, copy in enumerate(made):
        copy["_id"] = f"{seed['_id']}-{key}-{i}"
        copy["custom"] = {key: values[i % 10]} if i % 10 < len(values) else {}
        copy["s"] = {**copy["s"], "id": copy["_id"], **field_copies(definition, copy["custom"].get(key))}
    await db["opportunities"].insert_many(made)


@pytest.mark.parametrize("sort", [None, "-amount"])
async def test_custom_field_filters_use_the_fields_index(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore, sort: str | None
) -> None:
    """``custom.<key>=<value>`` on a filterable field, under the default sort and another: page 1
    and the page after it in every scope are index searches, never a scan (under the default
    sort: of the field's own index behind the scope)."""
    key = await _filterable(
        client, type="choice", options=[{"key": k, "labels": {"zh-CN": k, "en": k}} for k in ("high", "low")]
    )
    await _with_values(client, db, key, ["high", "low"])
    params: dict[str, Any] = {f"custom.{key}": "high", "limit": 5, **({"sort": sort} if sort else {})}
    for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
        with traced_store.capture() as capture:
            first = await client.get("/v1/opportunities", params=params, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get("/v1/opportunities", params={**params, "cursor": cursor}, headers=headers)
            assert second.status_code == 200, second.text
        items = first.json()["items"] + second.json()["items"]
        assert len(items) == 10 and all(o["custom"][key] == "high" for o in items)
        assert_indexed(capture)
        if sort is None:
            # Under the default sort, the field's own index behind the scope; under another sort
            # the store may walk the scope's index of that sort instead (a search, never a scan).
            plans = [" ".join(s.plan) for s in capture.statements if "FROM opportunities " in s.sql]
            assert any(key in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)


async def test_custom_field_ranges_use_the_fields_index(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore
) -> None:
    """``custom.<key>=<low>..<high>`` on a filterable number, date or money: a range search of the
    field's index in every scope (the matches sorted, not the scope walked). A date or money is
    matched on its copy (``s.cfq_<key>``: the integer day, an amount key within its currency),
    since the embedded store compares ISO date strings through datetime(), which no index serves."""
    money = [{"amount": f"{n}.00", "currency": "CNY"} for n in (100, 500, 900)]
    for definition, values, text in (
        ({"type": "number"}, [1, 5, 9], "2..9"),
        ({"type": "number"}, [0, 10, 20], "5.."),
        ({"type": "date"}, ["2026-01-05", "2026-02-10", "2026-03-15"], "2026-02-01..2026-03-31"),
        ({"type": "date"}, ["2025-12-31", "2026-01-01", "2027-06-01"], "2026-01-01.."),
        ({"type": "money"}, money, "200..900 CNY"),
    ):
        key = await _filterable(client, **definition)
        await _with_values(client, db, key, values)
        for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
            with traced_store.capture() as capture:
                r = await client.get("/v1/opportunities", params={f"custom.{key}": text, "limit": 100}, headers=headers)
                assert r.status_code == 200, r.text
            got = sorted(json.dumps(o["custom"][key]) for o in r.json()["items"])
            assert sorted(set(got)) == sorted(json.dumps(v) for v in values[1:]), got
            assert_indexed(capture)
            plans = [" ".join(s.plan) for s in capture.statements if "FROM opportunities " in s.sql]
            assert any(key in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)


async def _dated(db: Any, tag: str) -> None:
    """Half as many opportunities again of the rep, with expected close, creation and (every other
    one) won days spread over 2026, their sort keys (the days' integer copies) as the service
    writes them."""
    seed = await db["opportunities"].find_one({"owner_id": REP})
    copies = clones(seed, ROWS // 2)
    for i, copy in enumerate(copies):
        copy["_id"] = f"{seed['_id']}-{tag}-{i}"
        day = f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}"
        copy.update(expected_close_date=day, created_on=day)
        if i % 2:
            copy.update(status="won", won_on=day, probability=100)
        copy["s"] = opportunity_rules.sort_keys(copy)
    await db["opportunities"].insert_many(copies)


@pytest.mark.parametrize("sort", [None, "expected_close_date", "-expected_close_date"])
async def test_expected_close_ranges_are_index_searches(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore, sort: str | None
) -> None:
    """``expected_close_from``/``expected_close_to`` (issue 13): a range on the close day's integer
    copy (``s.close_day``), page 1 and the page after it in every scope, under the default sort
    and sorted on the close date; an ISO date string's range was compared through datetime() and
    read every opportunity."""
    await _dated(db, f"close{uuid.uuid4().hex[:4]}")
    params: dict[str, Any] = {
        "expected_close_from": "2026-03-01",
        "expected_close_to": "2026-06-30",
        "limit": 5,
        **({"sort": sort} if sort else {}),
    }
    # A manager's list of a department in their subtree too (two subtree regexes did not merge).
    for headers, scope in (
        (REP_HEADERS, {}),
        (MANAGER_HEADERS, {}),
        (MANAGER_HEADERS, {"department": DEPT}),
        (ADMIN_HEADERS, {}),
        (DEPT_HEADERS, {}),
    ):
        with traced_store.capture() as capture:
            first = await client.get("/v1/opportunities", params={**params, **scope}, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get(
                "/v1/opportunities", params={**params, **scope, "cursor": cursor}, headers=headers
            )
            assert second.status_code == 200, second.text
        items = first.json()["items"] + second.json()["items"]
        assert len(items) == 10 and len({o["id"] for o in items}) == 10
        assert all("2026-03-01" <= o["expected_close_date"] <= "2026-06-30" for o in items), items
        if sort:
            days = [o["expected_close_date"] for o in items]
            assert days == sorted(days, reverse=sort.startswith("-"))
        assert_indexed(capture, sorted_results=sort is not None)
        plans = [" ".join(s.plan) for s in capture.statements if "FROM opportunities " in s.sql]
        assert any("close_day" in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)


async def test_forecast_and_funnel_ranges_are_index_searches(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore
) -> None:
    """The forecast (won in the period, open closing in it) and the funnel (created in the period)
    range over the days' integer copies (``s.won_day``, ``s.close_day``, ``s.created_day``), for a
    rep, a manager's department and an admin: index searches, never a scan of the opportunities."""
    await _dated(db, f"fc{uuid.uuid4().hex[:4]}")
    for headers, scope in (
        (REP_HEADERS, {}),
        (MANAGER_HEADERS, {"department": DEPT}),
        (ADMIN_HEADERS, {"rep": REP}),
    ):
        with traced_store.capture() as capture:
            r = await client.get("/v1/forecast", params={"period": "2026-Q2", **scope}, headers=headers)
            assert r.status_code == 200, r.text
            forecast = r.json()
            r = await client.get(
                "/v1/funnel", params={"from": "2026-04-01", "to": "2026-06-30", **scope}, headers=headers
            )
            assert r.status_code == 200, r.text
            funnel = r.json()
        assert forecast["won_count"] > 0 and forecast["open_count"] > 0, forecast
        assert funnel["total"] > 0, funnel
        assert_indexed(capture)
        plans = " ".join(" ".join(s.plan) for s in capture.statements if "FROM opportunities " in s.sql)
        for day in ("won_day", "close_day", "created_day"):
            assert day in plans, "\n".join(s.describe() for s in capture.statements)


async def test_start_up_gives_version_2_sort_keys_the_day_copies(
    app: FastAPI, client: httpx.AsyncClient, db: Any, feed: CustomerFeed
) -> None:
    """An opportunity stored with version 2 sort keys (the expected close day as an ISO string, no
    integer day copies) gets ``s.close_day``, ``s.won_day`` and ``s.created_day`` at start-up, so
    the expected-close filter and sort find it again."""
    customer = await new_customer(app, feed)
    r = await client.post(
        "/v1/opportunities",
        json={"customer_id": customer.id, "name": "旧键", "amount": "100", "expected_close_date": "2026-05-20"},
        headers=REP_HEADERS,
    )
    assert r.status_code == 201, r.text
    stored = await db["opportunities"].find_one({"_id": r.json()["id"]})
    old = {k: v for k, v in stored["s"].items() if not k.endswith("_day")}
    await db["opportunities"].update_one(
        {"_id": stored["_id"]}, {"$set": {"s": {**old, "v": 2, "expected_close_date": "2026-05-20"}}}
    )
    params = {"customer_id": customer.id, "expected_close_from": "2026-05-01", "expected_close_to": "2026-05-31"}
    r = await client.get("/v1/opportunities", params=params, headers=REP_HEADERS)
    assert r.json()["items"] == []  # without the copy, not found
    await db["migrations"].delete_many({})  # a database from before version 3

    await start_and_stop(create_app(app.state.kit.settings, SystemClock()))

    upgraded = await db["opportunities"].find_one({"_id": stored["_id"]})
    assert upgraded["s"] == await _keys_with_copies(app, upgraded) and upgraded["s"]["close_day"] == 20260520
    assert upgraded["version"] == stored["version"]
    r = await client.get("/v1/opportunities", params={**params, "sort": "-expected_close_date"}, headers=REP_HEADERS)
    assert [o["id"] for o in r.json()["items"]] == [stored["_id"]], r.text


@pytest.mark.parametrize(("direction", "type_"), [("", "number"), ("-", "number"), ("", "date"), ("-", "date")])
async def test_custom_field_sorts_walk_the_fields_sort_index(
    client: httpx.AsyncClient, db: Any, filled: FedCustomer, traced_store: TracedStore, direction: str, type_: str
) -> None:
    """``sort=custom.<key>`` (and ``-custom.<key>``) on a sortable field: page 1 and the page after
    it walk the field's sort index behind each scope (its sort copy ``s.cf_<key>`` then the id's
    copy), never a sort of the scope or of a tie group, for a rep, a manager, an admin and a
    department role. Most opportunities hold no value (one big tie group). A date's copy is the
    integer day: the page after the first is a range on it, index-served."""
    definition = await _defined(client, type=type_, sortable=True)
    key = definition["key"]
    values = [3, 1, 2] if type_ == "number" else ["2026-03-01", "2026-01-01", "2026-02-01"]
    await _with_values(client, db, key, values)
    sort = f"{direction}custom.{key}"
    try:
        for headers in (REP_HEADERS, MANAGER_HEADERS, ADMIN_HEADERS, DEPT_HEADERS):
            with traced_store.capture() as capture:
                first = await client.get("/v1/opportunities", params={"sort": sort, "limit": 20}, headers=headers)
                assert first.status_code == 200, first.text
                cursor = first.json()["next_cursor"]
                assert cursor, "a second page exists"
                second = await client.get(
                    "/v1/opportunities", params={"sort": sort, "limit": 20, "cursor": cursor}, headers=headers
                )
                assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
            items = first.json()["items"] + second.json()["items"]
            assert len({o["id"] for o in items}) == 40
            # In order, those without a value first ascending and last descending.
            got = [(key in o["custom"], o["custom"].get(key) or 0) for o in items]
            assert got == sorted(got, reverse=bool(direction)), got
            assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)
            plans = [" ".join(s.plan) for s in capture.statements if "FROM opportunities " in s.sql]
            assert any(f"cf_{key}" in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)
    finally:  # the cap on sortable fields counts this module's fields
        r = await client.patch(
            f"/v1/fields/opportunities/{key}", json={"sortable": False}, headers={**ADMIN_HEADERS, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text


def _conversion(customer_id: str, **asked: Any) -> Any:
    """crm.lead.conversion_progressed asking for an opportunity for ``customer_id`` (owned by the rep)."""
    now = datetime.now(UTC)
    lead_id = f"lead-{uuid.uuid4().hex[:10]}"
    lead = lev.LeadSnapshot(
        lead_id=lead_id,
        company_name=lead_id,
        owner_id=REP,
        department_path=DEPT,
        status="converting",
        created_at=now,
        updated_at=now,
    )
    conversion = lev.Conversion(
        conversion_id=f"{lead_id}:1",
        customer_id=customer_id,
        existing_customer=False,
        customer_name=lead_id,
        owner_id=REP,
        department_path=DEPT,
        opportunity=lev.ConversionOpportunity(opportunity_id=str(uuid.uuid4()), **{"name": "转化", **asked}),
        requested_by=REP,
        requested_at=now,
    )
    data = lev.LeadConversionProgressed(lead=lead, conversion=conversion, step="customer", customer_id=customer_id)
    return lev.LEAD_CONVERSION_PROGRESSED.build(
        source="/crm/leads", subject=lead_id, data=data, aggregate_version=3, time=now, actor=REP
    )


async def test_a_lead_conversions_opportunity_is_index_lookups(
    app: FastAPI, db: Any, filled: FedCustomer, traced_store: TracedStore
) -> None:
    """Made (default pipeline), made again (a redelivery), refused (unknown pipeline), refused again."""
    made = _conversion(filled.id, amount="5000.00")
    refused = _conversion(filled.id, pipeline_id="no-such-pipeline")
    with traced_store.capture() as capture:
        for envelope in (made, made, refused, refused):
            assert await deliver(app, envelope) == 1
        await app.state.kit.relay.drain()
    assert_indexed(capture)
    assert await db["opportunities"].count_documents({"lead_id": made.subject}) == 1
    assert await db["lead_conversions"].count_documents({"_id": f"{refused.subject}:1"}) == 1


async def test_a_parked_conversion_and_the_resume_pass_are_index_lookups(
    app: FastAPI, db: Any, traced_store: TracedStore
) -> None:
    """A command whose customer is unknown is parked (an insert by conversion id); the resume pass
    reads the due ones by the integer ``next_at`` (idx_next_at) and reschedules each by ``_id``,
    with a few hundred other parked commands stored."""
    waiting = db["lead_conversions_waiting"]
    parked = _conversion(str(uuid.uuid4()))
    assert await deliver(app, parked) == 1
    stored = await waiting.find_one({"_id": f"{parked.subject}:1"})
    far = int(datetime(2099, 1, 1, tzinfo=UTC).timestamp() * 1000)
    await waiting.insert_many(clones(stored, ROWS, next_at=far))
    await waiting.update_one({"_id": stored["_id"]}, {"$set": {"next_at": 0}})
    with traced_store.capture() as capture:
        assert await deliver(app, _conversion(str(uuid.uuid4()))) == 1
        await app.state.lead_conversions.resume()
    assert_indexed(capture)
    assert (await waiting.find_one({"_id": stored["_id"]}))["next_at"] > 0  # tried, and put off


async def test_line_items_and_the_catalogue_copy_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, db: Any, filled: FedCustomer, feed: CustomerFeed, traced_store: TracedStore
) -> None:
    """Catalogue events (products by _id, price lists' guarded updates by _id) and a PUT of lines
    (products by _id, price lists by currency: idx_currency), with a few hundred of each stored."""
    now = datetime.now(UTC)
    sales = EventFeed(KeepingProducer())  # type: ignore[arg-type]

    def product(name: str) -> sev.ProductSnapshot:
        return sev.ProductSnapshot(
            product_id=str(uuid.uuid4()),
            sku=unique("SKU"),
            name=name,
            unit="台",
            active=True,
            created_at=now,
            updated_at=now,
        )

    seed = product("种子")
    await deliver(app, await sales.send(sev.PRODUCT_CREATED, seed.product_id, sev.ProductCreated(product=seed), now))
    stored = await db["sales_products"].find_one({"_id": seed.product_id})
    await db["sales_products"].insert_many(clones(stored, ROWS))
    other = {"_id": "x", "name": "x", "currency": "USD", "tier": None, "active": True, "source_version": 1}
    await db["sales_price_lists"].insert_many(clones(other, ROWS))
    customer = await new_customer(app, feed)
    r = await client.post(
        "/v1/opportunities", json={"customer_id": customer.id, "name": unique("商机")}, headers=REP_HEADERS
    )
    assert r.status_code == 201, r.text
    server = product("服务器")
    header = sev.PriceListSnapshot(
        price_list_id=str(uuid.uuid4()), name="标准", currency="CNY", active=True, created_at=now, updated_at=now
    )
    entry = sev.PriceEntry(product_id=server.product_id, unit_price="1280.00", set_at=now)
    with traced_store.capture() as capture:
        for envelope in (
            await sales.send(sev.PRODUCT_CREATED, server.product_id, sev.ProductCreated(product=server), now),
            await sales.send(
                sev.PRICE_LIST_CREATED, header.price_list_id, sev.PriceListCreated(price_list=header), now
            ),
            await sales.send(
                sev.PRICE_LIST_ENTRY_SET,
                header.price_list_id,
                sev.PriceListEntrySet(price_list=header, entry=entry),
                now,
            ),
        ):
            assert await deliver(app, envelope) == 1
            assert await deliver(app, envelope) == 1  # a redelivery: the guarded write collides
        r = await client.put(
            f"/v1/opportunities/{r.json()['id']}/lines",
            json={"lines": [{"product_id": server.product_id, "quantity": "2"}], "amount_follows_lines": True},
            headers={**REP_HEADERS, "If-Match": '"1"'},
        )
        assert r.status_code == 200, r.text
        await app.state.kit.relay.drain()
    assert_indexed(capture)
    assert r.json()["amount"] == "2560.00" and r.json()["lines"][0]["price_list_id"] == header.price_list_id
