"""Quotations follow their customers (application/customer_events.py), fed as in production by
customers events on crm.customers.v1: a merge moves the merged-away customer's quotations to the
survivor (a new version and crm.quotation.updated each; a redelivered merge writes nothing); a
deleted customer's quotations stay readable but change no more (409 customer-deleted) and it takes
no new one (422 customer_id) until it is restored."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
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
        self.dept = f"/{unique('qc')}"
        self.headers = auth(self.id, ["rep"], department_path=self.dept)


async def in_copy(app: FastAPI, customer: FedCustomer) -> None:
    copies = app.state.kit.db["customers"]
    await eventually(
        lambda: copies.find_one({"_id": customer.id, "source_version": {"$gte": customer.version}}),
        timeout=30,
        message=f"customer {customer.id} at version {customer.version} in the read copy",
    )


async def draft(client: httpx.AsyncClient, rep: Rep, customer: FedCustomer) -> dict[str, Any]:
    admin = auth(unique("admin"), ["admin"], department_path="/")
    body = {"sku": f"qc-{uuid.uuid4().hex[:10]}", "name": "合并测试产品", "unit": "套"}
    r = await client.post("/v1/products", json=body, headers=admin)
    assert r.status_code == 201, r.text
    line = {"product_id": r.json()["id"], "quantity": "1", "unit_price": "10"}
    until = (date.today() + timedelta(days=30)).isoformat()
    payload = {"customer_id": customer.id, "currency": "CNY", "valid_until": until, "lines": [line]}
    r = await client.post("/v1/quotations", json=payload, headers=rep.headers)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


async def test_a_merge_moves_the_quotations_to_the_survivor_once(
    sales_app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    rep = Rep()
    survivor = await feed.created(owner_id=rep.id, department_path=rep.dept)
    duplicate = await feed.created(owner_id=rep.id, department_path=rep.dept)
    await in_copy(sales_app, survivor)
    await in_copy(sales_app, duplicate)
    moved = [await draft(client, rep, duplicate), await draft(client, rep, duplicate)]
    stays = await draft(client, rep, survivor)

    name_at_merge = survivor.snapshot.name
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        away, merged = await feed.merged(survivor, duplicate)
        for q in moved:
            [got] = await events.wait_for(subject=q["id"], type=sev.QUOTATION_UPDATED.name, timeout=30)
            data = got.event["data"]
            assert data["quotation"]["customer_id"] == survivor.id
            assert {"field": "customer_id", "old": duplicate.id, "new": survivor.id} in data["changes"]
        # redelivered (as after a consumer restart), then a later event of each customer: once
        # those are in the copy, the repeats were handled before them (same key, same partition)
        await feed.publish(away)
        await feed.publish(merged)
        await feed.updated(survivor, name=f"幸存 {unique('c')}")
        await feed.updated(duplicate)
        await in_copy(sales_app, survivor)
        await in_copy(sales_app, duplicate)
        assert all(len(events.matching(subject=q["id"], type=sev.QUOTATION_UPDATED.name)) == 1 for q in moved)

    for q in moved:
        r = await client.get(f"/v1/quotations/{q['id']}", headers=rep.headers)
        assert r.status_code == 200 and r.json()["customer_id"] == survivor.id, r.text
        assert r.json()["customer_name"] == name_at_merge
        assert r.json()["version"] == 2  # moved once: the redelivery wrote nothing
    r = await client.get(f"/v1/quotations/{stays['id']}", headers=rep.headers)
    assert r.json()["version"] == 1
    listed = await client.get("/v1/quotations", params={"customer_id": survivor.id}, headers=rep.headers)
    assert {i["id"] for i in listed.json()["items"]} == {stays["id"], *(q["id"] for q in moved)}
    gone = await client.get("/v1/quotations", params={"customer_id": duplicate.id}, headers=rep.headers)
    assert gone.json()["items"] == []
    # the moved quotations change as any other (the survivor is active)
    r = await client.post(f"/v1/quotations/{moved[0]['id']}/send", headers=rep.headers)
    assert r.status_code == 200, r.text


async def test_a_deleted_customers_quotations_stay_readable_and_change_no_more_until_restored(
    sales_app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    rep = Rep()
    customer = await feed.created(owner_id=rep.id, department_path=rep.dept)
    await in_copy(sales_app, customer)
    made = await draft(client, rep, customer)
    url = f"/v1/quotations/{made['id']}"

    await feed.deleted(customer)
    await in_copy(sales_app, customer)
    r = await client.get(url, headers=rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "draft", r.text
    listed = await client.get("/v1/quotations", params={"customer_id": customer.id}, headers=rep.headers)
    assert [i["id"] for i in listed.json()["items"]] == [made["id"]]
    for attempt in (
        client.post(f"{url}/send", headers=rep.headers),
        client.patch(url, json={"notes": "改"}, headers={**rep.headers, "If-Match": '"1"'}),
    ):
        r = await attempt
        assert r.status_code == 409 and r.json()["reason"] == "customer-deleted", r.text
        assert customer.id in r.json()["detail"] and "recycle bin" in r.json()["detail"]
    r = await client.post(
        "/v1/quotations",
        json={
            "customer_id": customer.id,
            "currency": "CNY",
            "valid_until": (date.today() + timedelta(days=3)).isoformat(),
            "lines": [{"product_id": made["lines"][0]["product_id"], "quantity": "1", "unit_price": "10"}],
        },
        headers=rep.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_id", r.text
    assert (await client.get(url, headers=rep.headers)).json()["version"] == 1  # nothing was written

    await feed.restored(customer)
    await in_copy(sales_app, customer)
    r = await client.post(f"{url}/send", headers=rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "sent", r.text
