"""A contract's receivables over HTTP against the real store and broker: the payment plan (sums,
dates, If-Match, instalments that received money), payments (allocation, partial, over-payment as
credit, 10 at once all counted), refunds, their events, and nobody else's contract (404)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.contracts import sales as sev
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.fixtures import auth, collecting, unique
from crm_platform.testing.plans import KeepingProducer, deliver

PROBLEM = "application/problem+json"
TODAY = date.today()


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


@pytest.fixture
def rep() -> User:
    return User(f"/{unique('r')}/sales")


async def signed_contract(client: httpx.AsyncClient, app: FastAPI, rep: User, amount: str) -> dict[str, Any]:
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=rep.id, department_path=rep.dept, name=f"回款客户 {uuid.uuid4().hex[:8]}")
    assert await deliver(app, feed.published[-1]) >= 1
    body = {"title": "回款合同", "customer_id": customer.id, "amount": amount, "currency": "CNY"}
    r = await client.post("/v1/contracts", json=body, headers=rep.headers)
    assert r.status_code == 201, r.text
    made = r.json()
    url = f"/v1/contracts/{made['id']}"
    approver = User("/", ["admin"], "admin")
    for user, action, payload in (
        (rep, "submit", {}),
        (approver, "approve", {}),
        (rep, "sign", {"signed_on": TODAY.isoformat(), "signed_document": "DOC-1"}),
    ):
        r = await client.post(f"{url}/{action}", json=payload, headers=user.headers)
        assert r.status_code == 200, r.text
    signed: dict[str, Any] = r.json()
    return signed


def plan(*items: tuple[int, str], ids: list[str | None] | None = None) -> dict[str, Any]:
    ids = ids or [None] * len(items)
    return {
        "instalments": [
            {"due_date": (TODAY + timedelta(days=d)).isoformat(), "amount": a, "note": f"第{n + 1}期", "id": i}
            for n, ((d, a), i) in enumerate(zip(items, ids, strict=True))
        ]
    }


def field_of(r: httpx.Response) -> str:
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
    name: str = r.json()["errors"][0]["field"]
    return name


async def put_plan(client: httpx.AsyncClient, rep: User, contract: dict[str, Any], body: Any) -> httpx.Response:
    return await client.put(
        f"/v1/contracts/{contract['id']}/plan", json=body, headers=rep.match(f'"{contract["version"]}"')
    )


async def test_the_plan_sums_to_the_amount_and_keeps_what_instalments_received(
    client: httpx.AsyncClient, sales_app: FastAPI, rep: User
) -> None:
    contract = await signed_contract(client, sales_app, rep, "100000")
    url = f"/v1/contracts/{contract['id']}/plan"
    r = await client.put(url, json=plan((30, "40000"), (60, "60000")), headers=rep.headers)
    assert r.status_code == 428, r.text
    r = await put_plan(client, rep, contract, plan((30, "40000"), (60, "50000")))
    assert field_of(r) == "instalments" and "10000.00 less" in r.json()["errors"][0]["reason"]
    r = await put_plan(client, rep, contract, plan((60, "40000"), (30, "60000")))
    assert field_of(r) == "instalments[1].due_date"
    r = await put_plan(client, rep, contract, plan((30, "40000"), (60, "-1")))
    assert field_of(r) == "instalments[1].amount"
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await put_plan(client, rep, contract, plan((30, "40000"), (60, "60000")))
        assert r.status_code == 200, r.text
        (got,) = await events.wait_for(subject=contract["id"], type=sev.CONTRACT_PLAN_SET.name)
    planned = r.json()
    assert [(i["amount"], i["status"], i["paid"]) for i in planned["plan"]] == [
        ("40000.00", "unpaid", "0.00"),
        ("60000.00", "unpaid", "0.00"),
    ]
    assert [i["amount"] for i in got.event["data"]["instalments"]] == ["40000.00", "60000.00"]
    r = await put_plan(client, rep, contract, plan((30, "100000")))
    assert r.status_code == 412, r.text
    first, second = (i["id"] for i in planned["plan"])
    r = await client.post(
        f"/v1/contracts/{contract['id']}/payments",
        json={"amount": "25000", "received_on": TODAY.isoformat(), "method": "bank_transfer"},
        headers=rep.headers,
    )
    assert r.status_code == 201, r.text
    paid = r.json()
    r = await put_plan(client, rep, paid, plan((30, "100000")))
    assert field_of(r) == "instalments" and first in r.json()["errors"][0]["reason"]
    r = await put_plan(client, rep, paid, plan((30, "20000"), (60, "80000"), ids=[first, second]))
    assert field_of(r) == "instalments[0].amount"
    r = await put_plan(client, rep, paid, plan((30, "25000"), (90, "75000"), ids=[first, None]))
    assert r.status_code == 200, r.text
    assert [(i["id"] == first, i["status"]) for i in r.json()["plan"]] == [(True, "paid"), (False, "unpaid")]


async def test_payments_partial_targeted_and_over_payment_as_credit_with_refunds(
    client: httpx.AsyncClient, sales_app: FastAPI, rep: User
) -> None:
    contract = await signed_contract(client, sales_app, rep, "1000")
    r = await client.post(
        f"/v1/contracts/{contract['id']}/payments",
        json={"amount": "10", "received_on": TODAY.isoformat(), "method": "cash"},
        headers=rep.headers,
    )
    assert r.status_code == 409 and r.json()["reason"] == "plan-required", r.text
    r = await put_plan(client, rep, contract, plan((-10, "400"), (30, "600")))
    assert r.status_code == 200, r.text
    assert [i["overdue"] for i in r.json()["plan"]] == [True, False]
    first, second = (i["id"] for i in r.json()["plan"])
    url = f"/v1/contracts/{contract['id']}"

    async def payment(**fields: Any) -> httpx.Response:
        body = {"received_on": TODAY.isoformat(), "method": "bank_transfer", **fields}
        return await client.post(f"{url}/payments", json=body, headers=rep.headers)

    tomorrow = (TODAY + timedelta(days=2)).isoformat()  # past Shanghai's date too (UTC+8, the business day)
    for bad, field in (
        ({"amount": "0"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": "1", "received_on": tomorrow}, "received_on"),
        ({"amount": "1", "method": "barter"}, "method"),
        ({"amount": "1", "instalment_id": "nope"}, "instalment_id"),
    ):
        assert field_of(await payment(**bad)) == field
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await payment(amount="300", instalment_id=second, reference="BANK-1")
        assert r.status_code == 201, r.text
        after = r.json()
        assert [(i["status"], i["paid"]) for i in after["plan"]] == [("unpaid", "0.00"), ("partially_paid", "300.00")]
        r = await payment(amount="900")  # 400 to the first, 300 to the second, 200 kept as credit
        body = r.json()
        assert (body["received"], body["outstanding"], body["credit"]) == ("1200.00", "0.00", "200.00"), r.text
        assert [i["status"] for i in body["plan"]] == ["paid", "paid"]
        big = body["payments"][-1]
        assert big["allocation"] == [
            {"instalment_id": first, "amount": "400.00"},
            {"instalment_id": second, "amount": "300.00"},
            {"instalment_id": None, "amount": "200.00"},
        ]
        r = await client.post(
            f"{url}/refunds", json={"payment_id": big["id"], "amount": "900.01", "reason": "多付"}, headers=rep.headers
        )
        assert field_of(r) == "amount"
        r = await client.post(
            f"{url}/refunds", json={"payment_id": big["id"], "amount": "250", "reason": "多付"}, headers=rep.headers
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["received"], body["outstanding"], body["credit"]) == ("950.00", "50.00", "0.00")
        assert body["refunds"][-1]["allocation"] == [
            {"instalment_id": None, "amount": "200.00"},
            {"instalment_id": second, "amount": "50.00"},
        ]
        assert body["payments"][-1]["refunded"] == "250.00"
        received = await events.wait_for(subject=contract["id"], type=sev.CONTRACT_PAYMENT_RECEIVED.name, count=2)
        (refunded,) = await events.wait_for(subject=contract["id"], type=sev.CONTRACT_PAYMENT_REFUNDED.name)
    data = received[-1].event["data"]
    assert (data["amount"], data["currency"], data["owner_id"], data["received_on"]) == (
        "900.00",
        "CNY",
        rep.id,
        TODAY.isoformat(),
    )
    assert data["allocation"][-1] == {"instalment_id": None, "amount": "200.00"}
    assert data["contract"]["credit"] == "200.00" and data["customer_id"] == contract["customer_id"]
    assert refunded.event["data"]["reason"] == "多付" and refunded.event["data"]["amount"] == "250.00"
    # its own day (the business day now), for the collection report
    assert refunded.event["data"]["refunded_on"] == sales_app.state.contracts.today().isoformat()


async def test_ten_payments_at_once_all_count(client: httpx.AsyncClient, sales_app: FastAPI, rep: User) -> None:
    contract = await signed_contract(client, sales_app, rep, "1000")
    r = await put_plan(client, rep, contract, plan((30, "500"), (60, "500")))
    assert r.status_code == 200, r.text
    body = {"amount": "123.45", "received_on": TODAY.isoformat(), "method": "online"}
    answers = await asyncio.gather(
        *(client.post(f"/v1/contracts/{contract['id']}/payments", json=body, headers=rep.headers) for _ in range(10))
    )
    assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers if a.status_code != 201]
    r = await client.get(f"/v1/contracts/{contract['id']}", headers=rep.headers)
    final = r.json()
    assert len(final["payments"]) == 10 and len({p["id"] for p in final["payments"]}) == 10
    assert (final["received"], final["outstanding"], final["credit"]) == ("1234.50", "0.00", "234.50")


async def test_someone_elses_contract_is_not_found_and_a_closed_plan_is_409(
    client: httpx.AsyncClient, sales_app: FastAPI, rep: User
) -> None:
    contract = await signed_contract(client, sales_app, rep, "1000")
    other = User(f"/{unique('x')}")
    r = await put_plan(client, other, contract, plan((30, "1000")))
    assert r.status_code == 404, r.text
    body = {"amount": "1", "received_on": TODAY.isoformat(), "method": "cash"}
    assert (
        await client.post(f"/v1/contracts/{contract['id']}/payments", json=body, headers=other.headers)
    ).status_code == 404
    r = await client.post(f"/v1/contracts/{contract['id']}/terminate", json={"reason": "客户取消"}, headers=rep.headers)
    assert r.status_code == 200, r.text
    r = await put_plan(client, rep, r.json(), plan((30, "1000")))
    assert r.status_code == 409, r.text


async def test_invoices_split_the_tax_never_exceed_the_payment_and_take_numbers_without_gaps(
    client: httpx.AsyncClient, sales_app: FastAPI, rep: User
) -> None:
    contract = await signed_contract(client, sales_app, rep, "3390")
    r = await put_plan(client, rep, contract, plan((30, "3390")))
    assert r.status_code == 200, r.text
    url = f"/v1/contracts/{contract['id']}"
    payments = []
    for amount in ("1130", "2260"):
        r = await client.post(
            f"{url}/payments",
            json={"amount": amount, "received_on": TODAY.isoformat(), "method": "bank_transfer"},
            headers=rep.headers,
        )
        assert r.status_code == 201, r.text
        payments.append(r.json()["payments"][-1]["id"])
    body = {
        "payment_id": payments[0],
        "tax_rate": "13",
        "title": "上海星辰科技有限公司",
        "buyer_tax_id": "91310000MA1FL2XQ7X",
    }
    for bad, field in (({"tax_rate": "113"}, "tax_rate"), ({"payment_id": "nope"}, "payment_id")):
        assert field_of(await client.post(f"{url}/invoices", json={**body, **bad}, headers=rep.headers)) == field
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        answers = await asyncio.gather(
            *(client.post(f"{url}/invoices", json=body, headers=rep.headers) for _ in range(5))
        )
        assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409], [a.text for a in answers]
        first = next(a for a in answers if a.status_code == 201).json()
        (got,) = await events.wait_for(subject=contract["id"], type=sev.CONTRACT_INVOICE_ISSUED.name)
    assert (first["amount"], first["net"], first["tax"], first["tax_rate"]) == ("1130.00", "1000.00", "130.00", "13")
    assert got.event["data"]["invoice"]["number"] == first["number"]
    r = await client.post(
        f"{url}/refunds", json={"payment_id": payments[1], "amount": "1130", "reason": "退款"}, headers=rep.headers
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"{url}/invoices", json={**body, "payment_id": payments[1]}, headers=rep.headers)
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["amount"] == "1130.00"  # what the payment holds after its refund
    year, seq = first["number"].rsplit("-", 2)[1:]
    assert second["number"] == f"INV-{year}-{int(seq) + 1:06d}"  # the refused ones took no number
    r = await client.get(f"{url}/invoices", headers=rep.headers)
    assert [i["number"] for i in r.json()["items"]] == [first["number"], second["number"]]
    other = User(f"/{unique('x')}")
    assert (await client.get(f"{url}/invoices", headers=other.headers)).status_code == 404


async def test_a_new_plan_with_room_takes_the_credit_in_the_same_write_and_says_so(
    client: httpx.AsyncClient, sales_app: FastAPI, rep: User
) -> None:
    contract = await signed_contract(client, sales_app, rep, "1000")
    r = await put_plan(client, rep, contract, plan((10, "400"), (40, "600")))
    assert r.status_code == 200, r.text
    first, second = (i["id"] for i in r.json()["plan"])
    url = f"/v1/contracts/{contract['id']}"

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(f"{url}/{path}", json=body, headers=rep.headers)
        assert r.status_code == 201, r.text
        got: dict[str, Any] = r.json()
        return got

    whole = await post("payments", {"amount": "1000", "received_on": TODAY.isoformat(), "method": "online"})
    extra = await post("payments", {"amount": "100", "received_on": TODAY.isoformat(), "method": "cash"})
    assert extra["credit"] == "100.00"
    body = await post("refunds", {"payment_id": whole["payments"][0]["id"], "amount": "200", "reason": "折让"})
    assert (body["outstanding"], body["credit"]) == ("200.00", "100.00")  # the second has room, credit idle
    # a third instalment is added (the second set down to what it holds): the credit goes to it
    new_plan = plan((10, "400"), (40, "400"), (70, "200"), ids=[first, second, None])
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await put_plan(client, rep, body, new_plan)
        assert r.status_code == 200, r.text
        plans = await events.wait_for(subject=contract["id"], type=sev.CONTRACT_PLAN_SET.name, count=2)
    got = plans[-1]  # the first plan's event too: the collector reads the topic from its start
    after = r.json()
    third = after["plan"][2]["id"]
    assert plans[0].event["data"]["credit_applied"] == []
    assert (after["received"], after["outstanding"], after["credit"]) == ("900.00", "100.00", "0.00")
    assert [(i["status"], i["paid"]) for i in after["plan"]] == [
        ("paid", "400.00"),
        ("paid", "400.00"),
        ("partially_paid", "100.00"),
    ]
    data = got.event["data"]
    assert data["credit_applied"] == [{"instalment_id": third, "amount": "100.00"}]
    assert data["contract"]["credit"] == "0.00" and data["instalments"][2]["paid"] == "100.00"
    # the payment that made the credit now holds the third instalment: its refund takes it back there
    body = await post("refunds", {"payment_id": extra["payments"][-1]["id"], "amount": "100", "reason": "退回"})
    assert body["refunds"][-1]["allocation"] == [{"instalment_id": third, "amount": "100.00"}]
    assert (body["received"], body["outstanding"], body["credit"]) == ("800.00", "200.00", "0.00")
