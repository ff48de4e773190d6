"""Every query contracts make is an index lookup on the embedded store (its SQLite query plans, see
crm_platform.testing.query_plans): the customer's, opportunity's and quotation's look-ups, the
year's counter, the insert (and its unique number), the reads, every guarded write (change, the
approval and status moves), and every page of the list for each filter, sort and scope (own, a
custom role of ``department`` scope, subtree, all).

The service runs against the traced store with a few hundred contracts already stored (so SQLite
prefers a good index to a scan); customers and opportunities reach it through its own handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import SystemClock
from crm_platform.contracts import pipeline as pev
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, database
from crm_platform.testing.plans import KeepingProducer, assert_indexed, deliver
from crm_platform.testing.query_plans import TracedStore
from crm_platform.testing.roles import define_role
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

ROWS = 120
REP_ID = "contract-rep-plans"
REP = auth(REP_ID, ["rep"], department_path="/hq/cplans")
MANAGER = auth("contract-mgr-plans", ["manager"], department_path="/hq/cplans")
APPROVER = auth("contract-approver-plans", ["manager"], department_path="/hq")
ADMIN = auth("contract-admin-plans", ["admin"], department_path="/hq")
#: A custom role whose contracts scope is "department": owner or the path's equality, each branch
#: index-served (live, [filters], owner_id | department_path, s.created, s.id).
DEPT_ROLE = "cplans-department"
DEPT_USER = auth("contract-dept-plans", [DEPT_ROLE], department_path="/hq/cplans")
SCOPES = {"own": REP, "department": DEPT_USER, "subtree": MANAGER, "all": ADMIN}


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    suffix = uuid.uuid4().hex[:8]
    settings = SalesSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_sales_cplans_{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".cplans-{suffix}",
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        await define_role(application, DEPT_ROLE, ["contracts:view"], {"contracts": "department"})
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI, traced_store: TracedStore) -> AsyncIterator[Any]:
    async with database(traced_store.url, app.state.kit.settings.mongo_database) as db_:
        yield db_


async def post(client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str] = REP) -> dict[str, Any]:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def won_opportunity(customer_id: str) -> Any:
    now = datetime.now(UTC)
    opp_id = str(uuid.uuid4())
    snapshot = pev.OpportunitySnapshot(
        opportunity_id=opp_id,
        name="计划商机",
        customer_id=customer_id,
        amount="90000.00",
        currency="CNY",
        probability=100,
        pipeline_id="p",
        stage_id="p-won",
        stage_name="won",
        stage_kind="won",
        stage_entered_at=now,
        status="won",
        owner_id=REP_ID,
        department_path="/hq/cplans",
        created_at=now,
        updated_at=now,
    )
    return pev.OPPORTUNITY_CREATED.build(
        source="/crm/pipeline",
        subject=opp_id,
        data=pev.OpportunityCreated(opportunity=snapshot),
        aggregate_version=1,
        time=now,
        actor=None,
    )


@pytest.fixture(scope="module")
async def filled(app: FastAPI, client: httpx.AsyncClient, db: Any) -> dict[str, Any]:
    """A customer of the rep's (and many others'), a won opportunity, many contracts."""
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=REP_ID, department_path="/hq/cplans")
    assert await deliver(app, feed.published[-1]) >= 1
    for i in range(ROWS):
        await feed.created(owner_id=f"someone-{i}", department_path=f"/hq/other{i % 7}")
        await deliver(app, feed.published[-1])
    opportunity = won_opportunity(customer.id)
    assert await deliver(app, opportunity) >= 1
    made = await post(client, "/v1/contracts", {"title": "计划合同", "opportunity_id": opportunity.subject})
    stored = await db["contracts"].find_one({"_id": made["id"]})
    base = {k: v for k, v in stored.items() if not k.startswith("outbox") and k != "pending_since"}
    mine = [
        {
            **base,
            "_id": f"{made['id']}-{i}",
            "number": f"C-1999-{i + 1:06d}",
            "seq": i + 1,
            "status": ("draft", "signed")[i % 2],
            "s": {"created": base["s"]["created"] - i, "id": f"{made['id']}-{i}"},
        }
        for i in range(ROWS)
    ]
    others = [
        {
            **base,
            "_id": f"{made['id']}-o{i}",
            "number": f"C-1998-{i + 1:06d}",
            "seq": i + 1,
            "owner_id": f"someone-{i}",
            "department_path": f"/hq/other{i % 7}",
            "customer_id": f"other-{i % 5}",
            "status": ("draft", "signed")[i % 2],
            "s": {"created": base["s"]["created"] - i, "id": f"{made['id']}-o{i}"},
        }
        for i in range(ROWS)
    ]
    await db["contracts"].insert_many(mine + others)
    return {"customer": customer.id, "opportunity": opportunity.subject}


async def test_drafting_reading_changing_and_moving_a_contract_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        made = await post(client, "/v1/contracts", {"title": "新合同", "opportunity_id": filled["opportunity"]})
        direct = {"title": "直签", "customer_id": filled["customer"], "amount": "10", "currency": "CNY"}
        await post(client, "/v1/contracts", direct)
        bad = {"title": "x", "opportunity_id": str(uuid.uuid4())}
        assert (await client.post("/v1/contracts", json=bad, headers=REP)).status_code == 422
        url = f"/v1/contracts/{made['id']}"
        assert (await client.get(url, headers=REP)).status_code == 200
        r = await client.patch(url, json={"notes": "计划"}, headers={**REP, "If-Match": '"1"'})
        assert r.status_code == 200, r.text
        await post(client, f"{url}/submit", {})
        await post(client, f"{url}/approve", {"comment": "ok"}, APPROVER)
        await post(client, f"{url}/sign", {"signed_on": date.today().isoformat(), "signed_document": "D-1"})
        await post(client, f"{url}/start", {})
        await post(client, f"{url}/terminate", {"reason": "计划"})
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_the_plan_payments_refunds_and_invoices_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    direct = {"title": "回款", "customer_id": filled["customer"], "amount": "1000", "currency": "CNY"}
    made = await post(client, "/v1/contracts", direct)
    url = f"/v1/contracts/{made['id']}"
    await post(client, f"{url}/submit", {})
    await post(client, f"{url}/approve", {}, APPROVER)
    signed = await post(client, f"{url}/sign", {"signed_on": date.today().isoformat(), "signed_document": "D"})
    later = date.today().isoformat()
    with traced_store.capture() as capture:
        body = {"instalments": [{"due_date": later, "amount": "400"}, {"due_date": later, "amount": "600"}]}
        r = await client.put(f"{url}/plan", json=body, headers={**REP, "If-Match": f'"{signed["version"]}"'})
        assert r.status_code == 200, r.text
        paid = await post(client, f"{url}/payments", {"amount": "1100", "received_on": later, "method": "cash"})
        payment = paid["payments"][-1]["id"]
        await post(client, f"{url}/refunds", {"payment_id": payment, "amount": "150", "reason": "退"})
        await post(client, f"{url}/invoices", {"payment_id": payment, "tax_rate": "13", "title": "计划客户"})
        assert (await client.get(f"{url}/invoices", headers=REP)).status_code == 200
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_the_overdue_schedulers_look_up_and_claim_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore, db: Any
) -> None:
    direct = {"title": "逾期", "customer_id": filled["customer"], "amount": "1000", "currency": "CNY"}
    made = await post(client, "/v1/contracts", direct)
    url = f"/v1/contracts/{made['id']}"
    await post(client, f"{url}/submit", {})
    await post(client, f"{url}/approve", {}, APPROVER)
    signed = await post(client, f"{url}/sign", {"signed_on": date.today().isoformat(), "signed_document": "D"})
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    body = {"instalments": [{"due_date": yesterday, "amount": "1000"}]}
    r = await client.put(f"{url}/plan", json=body, headers={**REP, "If-Match": f'"{signed["version"]}"'})
    assert r.status_code == 200, r.text
    stored = await db["contracts"].find_one({"_id": made["id"]})
    base = {k: v for k, v in stored.items() if not k.startswith("outbox") and k != "pending_since"}
    later = [
        {**base, "_id": f"{made['id']}-d{i}", "number": f"C-1997-{i + 1:06d}", "next_due_day": 10**6 + i}
        for i in range(ROWS)
    ]
    await db["contracts"].insert_many(later)
    with traced_store.capture() as capture:
        await app.state.overdue_scheduler.tick()  # the background one may win the claim: either is fine
        await app.state.kit.relay.drain()
    assert_indexed(capture)
    again = await db["contracts"].find_one({"_id": made["id"]})
    assert again["plan"][0]["overdue_notified"] is True and again["next_due_day"] is None


LIST_FILTERS: list[dict[str, Any]] = [
    {},
    {"customer_id": "C"},
    {"status": "signed"},
    {"owner_id": REP_ID},
    {"customer_id": "C", "status": "draft"},
    {"customer_id": "C", "owner_id": REP_ID},
    {"status": "draft", "owner_id": REP_ID},
    {"customer_id": "C", "status": "signed", "owner_id": REP_ID},
]


@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
@pytest.mark.parametrize("filters", LIST_FILTERS, ids=lambda f: ",".join(f) or "none")
async def test_contract_list_pages_are_index_lookups(
    client: httpx.AsyncClient,
    filled: dict[str, Any],
    traced_store: TracedStore,
    filters: dict[str, Any],
    sort: str,
    scope: str,
) -> None:
    """Page 1 and the page after it, for every filter, both sorts and each scope: no scan (and, but
    for a subtree's path range, no sort of every match)."""
    params: dict[str, Any] = {
        **{k: (filled["customer"] if v == "C" else v) for k, v in filters.items()},
        "sort": sort,
        "limit": 20,
    }
    with traced_store.capture() as capture:
        first = await client.get("/v1/contracts", params=params, headers=SCOPES[scope])
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        assert cursor, first.text[:300]
        second = await client.get("/v1/contracts", params={**params, "cursor": cursor}, headers=SCOPES[scope])
    assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
    assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
    if scope == "subtree":
        assert_indexed(capture, row_filters=True)
    else:
        assert_indexed(capture, sorted_results=True, unkeyed_sorts=True, row_filters=True)


async def test_an_owner_filter_outside_ones_own_scope_is_an_empty_page_without_a_query(
    client: httpx.AsyncClient, filled: dict[str, Any], traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        r = await client.get("/v1/contracts", params={"owner_id": "someone-3"}, headers=REP)
        assert r.status_code == 200 and r.json()["items"] == [], r.text
        r = await client.get("/v1/contracts", params={"owner_id": "someone-3"}, headers=MANAGER)
        assert r.status_code == 200 and r.json()["items"] == [], r.text
        r = await client.get("/v1/contracts", params={"owner_id": "someone-3"}, headers=DEPT_USER)
        assert r.status_code == 200 and r.json()["items"] == [], r.text
    if capture.statements:  # the rep's page asks the store nothing; the others' are indexed
        assert_indexed(capture)
