"""Overdue instalments against the real store and broker, time driven by a manual clock: an
instalment past its due date and not fully paid is reported once (``crm.contract.instalment_overdue``),
a paid one never, and two schedulers racing (two replicas) report each instalment once between them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import sales as sev
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.fixtures import auth, collecting, running, service_settings, unique
from crm_platform.testing.plans import KeepingProducer, deliver
from crm_sales.application.overdue import OverdueScheduler
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

START = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
TODAY = START.date()


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(scope="module")
async def app(backend: Backend, clock: ManualClock) -> AsyncIterator[FastAPI]:
    settings = SalesSettings(**service_settings(backend, "sales"), sales_overdue_scheduler_enabled=False)
    application = create_app(settings, clock)
    async with running(application, "http://sales.test"):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales.test") as c:
        yield c


async def contract_with_plan(
    client: httpx.AsyncClient, app: FastAPI, owner: str, headers: dict[str, str], *days: int
) -> dict[str, Any]:
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(
        owner_id=owner, department_path="/hq/overdue", name=f"逾期客户 {uuid.uuid4().hex[:6]}"
    )
    assert await deliver(app, feed.published[-1]) >= 1
    body = {"title": "逾期合同", "customer_id": customer.id, "amount": str(100 * len(days)), "currency": "CNY"}
    r = await client.post("/v1/contracts", json=body, headers=headers)
    assert r.status_code == 201, r.text
    url = f"/v1/contracts/{r.json()['id']}"
    admin = auth(unique("admin"), ["admin"], department_path="/")
    for who, action, payload in (
        (headers, "submit", {}),
        (admin, "approve", {}),
        (headers, "sign", {"signed_on": TODAY.isoformat(), "signed_document": "DOC"}),
    ):
        r = await client.post(f"{url}/{action}", json=payload, headers=who)
        assert r.status_code == 200, r.text
    instalments = [{"due_date": (TODAY + timedelta(days=d)).isoformat(), "amount": "100"} for d in days]
    r = await client.put(
        f"{url}/plan", json={"instalments": instalments}, headers={**headers, "If-Match": f'"{r.json()["version"]}"'}
    )
    assert r.status_code == 200, r.text
    planned: dict[str, Any] = r.json()
    return planned


async def test_an_overdue_instalment_is_reported_once_and_a_paid_one_never(
    client: httpx.AsyncClient, app: FastAPI, clock: ManualClock
) -> None:
    owner = unique("rep")
    headers = auth(owner, ["rep"], department_path="/hq/overdue")
    late = await contract_with_plan(client, app, owner, headers, 5, 10)
    paid = await contract_with_plan(client, app, owner, headers, 5)
    r = await client.post(
        f"/v1/contracts/{late['id']}/payments",
        json={"amount": "40", "received_on": TODAY.isoformat(), "method": "bank_transfer"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/contracts/{paid['id']}/payments",
        json={"amount": "100", "received_on": TODAY.isoformat(), "method": "cash"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    scheduler: OverdueScheduler = app.state.overdue_scheduler
    async with collecting(app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        assert await scheduler.tick() == 0
        clock.set(START + timedelta(days=5))
        assert await scheduler.tick() == 0  # due today is not yet overdue
        clock.set(START + timedelta(days=6))
        assert await scheduler.tick() == 1
        assert await scheduler.tick() == 0  # once
        (got,) = await events.wait_for(subject=late["id"], type=sev.CONTRACT_INSTALMENT_OVERDUE.name)
        clock.set(START + timedelta(days=12))
        other = OverdueScheduler(scheduler.repo, clock, scheduler.event)  # a second replica
        counts = await asyncio.gather(scheduler.tick(), other.tick(), scheduler.tick(), other.tick())
        assert sum(counts) == 1, counts
        both = await events.wait_for(subject=late["id"], type=sev.CONTRACT_INSTALMENT_OVERDUE.name, count=2)
    data = got.event["data"]
    assert data["owner_id"] == owner and data["days_overdue"] == 1
    inst = data["instalment"]
    assert (inst["instalment_id"], inst["paid"], inst["outstanding"], inst["status"]) == (
        late["plan"][0]["id"],
        "40.00",
        "60.00",
        "partially_paid",
    )
    assert both[-1].event["data"]["instalment"]["instalment_id"] == late["plan"][1]["id"]
    assert events.matching(subject=paid["id"], type=sev.CONTRACT_INSTALMENT_OVERDUE.name) == []
    assert len(events.matching(subject=late["id"], type=sev.CONTRACT_INSTALMENT_OVERDUE.name)) == 2
    r = await client.get(f"/v1/contracts/{late['id']}", headers=headers)
    assert [i["overdue"] for i in r.json()["plan"]] == [True, True]


async def test_the_business_day_turns_at_midnight_in_the_business_time_zone(
    client: httpx.AsyncClient, app: FastAPI, clock: ManualClock
) -> None:
    """Asia/Shanghai (the default) is UTC+8: an instalment due on day D is overdue from D+1 00:00
    there, i.e. D 16:00 UTC, while UTC's date is still D; a payment received on D+1 is accepted from
    that moment too, and refused as in the future a second before."""
    clock.set(START)
    owner = unique("rep")
    headers = auth(owner, ["rep"], department_path="/hq/overdue")
    due = TODAY + timedelta(days=3)
    contract = await contract_with_plan(client, app, owner, headers, 3)
    url = f"/v1/contracts/{contract['id']}"
    scheduler: OverdueScheduler = app.state.overdue_scheduler
    just_before = datetime(due.year, due.month, due.day, 15, 59, 59, tzinfo=UTC)
    next_day = {"amount": "10", "received_on": (due + timedelta(days=1)).isoformat(), "method": "cash"}
    try:
        clock.set(just_before)  # 23:59:59 in Shanghai on the due day
        assert await scheduler.tick() == 0
        r = await client.post(f"{url}/payments", json=next_day, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "received_on"
        assert f"today is {due.isoformat()}" in r.text
        r = await client.get(url, headers=headers)
        assert [i["overdue"] for i in r.json()["plan"]] == [False]
        clock.set(just_before + timedelta(seconds=1))  # 00:00 the next day in Shanghai; UTC still says D
        assert clock.now().date() == due
        async with collecting(app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
            assert await scheduler.tick() == 1
            (got,) = await events.wait_for(subject=contract["id"], type=sev.CONTRACT_INSTALMENT_OVERDUE.name)
        assert got.event["data"]["days_overdue"] == 1
        r = await client.get(url, headers=headers)
        assert [i["overdue"] for i in r.json()["plan"]] == [True]
        r = await client.post(f"{url}/payments", json=next_day, headers=headers)
        assert r.status_code == 201, r.text
    finally:
        clock.set(START)
