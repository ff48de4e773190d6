"""Tickets follow their customers (application/customer_events.py), fed as in production by
customers events on crm.customers.v1: a merge moves the merged-away customer's tickets to the
survivor, whatever their status (a new version and crm.ticket.updated each; a redelivered merge
writes nothing); a deleted customer's tickets stay readable and their work goes on (reply,
resolve, close: a ticket in hand is finished), but it takes no new ticket (422 customer_id)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.contracts import sales as sev
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.fixtures import auth, collecting, eventually, unique


@pytest.fixture
def feed(producer: AIOKafkaProducer) -> CustomerFeed:
    return CustomerFeed(producer)


class Rep:
    def __init__(self) -> None:
        self.id = unique("rep")
        self.dept = f"/{unique('tc')}"
        self.headers = auth(self.id, ["rep"], department_path=self.dept)


async def in_copy(app: FastAPI, customer: FedCustomer) -> None:
    copies = app.state.kit.db["customers"]
    await eventually(
        lambda: copies.find_one({"_id": customer.id, "source_version": {"$gte": customer.version}}),
        timeout=30,
        message=f"customer {customer.id} at version {customer.version} in the read copy",
    )


async def opened(client: httpx.AsyncClient, rep: Rep, customer: FedCustomer) -> dict[str, Any]:
    payload = {"customer_id": customer.id, "category": "fault", "subject": "合并测试"}
    r = await client.post("/v1/tickets", json=payload, headers=rep.headers)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def test_a_merge_moves_the_tickets_to_the_survivor_once(
    sales_app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    rep = Rep()
    survivor = await feed.created(owner_id=rep.id, department_path=rep.dept)
    duplicate = await feed.created(owner_id=rep.id, department_path=rep.dept)
    await in_copy(sales_app, survivor)
    await in_copy(sales_app, duplicate)
    moved = [await opened(client, rep, duplicate), await opened(client, rep, duplicate)]
    url = f"/v1/tickets/{moved[1]['id']}"
    r = await client.post(f"{url}/resolve", json={"resolution": "已修好"}, headers=rep.headers)
    r = await client.post(f"{url}/close", json={"no_visit_reason": "联系不上"}, headers=rep.headers)
    assert r.status_code == 200 and r.json()["version"] == 3, r.text
    stays = await opened(client, rep, survivor)

    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        away, merged = await feed.merged(survivor, duplicate)
        for t in moved:
            [got] = await events.wait_for(subject=t["id"], type=sev.TICKET_UPDATED.name, timeout=30)
            data = got.event["data"]
            assert data["ticket"]["customer_id"] == survivor.id
            assert {"field": "customer_id", "old": duplicate.id, "new": survivor.id} in data["changes"]
        # redelivered, then a later event of each customer: once those are in the copy, the
        # repeats were handled before them (same key, same partition)
        await feed.publish(away)
        await feed.publish(merged)
        await feed.updated(survivor)
        await feed.updated(duplicate)
        await in_copy(sales_app, survivor)
        await in_copy(sales_app, duplicate)
        assert all(len(events.matching(subject=t["id"], type=sev.TICKET_UPDATED.name)) == 1 for t in moved)

    got_open = (await client.get(f"/v1/tickets/{moved[0]['id']}", headers=rep.headers)).json()
    assert got_open["customer_id"] == survivor.id and got_open["version"] == 2
    assert got_open["customer_name"] == survivor.snapshot.name
    got_closed = (await client.get(url, headers=rep.headers)).json()
    assert got_closed["customer_id"] == survivor.id and got_closed["status"] == "closed" and got_closed["version"] == 4
    assert (await client.get(f"/v1/tickets/{stays['id']}", headers=rep.headers)).json()["version"] == 1
    listed = await client.get(f"/v1/customers/{survivor.id}/tickets", headers=rep.headers)
    assert {i["id"] for i in listed.json()["items"]} == {stays["id"], *(t["id"] for t in moved)}
    gone = await client.get("/v1/tickets", params={"customer_id": duplicate.id}, headers=rep.headers)
    assert gone.json()["items"] == []
    r = await client.post(
        "/v1/tickets", json={"customer_id": duplicate.id, "category": "fault", "subject": "x"}, headers=rep.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("customer_id")


async def test_a_deleted_customers_tickets_stay_readable_and_can_still_be_finished(
    sales_app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    rep = Rep()
    customer = await feed.created(owner_id=rep.id, department_path=rep.dept)
    await in_copy(sales_app, customer)
    made = await opened(client, rep, customer)
    url = f"/v1/tickets/{made['id']}"

    await feed.deleted(customer)
    await in_copy(sales_app, customer)
    r = await client.get(url, headers=rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "open", r.text
    listed = await client.get(f"/v1/customers/{customer.id}/tickets", headers=rep.headers)
    assert [i["id"] for i in listed.json()["items"]] == [made["id"]]
    payload = {"customer_id": customer.id, "category": "fault", "subject": "新工单"}
    r = await client.post("/v1/tickets", json=payload, headers=rep.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("customer_id")
    assert "recycle bin" in r.text
    for action, body in (
        ("replies", {"body": "客户已删除，仍然跟进"}),
        ("resolve", {"resolution": "已处理"}),
        ("close", {"no_visit_reason": "客户已删除"}),
    ):
        r = await client.post(f"{url}/{action}", json=body, headers=rep.headers)
        assert r.status_code == 200, (action, r.text)
    assert r.json()["status"] == "closed" and r.json()["customer_id"] == customer.id

    await feed.purged(customer)
    await eventually(lambda: _gone_or_purged(sales_app, customer), timeout=30, message="purge in the copy")
    r = await client.get(url, headers=rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "closed"


async def _gone_or_purged(app: FastAPI, customer: FedCustomer) -> bool:
    copy = await app.state.kit.db["customers"].find_one({"_id": customer.id})
    return copy is None or copy.get("status") == "purged"
