"""Quotations over HTTP against the real embedded store and broker: drafting one (prices from the
price lists or given, totals, the number, its event), 422s naming each field (and no number taken
by a refused draft), 50 concurrent drafts numbered 1..50 without gaps, PATCH with ETag/412/428 only
while draft, revisions kept read-only, the approval of discounts (not one's own: 403), send and the
customer's answer, expiry computed on read, the PDF, and who sees what.

Customers reach the service as they do in production: customers events on ``crm.customers.v1``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pymongo.errors import AutoReconnect

from crm_platform.clock import SystemClock
from crm_platform.contracts import sales as sev
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.fixtures import auth, collecting, eventually, running, service_settings, unique
from crm_sales.domain.quotations import parse_number
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

PROBLEM = "application/problem+json"


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


class Team:
    def __init__(self) -> None:
        root = f"/{unique('q')}"
        self.rep = User(f"{root}/sales")
        self.rep2 = User(f"/{unique('elsewhere')}")
        self.manager = User(root, ["manager"], "mgr")
        self.admin = User("/", ["admin"], "admin")


@pytest.fixture
def team() -> Team:
    return Team()


async def fed_customer(app: FastAPI, feed: CustomerFeed, user: User, **kwargs: Any) -> FedCustomer:
    customer = await feed.created(owner_id=user.id, department_path=user.dept, **kwargs)
    copies = app.state.kit.db["customers"]
    await eventually(
        lambda: copies.find_one({"_id": customer.id, "source_version": customer.version}),
        timeout=30,
        message=f"customer {customer.id} in the read copy",
    )
    return customer


@pytest.fixture(scope="module")
def feed(producer: AIOKafkaProducer) -> CustomerFeed:
    return CustomerFeed(producer)


async def new_product(client: httpx.AsyncClient, admin: User, price: str | None = "1280.50") -> dict[str, Any]:
    body = {"sku": f"q-{uuid.uuid4().hex[:10]}", "name": f"云服务器 {uuid.uuid4().hex[:6]}", "unit": "台"}
    r = await client.post("/v1/products", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    product: dict[str, Any] = r.json()
    if price is not None:
        tier = f"T{uuid.uuid4().hex[:6]}".upper()
        r = await client.post(
            "/v1/price-lists", json={"name": f"价目 {tier}", "currency": "CNY", "tier": tier}, headers=admin.headers
        )
        assert r.status_code == 201, r.text
        r = await client.put(
            f"/v1/price-lists/{r.json()['id']}/entries/{product['id']}",
            json={"unit_price": price},
            headers=admin.headers,
        )
        assert r.status_code == 200, r.text
        product["tier"] = tier
    return product


def body(customer: FedCustomer, lines: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    until = (date.today() + timedelta(days=30)).isoformat()
    return {"customer_id": customer.id, "currency": "CNY", "valid_until": until, "lines": lines, **fields}


async def draft(client: httpx.AsyncClient, user: User, payload: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/quotations", json=payload, headers=user.headers)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/quotations/{r.json()['id']}"
    got: dict[str, Any] = r.json()
    return got


def field_of(r: httpx.Response) -> str:
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
    name: str = r.json()["errors"][0]["field"]
    return name


async def test_draft_a_quotation_with_prices_from_the_lists_and_its_event(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep, name=f"华东制造 {uuid.uuid4().hex[:6]}")
    listed = await new_product(client, team.admin, "1280.5")
    free = await new_product(client, team.admin, None)
    lines = [
        {"product_id": listed["id"], "quantity": "3", "discount_percent": "12.5"},
        {"product_id": free["id"], "quantity": "1.25", "unit_price": "99.99"},
    ]
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        made = await draft(client, team.rep, body(customer, lines, tier=listed["tier"].lower(), notes=" 含安装 "))
        (got,) = await events.wait_for(subject=made["id"], type=sev.QUOTATION_CREATED.name)
    year = datetime.now().year
    assert re.fullmatch(rf"Q-{year}-\d{{6}}", made["number"]), made["number"]
    assert made["revision"] == 1 and made["status"] == "draft" and made["owner_id"] == team.rep.id
    assert made["customer_name"] == customer.snapshot.name and made["tier"] == listed["tier"]
    first, second = made["lines"]
    assert (first["unit_price"], first["gross"], first["discount"], first["amount"]) == (
        "1280.50",
        "3841.50",
        "480.19",
        "3361.31",
    )
    assert (second["unit_price"], second["amount"], second["sku"]) == ("99.99", "124.99", free["sku"])
    assert (made["subtotal"], made["discount_total"], made["total"]) == ("3966.49", "480.19", "3486.30")
    assert made["notes"] == "含安装" and made["needs_approval"] is False
    assert got.event["data"]["quotation"]["number"] == made["number"] and got.event["aggregateversion"] == 1
    r = await client.get(f"/v1/quotations/{made['id']}", headers=team.rep.headers)
    assert r.status_code == 200 and r.json() == made and r.headers["etag"] == '"1"'


async def test_bad_drafts_are_422_naming_the_field_and_take_no_number(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep)
    gone = await fed_customer(sales_app, feed, team.rep)
    await feed.deleted(gone)
    await eventually(
        lambda: sales_app.state.kit.db["customers"].find_one({"_id": gone.id, "status": "deleted"}), timeout=30
    )
    product = await new_product(client, team.admin, None)
    retired = await new_product(client, team.admin, "10")
    r = await client.post(f"/v1/products/{retired['id']}/deactivate", headers=team.admin.headers)
    assert r.status_code == 200, r.text
    ok = {"product_id": product["id"], "quantity": "1", "unit_price": "10"}
    before = await draft(client, team.rep, body(customer, [ok]))
    past = (date.today() - timedelta(days=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        (body(customer, [ok], customer_id=str(uuid.uuid4())), "customer_id"),
        (body(gone, [ok]), "customer_id"),
        (body(customer, [ok, {**ok, "product_id": str(uuid.uuid4())}]), "lines[1].product_id"),
        (body(customer, [{**ok, "product_id": retired["id"]}]), "lines[0].product_id"),
        (body(customer, [{"product_id": product["id"], "quantity": "2"}]), "lines[0].unit_price"),
        (body(customer, [ok, {**ok, "unit_price": "1.005"}]), "lines[1].unit_price"),
        (body(customer, [ok], valid_until=past), "valid_until"),
        (body(customer, [ok], currency="XYZ"), "currency"),
    ]
    for payload, field in cases:
        r = await client.post("/v1/quotations", json=payload, headers=team.rep.headers)
        assert field_of(r) == field, (field, r.text)
    # pydantic's own checks name the field too (quantity, discount, no lines)
    for bad, field in (({**ok, "quantity": "0"}, "quantity"), ({**ok, "discount_percent": "101"}, "discount_percent")):
        r = await client.post("/v1/quotations", json=body(customer, [ok, bad]), headers=team.rep.headers)
        assert field_of(r) == f"lines[1].{field}", r.text
    r = await client.post("/v1/quotations", json=body(customer, []), headers=team.rep.headers)
    assert r.status_code == 422, r.text
    after = await draft(client, team.rep, body(customer, [ok]))
    assert int(after["number"].rsplit("-", 1)[1]) == int(before["number"].rsplit("-", 1)[1]) + 1


async def test_patch_only_a_draft_with_if_match(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep)
    product = await new_product(client, team.admin, None)
    made = await draft(
        client, team.rep, body(customer, [{"product_id": product["id"], "quantity": "1", "unit_price": "10"}])
    )
    url = f"/v1/quotations/{made['id']}"
    change = {"lines": [{"product_id": product["id"], "quantity": "4", "unit_price": "10", "discount_percent": "5"}]}
    assert (await client.patch(url, json=change, headers=team.rep.headers)).status_code == 428
    assert (await client.patch(url, json=change, headers=team.rep.match('"7"'))).status_code == 412
    r = await client.patch(url, json={**change, "notes": "改过"}, headers=team.rep.match('"1"'))
    assert r.status_code == 200 and r.headers["etag"] == '"2"', r.text
    assert r.json()["total"] == "38.00" and r.json()["notes"] == "改过" and r.json()["revision"] == 1
    r = await client.post(f"{url}/send", headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "sent", r.text
    r = await client.patch(url, json={"notes": "x"}, headers=team.rep.match('"3"'))
    assert r.status_code == 409 and r.json()["type"] == "urn:crm:problem:quotation-status", r.text


async def test_revisions_keep_the_number_and_the_previous_versions(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep)
    product = await new_product(client, team.admin, None)
    line = {"product_id": product["id"], "quantity": "2", "unit_price": "100"}
    made = await draft(client, team.rep, body(customer, [line]))
    url = f"/v1/quotations/{made['id']}"
    r = await client.post(f"{url}/revise", headers=team.rep.headers)
    assert r.status_code == 409, r.text  # a draft is changed, not revised
    assert (await client.post(f"{url}/send", headers=team.rep.headers)).status_code == 200
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await client.post(
            f"{url}/revise", json={"lines": [{**line, "unit_price": "90"}]}, headers=team.rep.match('"2"')
        )
        assert r.status_code == 200, r.text
        await events.wait_for(subject=made["id"], type=sev.QUOTATION_REVISED.name)
    revised = r.json()
    assert revised["number"] == made["number"] and revised["revision"] == 2 and revised["status"] == "draft"
    assert revised["total"] == "180.00" and revised["sent_at"] is None
    r = await client.get(f"{url}/versions", headers=team.rep.headers)
    assert r.status_code == 200, r.text
    first, second = r.json()["items"]
    assert (first["revision"], first["status"], first["total"], first["current"]) == (1, "sent", "200.00", False)
    assert (second["revision"], second["total"], second["current"]) == (2, "180.00", True)


async def test_a_discount_above_the_threshold_needs_another_managers_approval(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep)
    product = await new_product(client, team.admin, None)
    line = {"product_id": product["id"], "quantity": "1", "unit_price": "100", "discount_percent": "20"}
    made = await draft(client, team.rep, body(customer, [line]))
    url = f"/v1/quotations/{made['id']}"
    assert made["needs_approval"] is True
    r = await client.post(f"{url}/send", headers=team.rep.headers)
    assert r.status_code == 409 and r.json()["reason"] == "approval-required", r.text
    assert (await client.post(f"{url}/approve", headers=team.manager.headers)).status_code == 409  # not submitted
    r = await client.post(f"{url}/submit", headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "pending_approval", r.text
    r = await client.post(f"{url}/approve", headers=team.rep.headers)
    assert r.status_code == 403 and "quotations:approve" in r.text, r.text  # a rep may not approve
    r = await client.post(f"{url}/reject", json={}, headers=team.manager.headers)
    assert field_of(r) == "comment"
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await client.post(f"{url}/approve", json={"comment": "同意"}, headers=team.manager.headers)
        assert r.status_code == 200 and r.json()["status"] == "approved", r.text
        (got,) = await events.wait_for(subject=made["id"], type=sev.QUOTATION_APPROVED.name)
    assert got.event["data"]["comment"] == "同意" and r.json()["approval"]["by"] == team.manager.id
    r = await client.post(f"{url}/send", headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "sent", r.text
    r = await client.post(f"{url}/accept", json={"comment": "签了"}, headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    assert (await client.post(f"{url}/revise", headers=team.rep.headers)).status_code == 409  # final

    # A manager's own quotation: another manager (or an admin) decides; approving it oneself is 403.
    own_customer = await fed_customer(sales_app, feed, team.manager)
    own = await draft(client, team.manager, body(own_customer, [line]))
    own_url = f"/v1/quotations/{own['id']}"
    assert (await client.post(f"{own_url}/submit", headers=team.manager.headers)).status_code == 200
    r = await client.post(f"{own_url}/approve", headers=team.manager.headers)
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM), r.text
    r = await client.post(f"{own_url}/reject", json={"comment": "折扣太高"}, headers=team.admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    r = await client.post(f"{own_url}/decline", headers=team.manager.headers)
    assert r.status_code == 409, r.text


async def test_below_the_threshold_send_then_the_customer_declines(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep)
    product = await new_product(client, team.admin, None)
    line = {"product_id": product["id"], "quantity": "1", "unit_price": "100", "discount_percent": "15"}
    made = await draft(client, team.rep, body(customer, [line]))
    url = f"/v1/quotations/{made['id']}"
    r = await client.post(f"{url}/submit", headers=team.rep.headers)
    assert r.status_code == 409 and r.json()["reason"] == "approval-not-needed", r.text
    assert (await client.post(f"{url}/send", headers=team.rep.headers)).status_code == 200
    r = await client.post(f"{url}/decline", json={"comment": "太贵"}, headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "declined" and r.json()["answer"]["comment"] == "太贵"


async def test_who_sees_a_quotation(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep)
    product = await new_product(client, team.admin, None)
    made = await draft(
        client, team.rep, body(customer, [{"product_id": product["id"], "quantity": "1", "unit_price": "1"}])
    )
    url = f"/v1/quotations/{made['id']}"
    assert (await client.get(url, headers=team.manager.headers)).status_code == 200  # the department's manager
    assert (await client.get(url, headers=team.rep2.headers)).status_code == 404  # another department's rep
    assert (await client.get(f"{url}.pdf", headers=team.rep2.headers)).status_code == 404
    # and someone else's customer is not one to quote for
    line = {"product_id": product["id"], "quantity": "1", "unit_price": "1"}
    r = await client.post("/v1/quotations", json=body(customer, [line]), headers=team.rep2.headers)
    assert field_of(r) == "customer_id"
    r = await client.post(f"{url}/send", headers=team.rep2.headers)
    assert r.status_code == 404, r.text
    integrator = auth(unique("int"), ["integrator"], "/")
    assert (await client.get(url, headers=integrator)).status_code == 403


def pdf_streams(content: bytes) -> str:
    """The PDF's content streams, decoded (reportlab writes them ASCII85 + Flate encoded): the
    number and the amounts are Helvetica text, so they are there as they are written."""
    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", content, re.S):
        head, data = content[max(0, match.start() - 200) : match.start()], match.group(1).strip()
        if b"ASCII85Decode" in head:
            data = base64.a85decode(data.removesuffix(b"~>"), ignorechars=b" \t\n\r\x0b")
        if b"FlateDecode" in head:
            data = zlib.decompress(data)
        out.append(data.decode("latin-1"))
    return "\n".join(out)


def pdf_text(content: bytes) -> str:
    """The PDF's text: through pypdf when the venv has it (it is no dependency), else the streams."""
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - depends on the venv
        return pdf_streams(content)
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)


async def test_the_pdf_carries_the_number_and_the_total(
    client: httpx.AsyncClient, sales_app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(sales_app, feed, team.rep, name=f"上海客户 {uuid.uuid4().hex[:4]}")
    product = await new_product(client, team.admin, None)
    line = {"product_id": product["id"], "quantity": "2", "unit_price": "1234.5"}
    made = await draft(client, team.rep, body(customer, [line], notes="含三年维保"))
    for lang in ("zh-CN", "en"):
        r = await client.get(f"/v1/quotations/{made['id']}.pdf", params={"lang": lang}, headers=team.rep.headers)
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf", r.text[:200]
        assert r.content.startswith(b"%PDF")
        for text in (pdf_text(r.content), pdf_streams(r.content)):
            assert made["number"] in text and "2469.00" in text and product["sku"] in text, text[:500]
    r = await client.get(f"/v1/quotations/{made['id']}.pdf", params={"lang": "fr"}, headers=team.rep.headers)
    assert r.status_code == 422, r.text


# --- a service of its own: a fresh year counter, and a clock that moves -----------------------------


class OffsetClock:
    def __init__(self) -> None:
        self._system = SystemClock()
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self._system.now() + self.offset


@pytest.fixture(scope="module")
def own_clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
async def own_app(backend: Backend, own_clock: OffsetClock) -> AsyncIterator[FastAPI]:
    app = create_app(SalesSettings(**service_settings(backend, "sales")), own_clock)
    async with running(app, "http://sales-own.test"):
        yield app


@pytest.fixture(scope="module")
async def own_client(own_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=own_app), base_url="http://sales-own.test") as c:
        yield c


async def test_fifty_concurrent_drafts_are_numbered_1_to_50_without_gaps(
    own_client: httpx.AsyncClient, own_app: FastAPI, own_clock: OffsetClock, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(own_app, feed, team.rep)
    product = await new_product(own_client, team.admin, None)
    line = {"product_id": product["id"], "quantity": "1", "unit_price": "10"}
    year = own_clock.now().year
    counter = await own_app.state.kit.db["counters"].find_one({"_id": f"quotation:{year}"})
    start = int((counter or {}).get("value", 0))  # 0: this service's database is new
    answers = await asyncio.gather(
        *(own_client.post("/v1/quotations", json=body(customer, [line]), headers=team.rep.headers) for _ in range(50))
    )
    assert all(r.status_code == 201 for r in answers), [r.text for r in answers if r.status_code != 201][:3]
    numbers = [f"Q-{year}-{n:06d}" for n in range(start + 1, start + 51)]
    assert sorted(r.json()["number"] for r in answers) == numbers
    assert len({r.json()["id"] for r in answers}) == 50


async def test_a_quotation_past_valid_until_is_expired_and_moves_no_further(
    own_client: httpx.AsyncClient, own_app: FastAPI, own_clock: OffsetClock, feed: CustomerFeed, team: Team
) -> None:
    customer = await fed_customer(own_app, feed, team.rep)
    product = await new_product(own_client, team.admin, None)
    line = {"product_id": product["id"], "quantity": "1", "unit_price": "10"}
    until = own_clock.now().date() + timedelta(days=3)
    made = await draft(own_client, team.rep, body(customer, [line], valid_until=until.isoformat()))
    url = f"/v1/quotations/{made['id']}"
    assert (await own_client.post(f"{url}/send", headers=team.rep.headers)).status_code == 200
    own_clock.offset += timedelta(days=4)  # time only moves forward (the relay runs on this clock too)
    r = await own_client.get(url, headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "expired", r.text
    r = await own_client.post(f"{url}/accept", headers=team.rep.headers)
    assert r.status_code == 409 and r.json()["reason"] == "expired" and "valid_until" in r.json()["detail"]
    r = await own_client.post(f"{url}/revise", headers=team.rep.headers)
    assert field_of(r) == "valid_until"  # an expired one is revised with a new date
    later = (own_clock.now().date() + timedelta(days=10)).isoformat()
    r = await own_client.post(f"{url}/revise", json={"valid_until": later}, headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "draft" and r.json()["revision"] == 2, r.text
    versions = (await own_client.get(f"{url}/versions", headers=team.rep.headers)).json()["items"]
    assert [v["status"] for v in versions] == ["sent", "draft"]


async def test_an_insert_that_fails_after_the_number_is_taken_is_retried_with_it(
    own_client: httpx.AsyncClient, own_app: FastAPI, feed: CustomerFeed, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's answer is lost once after the write (the insert did happen), once before it (it
    did not): either way the draft is stored once, under the number it took, and the next draft
    takes the next number."""
    customer = await fed_customer(own_app, feed, team.rep)
    product = await new_product(own_client, team.admin, None)
    payload = body(customer, [{"product_id": product["id"], "quantity": "1", "unit_price": "10"}])
    store = own_app.state.quotations.repo.store
    real_insert = store.insert

    def flaky_insert(calls: list[str], lost_after_write: bool) -> Any:
        async def insert(state: dict[str, Any], events: Any) -> Any:
            calls.append(state["number"])
            if len(calls) == 1:
                if lost_after_write:
                    await real_insert(state, events)
                raise AutoReconnect("connection lost")
            return await real_insert(state, events)

        return insert

    for lost_after_write in (True, False):
        calls: list[str] = []
        flaky = flaky_insert(calls, lost_after_write)
        monkeypatch.setattr(store, "insert", flaky)
        made = await draft(own_client, team.rep, payload)
        monkeypatch.setattr(store, "insert", real_insert)
        assert calls == [made["number"], made["number"]]  # the retry kept the number
        assert await own_app.state.kit.db["quotations"].count_documents({"number": made["number"]}) == 1
        following = await draft(own_client, team.rep, payload)
        assert parse_number(following["number"])[1] == parse_number(made["number"])[1] + 1
