"""Contracts follow their customers' deletes, purges and restores (merges: test_contracts.py). A
contract of a customer in the recycle bin (or purged) stays readable and listed; money that really
came in or goes back is still recorded (payments, refunds); what changes or advances the agreement
(PATCH, plan, submit, approve, reject, sign, start) is 409 ``customer-deleted``; a new contract for
the customer is 422 at ``customer_id``. A restore lifts it all; a purge never does. Customers reach
the service through its own consumer handlers (``deliver``)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.plans import KeepingProducer, deliver

TODAY = date.today().isoformat()  # UTC's date: never after the business day (Shanghai, UTC+8)


class People:
    def __init__(self) -> None:
        self.dept = f"/{unique('cc')}"
        self.rep_id = unique("rep")
        self.rep = auth(self.rep_id, ["rep"], department_path=self.dept)
        self.manager = auth(unique("mgr"), ["manager"], department_path=self.dept)


async def send(app: FastAPI, feed: CustomerFeed) -> None:
    assert await deliver(app, feed.published[-1]) >= 1


async def post(client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return await client.post(url, json=body, headers=headers)


def contract_body(customer_id: str) -> dict[str, Any]:
    return {"title": f"合同 {uuid.uuid4().hex[:6]}", "customer_id": customer_id, "amount": "1000", "currency": "CNY"}


async def drafted(client: httpx.AsyncClient, who: People, customer: FedCustomer) -> dict[str, Any]:
    r = await post(client, "/v1/contracts", contract_body(customer.id), who.rep)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def signed_with_plan(client: httpx.AsyncClient, who: People, customer: FedCustomer) -> dict[str, Any]:
    url = f"/v1/contracts/{(await drafted(client, who, customer))['id']}"
    for headers, action, body in (
        (who.rep, "submit", {}),
        (who.manager, "approve", {}),
        (who.rep, "sign", {"signed_on": TODAY, "signed_document": "DOC"}),
    ):
        r = await post(client, f"{url}/{action}", body, headers)
        assert r.status_code == 200, r.text
    plan = {"instalments": [{"due_date": TODAY, "amount": "400"}, {"due_date": TODAY, "amount": "600"}]}
    r = await client.put(f"{url}/plan", json=plan, headers={**who.rep, "If-Match": f'"{r.json()["version"]}"'})
    assert r.status_code == 200, r.text
    made: dict[str, Any] = r.json()
    return made


def refused(r: httpx.Response, action: str, customer_id: str) -> None:
    assert r.status_code == 409, r.text
    problem = r.json()
    assert (problem["reason"], problem["action"], problem["customer_id"]) == ("customer-deleted", action, customer_id)


async def test_a_deleted_customers_contracts_stay_readable_take_money_and_change_no_more_until_restored(
    client: httpx.AsyncClient, sales_app: FastAPI
) -> None:
    who = People()
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=who.rep_id, department_path=who.dept, name=f"回收站客户 {unique('c')}")
    await send(sales_app, feed)
    signed = await signed_with_plan(client, who, customer)
    draft = await drafted(client, who, customer)
    url, draft_url = f"/v1/contracts/{signed['id']}", f"/v1/contracts/{draft['id']}"

    await feed.deleted(customer)
    await send(sales_app, feed)
    r = await client.get(url, headers=who.rep)
    assert r.status_code == 200 and r.json()["customer_id"] == customer.id, r.text
    r = await client.get("/v1/contracts", params={"customer_id": customer.id}, headers=who.rep)
    assert {c["id"] for c in r.json()["items"]} == {signed["id"], draft["id"]}, r.text
    # money that came in, and money that goes back, is still recorded
    r = await post(client, f"{url}/payments", {"amount": "500", "received_on": TODAY, "method": "cash"}, who.rep)
    assert r.status_code == 201, r.text
    payment = r.json()["payments"][-1]["id"]
    r = await post(client, f"{url}/refunds", {"payment_id": payment, "amount": "50", "reason": "多收"}, who.rep)
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    # a new contract for the customer: 422 at customer_id; nothing that changes the agreement
    r = await post(client, "/v1/contracts", contract_body(customer.id), who.rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_id", r.text
    assert "recycle bin" in r.json()["errors"][0]["reason"]
    refused(
        await client.patch(draft_url, json={"notes": "x"}, headers={**who.rep, "If-Match": '"1"'}),
        "update",
        customer.id,
    )
    refused(await post(client, f"{draft_url}/submit", {}, who.rep), "submit", customer.id)
    refused(await post(client, f"{url}/start", {}, who.rep), "start", customer.id)
    plan = {"instalments": [{"id": i["id"], "due_date": TODAY, "amount": i["amount"]} for i in signed["plan"]]}
    r = await client.put(f"{url}/plan", json=plan, headers={**who.rep, "If-Match": f'"{version}"'})
    refused(r, "plan", customer.id)
    assert (await client.get(url, headers=who.rep)).json()["version"] == version  # nothing written
    assert (await client.get(draft_url, headers=who.rep)).json()["version"] == 1

    await feed.restored(customer)
    await send(sales_app, feed)
    r = await post(client, f"{draft_url}/submit", {}, who.rep)
    assert r.status_code == 200 and r.json()["status"] == "under_approval", r.text
    r = await post(client, f"{url}/start", {}, who.rep)
    assert r.status_code == 200 and r.json()["status"] == "executing", r.text
    r = await post(client, "/v1/contracts", contract_body(customer.id), who.rep)
    assert r.status_code == 201, r.text


async def test_a_purged_customers_contract_still_takes_payments_and_may_be_terminated(
    client: httpx.AsyncClient, sales_app: FastAPI
) -> None:
    who = People()
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=who.rep_id, department_path=who.dept, name=f"清除客户 {unique('c')}")
    await send(sales_app, feed)
    signed = await signed_with_plan(client, who, customer)
    url = f"/v1/contracts/{signed['id']}"
    await feed.deleted(customer)
    await send(sales_app, feed)
    await feed.purged(customer)
    await send(sales_app, feed)
    r = await post(client, f"{url}/payments", {"amount": "1000", "received_on": TODAY, "method": "online"}, who.rep)
    assert r.status_code == 201 and r.json()["outstanding"] == "0.00", r.text
    refused(await post(client, f"{url}/start", {}, who.rep), "start", customer.id)
    r = await post(client, "/v1/contracts", contract_body(customer.id), who.rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_id", r.text
    r = await post(client, f"{url}/terminate", {"reason": "客户已清除"}, who.rep)
    assert r.status_code == 200 and r.json()["status"] == "terminated", r.text
    assert (await client.get(url, headers=who.rep)).status_code == 200
