"""Every query a quotation makes is an index lookup on the embedded store (its SQLite query plans,
see crm_platform.testing.query_plans): the customer's read copy, the products and the price look-up
of the lines, the year's counter (``$inc`` with upsert), the insert (and the unique number), the
reads (one, its revisions, its PDF) and every guarded write (change, revise, the status moves).

The service runs against the traced store with a few hundred quotations and customers already
stored (so SQLite prefers a good index to a scan); the customers reach it through its own consumer
handlers (``deliver``), not Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import SystemClock
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, database
from crm_platform.testing.plans import KeepingProducer, assert_indexed, deliver
from crm_platform.testing.query_plans import TracedStore
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

ROWS = 150
MANAGER = auth("quote-mgr-plans", ["manager"], department_path="/hq")
REP_ID = "quote-rep-plans"
REP = auth(REP_ID, ["rep"], department_path="/hq/plans")
TIER = "QPLANS"


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = SalesSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_sales_qplans_{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".qplans-{suffix}",
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


async def post(client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str] = MANAGER) -> dict[str, Any]:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def quotation(customer_id: str, product_id: str, discount: str = "0") -> dict[str, Any]:
    until = (date.today() + timedelta(days=30)).isoformat()
    line = {"product_id": product_id, "quantity": "2", "discount_percent": discount}
    return {"customer_id": customer_id, "currency": "CNY", "tier": TIER, "valid_until": until, "lines": [line]}


@pytest.fixture(scope="module")
async def filled(app: FastAPI, client: httpx.AsyncClient, db: Any) -> dict[str, Any]:
    """A product on a price list, a customer of the rep's (and many others'), many quotations."""
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=REP_ID, department_path="/hq/plans")
    assert await deliver(app, feed.published[-1]) == 1
    for i in range(ROWS):
        await feed.created(owner_id=f"someone-{i}", department_path=f"/hq/other{i % 7}")
        await deliver(app, feed.published[-1])
    product = await post(
        client, "/v1/products", {"sku": f"qp-{uuid.uuid4().hex[:8]}", "name": "计划产品", "unit": "套"}
    )
    listed = await post(client, "/v1/price-lists", {"name": "报价计划", "currency": "CNY", "tier": TIER})
    r = await client.put(
        f"/v1/price-lists/{listed['id']}/entries/{product['id']}", json={"unit_price": "99.50"}, headers=MANAGER
    )
    assert r.status_code == 200, r.text
    made = await post(client, "/v1/quotations", quotation(customer.id, product["id"]), REP)
    stored = await db["quotations"].find_one({"_id": made["id"]})
    base = {k: v for k, v in stored.items() if not k.startswith("outbox")}
    await db["quotations"].insert_many(
        [{**base, "_id": f"{made['id']}-{i}", "number": f"Q-1999-{i + 1:06d}", "seq": i + 1} for i in range(ROWS)]
    )
    return {"customer": customer.id, "product": product["id"]}


async def test_drafting_reading_and_changing_a_quotation_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        made = await post(client, "/v1/quotations", quotation(filled["customer"], filled["product"]), REP)
        url = f"/v1/quotations/{made['id']}"
        bad = {**quotation(filled["customer"], filled["product"]), "tier": "NONE"}
        assert (await client.post("/v1/quotations", json=bad, headers=REP)).status_code == 422
        assert (await client.get(url, headers=REP)).status_code == 200
        assert (await client.get(f"{url}/versions", headers=REP)).status_code == 200
        assert (await client.get(f"{url}.pdf", headers=REP)).status_code == 200
        r = await client.patch(url, json={"notes": "计划"}, headers={**REP, "If-Match": '"1"'})
        assert r.status_code == 200, r.text
        await post(client, f"{url}/send", {}, REP)
        await post(client, f"{url}/revise", {}, REP)
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_the_approval_path_is_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        made = await post(client, "/v1/quotations", quotation(filled["customer"], filled["product"], "30"), REP)
        url = f"/v1/quotations/{made['id']}"
        await post(client, f"{url}/submit", {}, REP)
        await post(client, f"{url}/approve", {"comment": "ok"}, MANAGER)
        await post(client, f"{url}/send", {}, REP)
        await post(client, f"{url}/accept", {}, REP)
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_a_customers_merge_and_deletion_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    """A merge finds the duplicate's quotations by ``idx_customer_id`` and moves each by ``_id``; a
    move refused because the customer is in the recycle bin reads its copy by ``_id``."""
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    survivor = await feed.created(owner_id=REP_ID, department_path="/hq/plans")
    duplicate = await feed.created(owner_id=REP_ID, department_path="/hq/plans")
    for envelope in feed.published:
        await deliver(app, envelope)
    made = [await post(client, "/v1/quotations", quotation(duplicate.id, filled["product"]), REP) for _ in range(2)]
    with traced_store.capture() as capture:
        for envelope in await feed.merged(survivor, duplicate):
            assert await deliver(app, envelope) == 1
        await app.state.kit.relay.drain()
        await deliver(app, await feed.deleted(survivor))
        r = await client.post(f"/v1/quotations/{made[0]['id']}/send", headers=REP)
        assert r.status_code == 409 and r.json()["reason"] == "customer-deleted", r.text
    assert_indexed(capture)
    got = await client.get(f"/v1/quotations/{made[1]['id']}", headers=REP)
    assert got.json()["customer_id"] == survivor.id
