"""GET /v1/quotations against the real embedded store and broker: who sees which quotations (the
same rule as GET /v1/quotations/{id}), each filter, the sorts, keyset pages, the computed ``expired``
status (a clock of the service's own moves time), and the 422s.

Customers reach the service as in production: customers events on ``crm.customers.v1``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.clock import SystemClock
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.fixtures import auth, eventually, running, service_settings, unique
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings


class OffsetClock:
    def __init__(self) -> None:
        self._system = SystemClock()
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self._system.now() + self.offset


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
async def app(backend: Backend, clock: OffsetClock) -> AsyncIterator[FastAPI]:
    application = create_app(SalesSettings(**service_settings(backend, "sales")), clock)
    async with running(application, "http://sales-list.test"):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales-list.test") as c:
        yield c


class Team:
    def __init__(self) -> None:
        root = f"/{unique('ql')}"
        self.root = root
        self.rep = (unique("rep"), f"{root}/sales")
        self.rep2 = (unique("rep"), f"/{unique('elsewhere')}")
        self.peer = (unique("peer"), f"{root}/sales")
        self.manager = (unique("mgr"), root)

    @staticmethod
    def headers(user: tuple[str, str], role: str = "rep") -> dict[str, str]:
        return auth(user[0], [role], department_path=user[1])


async def fed(app: FastAPI, producer: AIOKafkaProducer, user: tuple[str, str]) -> FedCustomer:
    customer = await CustomerFeed(producer).created(owner_id=user[0], department_path=user[1])
    copies = app.state.kit.db["customers"]
    await eventually(
        lambda: copies.find_one({"_id": customer.id, "source_version": customer.version}),
        timeout=30,
        message=f"customer {customer.id} in the read copy",
    )
    return customer


async def product(client: httpx.AsyncClient) -> str:
    admin = auth(unique("admin"), ["admin"], department_path="/")
    body = {"sku": f"ql-{uuid.uuid4().hex[:10]}", "name": "列表测试产品", "unit": "台"}
    r = await client.post("/v1/products", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def draft(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    customer: FedCustomer,
    product_id: str,
    price: str,
    days: int = 30,
    today: date | None = None,
    **fields: Any,
) -> dict[str, Any]:
    until = ((today or date.today()) + timedelta(days=days)).isoformat()
    line = {"product_id": product_id, "quantity": "1", "unit_price": price}
    body = {"customer_id": customer.id, "currency": "CNY", "valid_until": until, "lines": [line], **fields}
    r = await client.post("/v1/quotations", json=body, headers=headers)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def ids(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    r = await client.get("/v1/quotations", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


async def test_the_list_shows_what_each_caller_may_see_filtered_sorted_and_paged(
    app: FastAPI, client: httpx.AsyncClient, producer: AIOKafkaProducer
) -> None:
    team = Team()
    rep, peer, rep2 = Team.headers(team.rep), Team.headers(team.peer), Team.headers(team.rep2)
    manager = Team.headers(team.manager, "manager")
    customer = await fed(app, producer, team.rep)
    other_customer = await fed(app, producer, team.rep)
    elsewhere = await fed(app, producer, team.rep2)
    product_id = await product(client)
    opportunity = unique("opp")
    a = await draft(client, rep, customer, product_id, "300", opportunity_id=opportunity)
    b = await draft(client, rep, customer, product_id, "100")
    c = await draft(client, rep, other_customer, product_id, "200")
    d = await draft(client, rep2, elsewhere, product_id, "50")

    # visibility: the rep sees their own, the manager of the department's subtree all three, the
    # peer (rep, own scope) none, the rep elsewhere only theirs: as GET /v1/quotations/{id}
    mine = [c["id"], b["id"], a["id"]]  # default sort: newest first
    assert await ids(client, rep, customer_id=customer.id) == [b["id"], a["id"]]
    assert await ids(client, manager, owner_id=team.rep[0]) == mine
    assert await ids(client, peer, owner_id=team.rep[0]) == []
    assert await ids(client, rep2, customer_id=customer.id) == []
    assert await ids(client, rep2, owner_id=team.rep2[0]) == [d["id"]]
    for item in (a, b, c):
        assert (await client.get(f"/v1/quotations/{item['id']}", headers=peer)).status_code == 404

    # filters
    assert await ids(client, rep, opportunity_id=opportunity) == [a["id"]]
    assert await ids(client, rep, owner_id=team.rep[0], q=a["number"].lower()) == [a["id"]]
    assert await ids(client, rep, customer_id=customer.id, status="draft") == [b["id"], a["id"]]
    r = await client.post(f"/v1/quotations/{a['id']}/send", headers=rep)
    assert r.status_code == 200, r.text
    assert await ids(client, rep, customer_id=customer.id, status="sent") == [a["id"]]
    assert await ids(client, rep, customer_id=customer.id, status="draft") == [b["id"]]

    # sorts and pages
    assert await ids(client, rep, owner_id=team.rep[0], sort="number") == [a["id"], b["id"], c["id"]]
    assert await ids(client, rep, owner_id=team.rep[0], sort="-total", currency="cny") == [a["id"], c["id"], b["id"]]
    r = await client.get(
        "/v1/quotations", params={"owner_id": team.rep[0], "sort": "total", "currency": "CNY", "limit": 2}, headers=rep
    )
    page = r.json()
    assert [i["id"] for i in page["items"]] == [b["id"], c["id"]] and page["items"][0]["total"] == "100.00"
    r = await client.get(
        "/v1/quotations",
        params={"owner_id": team.rep[0], "sort": "total", "currency": "CNY", "limit": 2, "cursor": page["next_cursor"]},
        headers=rep,
    )
    assert [i["id"] for i in r.json()["items"]] == [a["id"]] and r.json()["next_cursor"] is None


async def test_bad_list_parameters_are_422_naming_them(client: httpx.AsyncClient) -> None:
    rep = auth(unique("rep"), ["rep"], department_path="/x")
    for params, field in (
        ({"sort": "total"}, "sort"),  # amounts compare within one currency only
        ({"sort": "name"}, "sort"),
        ({"sort": "number,-created_at"}, "sort"),
        ({"status": "lost"}, "status"),
        ({"currency": "XXQ"}, "currency"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
    ):
        r = await client.get("/v1/quotations", params=params, headers=rep)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert field in {e["field"] for e in r.json()["errors"]}, (params, r.text)
    integrator = auth(unique("int"), ["integrator"], "/")
    assert (await client.get("/v1/quotations", headers=integrator)).status_code == 403


async def test_expired_is_filtered_as_shown(
    app: FastAPI, client: httpx.AsyncClient, producer: AIOKafkaProducer, clock: OffsetClock
) -> None:
    team = Team()
    rep = Team.headers(team.rep)
    customer = await fed(app, producer, team.rep)
    product_id = await product(client)
    today = clock.now().date()
    short = await draft(client, rep, customer, product_id, "10", days=2, today=today)
    sent = await draft(client, rep, customer, product_id, "10", days=2, today=today)
    assert (await client.post(f"/v1/quotations/{sent['id']}/send", headers=rep)).status_code == 200
    long = await draft(client, rep, customer, product_id, "10", days=60, today=today)
    declined = await draft(client, rep, customer, product_id, "10", days=2, today=today)
    for action in ("send", "decline"):
        assert (await client.post(f"/v1/quotations/{declined['id']}/{action}", headers=rep)).status_code == 200
    clock.offset += timedelta(days=5)  # time only moves forward (the relay runs on this clock too)
    assert await ids(client, rep, customer_id=customer.id, status="expired", sort="number") == [short["id"], sent["id"]]
    assert await ids(client, rep, customer_id=customer.id, status="draft") == [long["id"]]
    assert await ids(client, rep, customer_id=customer.id, status="sent") == []
    assert await ids(client, rep, customer_id=customer.id, status="declined") == [declined["id"]]  # final: not expired
    r = await client.get("/v1/quotations", params={"customer_id": customer.id, "sort": "valid_until"}, headers=rep)
    items = r.json()["items"]
    assert [i["id"] for i in items][-1] == long["id"]
    assert {i["id"]: i["status"] for i in items}[short["id"]] == "expired"
