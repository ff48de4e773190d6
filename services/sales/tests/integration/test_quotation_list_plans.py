"""Every page of the quotation list is an index walk in sort order on the embedded store (its SQLite
query plans, see crm_platform.testing.query_plans): page 1 and the page after it, for every filter
and every sort, as a rep (own scope), a custom role of department scope, a manager (subtree) and an
admin (all), with ``unkeyed_sorts`` so a sort no index carries (with the id after it) fails.

The rows are clones of one stored quotation (with their sort copies): of the rep's, 50 drafts still
valid, 50 drafts past ``valid_until`` (expired) and 50 sent; as many others' elsewhere, so an index
must pick the rep's out.
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
from crm_platform.testing.roles import define_role
from crm_sales.domain.quotation_list import sort_keys
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

GROUP = 50
DEPT = "/hq/qlist"
REP_ID = "qlist-rep-plans"
REP = auth(REP_ID, ["rep"], department_path=DEPT)
MANAGER = auth("qlist-mgr-plans", ["manager"], department_path="/hq")
ADMIN = auth("qlist-admin-plans", ["admin"], department_path="/hq")
DEPT_ROLE = "qlist-department"
DEPT_USER = auth("qlist-dept-plans", [DEPT_ROLE], department_path=DEPT)
SCOPES = {"rep": REP, "department": DEPT_USER, "manager": MANAGER, "admin": ADMIN}
OPPORTUNITY = "opp-qlist-plans"


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = SalesSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_sales_qlist_{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".qlist-{suffix}",
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        await define_role(application, DEPT_ROLE, ["quotations:view"], {"customers": "department"})
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales.test") as c:
        yield c


@pytest.fixture(scope="module")
async def filled(app: FastAPI, client: httpx.AsyncClient, traced_store: TracedStore) -> dict[str, Any]:
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=REP_ID, department_path=DEPT)
    assert await deliver(app, feed.published[-1]) == 1
    product = (
        await client.post(
            "/v1/products", json={"sku": f"ql-{uuid.uuid4().hex[:8]}", "name": "列表产品", "unit": "套"}, headers=ADMIN
        )
    ).json()
    until = (date.today() + timedelta(days=30)).isoformat()
    line = {"product_id": product["id"], "quantity": "2", "unit_price": "10"}
    body = {"customer_id": customer.id, "opportunity_id": OPPORTUNITY, "currency": "CNY", "valid_until": until}
    r = await client.post("/v1/quotations", json={**body, "lines": [line]}, headers=REP)
    assert r.status_code == 201, r.text
    async with database(traced_store.url, app.state.kit.settings.mongo_database) as db:
        stored = await db["quotations"].find_one({"_id": r.json()["id"]})
        base = {k: v for k, v in stored.items() if not k.startswith("outbox")}
        past = (date.today() - timedelta(days=3)).isoformat()
        kinds = [("draft", until), ("draft", past), ("sent", until)]
        rows = []
        for n in range(GROUP * len(kinds) * 2):
            status, valid_until = kinds[n % len(kinds)]
            mine = n % 2 == 0
            doc = {
                **base,
                "_id": f"{base['_id']}-{n}",
                "number": f"Q-1999-{n + 1:06d}",
                "seq": n + 1,
                "status": status,
                "valid_until": valid_until,
                "total_minor": 100 * (n % 17),
                "owner_id": REP_ID if mine else f"someone-{n}",
                "department_path": DEPT if mine else f"/elsewhere/{n % 5}",
                "customer_id": customer.id if mine else f"cust-{n % 9}",
                "opportunity_id": OPPORTUNITY if mine else None,
            }
            doc["s"] = sort_keys(doc)
            rows.append(doc)
        await db["quotations"].insert_many(rows)
    return {"customer": customer.id}


SORTS = ["-created_at", "created_at", "number", "-number", "valid_until", "-valid_until"]


def filters(filled: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {},
        {"customer_id": filled["customer"]},
        {"opportunity_id": OPPORTUNITY},
        {"owner_id": REP_ID},
        {"status": "draft"},
        {"status": "expired"},
        {"status": "sent"},
        {"currency": "CNY"},
    ]


async def two_pages(client: httpx.AsyncClient, traced_store: TracedStore, params: dict[str, Any], headers: Any) -> None:
    with traced_store.capture() as capture:
        first = await client.get("/v1/quotations", params=params, headers=headers)
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        assert cursor, (params, first.text[:300])
        second = await client.get("/v1/quotations", params={**params, "cursor": cursor}, headers=headers)
    assert second.status_code == 200 and len(second.json()["items"]) == 20, (params, second.text[:300])
    assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
    if "status" in params:
        assert {i["status"] for i in first.json()["items"] + second.json()["items"]} == {params["status"]}
    assert_indexed(capture, sorted_results=True, unkeyed_sorts=True, row_filters=True)


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("scope", list(SCOPES))
async def test_quotation_list_pages_are_index_walks(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore, scope: str, sort: str
) -> None:
    for conditions in filters(filled):
        await two_pages(client, traced_store, {**conditions, "sort": sort, "limit": 20}, SCOPES[scope])


@pytest.mark.parametrize("sort", ["total", "-total"])
@pytest.mark.parametrize("scope", list(SCOPES))
async def test_the_total_sort_within_a_currency_is_an_index_walk(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore, scope: str, sort: str
) -> None:
    for conditions in ({}, {"status": "expired"}, {"customer_id": filled["customer"]}):
        params = {**conditions, "currency": "CNY", "sort": sort, "limit": 20}
        await two_pages(client, traced_store, params, SCOPES[scope])


@pytest.mark.parametrize("scope", list(SCOPES))
async def test_a_number_prefix_is_an_index_range(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore, scope: str
) -> None:
    """``q`` is a range on the number's unique index; under another sort than the number its matches
    are sorted (a cost bounded by the prefix's matches), so this asserts no scan, not index order."""
    for sort in ("number", "-created_at"):
        params = {"q": "q-1999-0001", "sort": sort, "limit": 20}
        with traced_store.capture() as capture:
            first = await client.get("/v1/quotations", params=params, headers=SCOPES[scope])
            assert first.status_code == 200 and len(first.json()["items"]) == 20, first.text[:300]
            assert all(i["number"].startswith("Q-1999-0001") for i in first.json()["items"])
            second = await client.get(
                "/v1/quotations", params={**params, "cursor": first.json()["next_cursor"]}, headers=SCOPES[scope]
            )
            assert second.status_code == 200, second.text
        assert_indexed(capture, row_filters=True)
