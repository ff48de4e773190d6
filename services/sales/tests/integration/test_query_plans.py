"""Every write path, look-up and list page of the sales service is index lookups on the embedded
store (its SQLite query plans, see crm_platform.testing.query_plans).

The service runs against the traced store with a few hundred products and price lists already
stored (so SQLite prefers a good index to a scan); each path runs inside a capture, and any
statement whose cost grows with the collection fails the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import SystemClock
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, database
from crm_platform.testing.plans import assert_indexed
from crm_platform.testing.query_plans import TracedStore
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

ROWS = 150
MANAGER = auth("sales-mgr-plans", ["manager"], department_path="/hq")
REP = auth("sales-rep-plans", ["rep"], department_path="/hq/plans")
CATEGORY = "plans-category"
TIER = "PLANS"


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = SalesSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_sales_plans_{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".plans-{suffix}",
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI, traced_store: TracedStore) -> AsyncIterator[Any]:
    async with database(traced_store.url, app.state.kit.settings.mongo_database) as db_:
        yield db_


async def post(client: httpx.AsyncClient, url: str, body: Any) -> dict[str, Any]:
    r = await client.post(url, json=body, headers=MANAGER)
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def product_body(**fields: Any) -> dict[str, Any]:
    return {"sku": f"plan-{uuid.uuid4().hex[:10]}", "name": f"计划产品 {uuid.uuid4().hex[:8]}", "unit": "套", **fields}


def clones(doc: dict[str, Any], count: int, **changes: Any) -> list[dict[str, Any]]:
    """``count`` copies of a stored document under new ids (without pending events)."""
    base = {k: v for k, v in doc.items() if not k.startswith("outbox")}
    out = []
    for i in range(count):
        clone_id = f"{doc['_id']}-{i}"
        copy = {**base, **changes, "_id": clone_id, "s": {**doc["s"], "id": clone_id}}
        if "sku" in copy:  # unique: each clone its own
            copy["sku"] = f"{doc['sku']}-{i}"
            copy["s"]["sku"] = copy["sku"]
            copy["s"]["name"] = f"{doc['s']['name']} {i:03d}"
        out.append(copy)
    return out


@pytest.fixture(scope="module")
async def filled(client: httpx.AsyncClient, db: Any) -> dict[str, Any]:
    """A few hundred products (half of them in one category, some inactive) and price lists."""
    made = await post(client, "/v1/products", product_body(category=CATEGORY))
    stored = await db["products"].find_one({"_id": made["id"]})
    await db["products"].insert_many(clones(stored, ROWS))
    other = await post(client, "/v1/products", product_body(category="other"))
    stored = await db["products"].find_one({"_id": other["id"]})
    await db["products"].insert_many(clones(stored, ROWS, active=False))
    listed = await post(client, "/v1/price-lists", {"name": "计划价目表", "currency": "CNY", "tier": TIER})
    stored = await db["price_lists"].find_one({"_id": listed["id"]})
    await db["price_lists"].insert_many(clones(stored, ROWS))
    default = await post(client, "/v1/price-lists", {"name": "计划默认", "currency": "USD"})
    stored = await db["price_lists"].find_one({"_id": default["id"]})
    await db["price_lists"].insert_many(clones(stored, ROWS, active=False))
    return {"product": made, "list": listed}


async def test_product_writes_and_reads_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        made = await post(client, "/v1/products", product_body())
        url = f"/v1/products/{made['id']}"
        r = await client.post("/v1/products", json=product_body(sku=made["sku"]), headers=MANAGER)
        assert r.status_code == 409, r.text
        assert (await client.get(url, headers=REP)).status_code == 200
        renamed = {"name": "改名", "sku": made["sku"] + "-x"}
        r = await client.patch(url, json=renamed, headers={**MANAGER, "If-Match": '"1"'})
        assert r.status_code == 200, r.text
        r = await client.patch(url, json={"sku": filled["product"]["sku"]}, headers={**MANAGER, "If-Match": '"2"'})
        assert r.status_code == 409, r.text
        await post(client, f"{url}/deactivate", {})
        await post(client, f"{url}/activate", {})
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_price_list_writes_and_the_price_look_up_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    product = filled["product"]
    with traced_store.capture() as capture:
        listed = await post(client, "/v1/price-lists", {"name": "新价目表", "currency": "CNY", "tier": TIER})
        url = f"/v1/price-lists/{listed['id']}"
        r = await client.put(f"{url}/entries/{product['id']}", json={"unit_price": "99.50"}, headers=MANAGER)
        assert r.status_code == 200, r.text
        r = await client.patch(url, json={"valid_from": "2026-01-01"}, headers={**MANAGER, "If-Match": '"2"'})
        assert r.status_code == 200, r.text
        assert (await client.get(url, headers=REP)).status_code == 200
        params = {"product_id": product["id"], "currency": "CNY", "tier": TIER, "on": "2026-06-01"}
        r = await client.get("/v1/prices", params=params, headers=REP)
        assert r.status_code == 200 and r.json()["price_list_id"] == listed["id"], r.text
        r = await client.get("/v1/prices", params={**params, "tier": "NONE"}, headers=REP)
        assert r.status_code == 404, r.text
        assert (await client.delete(f"{url}/entries/{product['id']}", headers=MANAGER)).status_code == 200
        await app.state.kit.relay.drain()
    assert_indexed(capture)


PRODUCT_FILTERS: list[dict[str, Any]] = [
    {},
    {"category": CATEGORY},
    {"active": "false"},
    {"category": CATEGORY, "active": "true"},
]


@pytest.mark.parametrize("sort", ["name", "-name", "sku", "-sku", "created_at", "-created_at"])
@pytest.mark.parametrize("filters", PRODUCT_FILTERS, ids=lambda f: ",".join(f) or "none")
async def test_product_list_pages_are_index_lookups(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore, filters: dict[str, Any], sort: str
) -> None:
    """Page 1 and the page after it: each an index walk in sort order (no scan, no sort of every match)."""
    params: dict[str, Any] = {**filters, "sort": sort, "limit": 20}
    with traced_store.capture() as capture:
        first = await client.get("/v1/products", params=params, headers=REP)
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        assert cursor, first.text[:300]
        second = await client.get("/v1/products", params={**params, "cursor": cursor}, headers=REP)
    assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
    assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
    assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)


@pytest.mark.parametrize("sort", ["name", "sku", "-created_at"])
async def test_a_search_by_name_or_sku_prefix_is_index_ranges(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore, sort: str
) -> None:
    """``q`` is two index ranges (the name's and the SKU's prefix), one query each: no scan. The
    matches of a prefix may be sorted for a sort on another key (a cost bounded by the prefix's
    matches, not the catalogue), so this asserts no scan, not index order."""
    product = filled["product"]
    for q in (product["name"][:6], product["sku"][:9].lower()):
        params: dict[str, Any] = {"q": q, "sort": sort, "limit": 20}
        with traced_store.capture() as capture:
            first = await client.get("/v1/products", params=params, headers=REP)
            assert first.status_code == 200 and len(first.json()["items"]) == 20, first.text
            params["cursor"] = first.json()["next_cursor"]
            second = await client.get("/v1/products", params=params, headers=REP)
            assert second.status_code == 200 and second.json()["items"], second.text
        assert_indexed(capture)


LIST_FILTERS: list[dict[str, Any]] = [
    {},
    {"currency": "CNY"},
    {"tier": TIER},
    {"active": "false"},
    {"currency": "CNY", "tier": TIER},
]


@pytest.mark.parametrize("sort", ["name", "-created_at", "valid_from", "-valid_from"])
@pytest.mark.parametrize("filters", LIST_FILTERS, ids=lambda f: ",".join(f) or "none")
async def test_price_list_pages_are_index_lookups(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore, filters: dict[str, Any], sort: str
) -> None:
    params: dict[str, Any] = {**filters, "sort": sort, "limit": 20}
    with traced_store.capture() as capture:
        first = await client.get("/v1/price-lists", params=params, headers=REP)
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        assert cursor, first.text[:300]
        second = await client.get("/v1/price-lists", params={**params, "cursor": cursor}, headers=REP)
    assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
    assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
    assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)
