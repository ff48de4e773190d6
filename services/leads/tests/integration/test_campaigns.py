"""Campaigns over HTTP against the real embedded store and broker: planning and its 422s (money as
decimal strings, the period), status moves with ETag/412/428, cost entries and the total kept on
the campaign (also under concurrency), history, the permission split and the events."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import leads as lev
from crm_platform.testing.fixtures import auth, collecting

PROBLEM = "application/problem+json"
MANAGER = auth("camp-mgr", ["manager"], "/hq/east")
REP = auth("camp-rep", ["rep"], "/hq/east/t1")


def plan(**fields: Any) -> dict[str, Any]:
    return {
        "name": f"2026 春季展会 {uuid.uuid4().hex[:6]}",
        "channel": "exhibition",
        "budget": {"amount": "120000", "currency": "CNY"},
        "start_date": "2026-03-01",
        "end_date": "2026-03-03",
        **fields,
    }


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/campaigns", json=plan(**fields), headers=MANAGER)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/campaigns/{r.json()['id']}"
    data: dict[str, Any] = r.json()
    return data


async def test_plan_a_campaign_and_its_event(client: httpx.AsyncClient, leads_app: FastAPI) -> None:
    async with collecting(leads_app.state.kit.settings.kafka_bootstrap_servers, [lev.TOPIC]) as events:
        campaign = await create(client)
        assert campaign["budget"] == {"amount": "120000.00", "currency": "CNY"}
        assert campaign["status"] == "planned" and campaign["owner_id"] == "camp-mgr"
        assert campaign["cost_total"] == {"amount": "0.00", "currency": "CNY"} and campaign["costs"] == []
        (got,) = await events.wait_for(subject=campaign["id"], type=lev.CAMPAIGN_CREATED.name)
    assert got.event["data"]["campaign"]["budget"]["amount"] == "120000.00"


async def test_bad_campaigns_are_422_naming_each_field(client: httpx.AsyncClient) -> None:
    bad = plan(
        name="",
        channel="tv",
        budget={"amount": 1200.5, "currency": "rmb"},
        start_date="2026-03-05",
        end_date="2026-03-01",
    )
    r = await client.post("/v1/campaigns", json=bad, headers=MANAGER)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"name", "channel", "budget.amount", "budget.currency", "end_date"}, r.json()
    r = await client.post("/v1/campaigns", json=plan(budget={"amount": "1.005", "currency": "CNY"}), headers=MANAGER)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "budget.amount"
    r = await client.post("/v1/campaigns", json=plan(), headers=REP)
    assert r.status_code == 403  # reps see campaigns, managers run them


async def test_status_moves_and_versions(client: httpx.AsyncClient) -> None:
    campaign = await create(client)
    url = f"/v1/campaigns/{campaign['id']}"
    assert (await client.patch(url, json={"status": "active"}, headers=MANAGER)).status_code == 428
    r = await client.patch(url, json={"status": "active"}, headers={**MANAGER, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["status"] == "active" and r.headers["etag"] == '"2"'
    r = await client.patch(url, json={"name": "stale"}, headers={**MANAGER, "If-Match": '"1"'})
    assert r.status_code == 412
    r = await client.patch(url, json={"end_date": "2026-02-01"}, headers={**MANAGER, "If-Match": '"2"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "end_date"
    r = await client.patch(url, json={"status": "planned"}, headers={**MANAGER, "If-Match": '"2"'})
    assert r.status_code == 409
    r = await client.patch(url, json={"status": "completed"}, headers={**MANAGER, "If-Match": '"2"'})
    assert r.status_code == 200
    r = await client.patch(url, json={"status": "cancelled"}, headers={**MANAGER, "If-Match": '"3"'})
    assert r.status_code == 409  # completed is closed
    history = (await client.get(f"{url}/history", headers=REP)).json()
    assert [h["changes"] for h in history[1:]] == [
        [{"field": "status", "old": "planned", "new": "active"}],
        [{"field": "status", "old": "active", "new": "completed"}],
    ]


async def test_costs_keep_the_total_even_when_recorded_at_once(client: httpx.AsyncClient, leads_app: FastAPI) -> None:
    campaign = await create(client)
    url = f"/v1/campaigns/{campaign['id']}/costs"
    r = await client.post(url, json={"amount": "100", "currency": "USD", "date": "2026-03-01"}, headers=MANAGER)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency"
    r = await client.post(url, json={"amount": 100, "date": "2026-03-01"}, headers=MANAGER)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount"
    r = await client.post(url, json={"amount": "100", "date": "2026-03-01"}, headers=REP)
    assert r.status_code == 403
    bootstrap = leads_app.state.kit.settings.kafka_bootstrap_servers
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        answers = await asyncio.gather(
            *(
                client.post(url, json={"amount": "1000.10", "date": "2026-03-02", "note": f"展位 {i}"}, headers=MANAGER)
                for i in range(10)
            )
        )
        assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
        await events.wait_for(count=10, subject=campaign["id"], type=lev.CAMPAIGN_COST_ADDED.name)
    stored = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=REP)).json()
    assert stored["cost_total"] == {"amount": "10001.00", "currency": "CNY"} and len(stored["costs"]) == 10
    assert stored["version"] == 11
    totals = sorted(
        e.event["data"]["campaign"]["cost_total"]["amount"]
        for e in events.matching(subject=campaign["id"], type=lev.CAMPAIGN_COST_ADDED.name)
    )
    assert totals == sorted(f"{1000.10 * n:.2f}" for n in range(1, 11))
    # A currency change is refused once costs exist (the total would mix currencies).
    r = await client.patch(
        f"/v1/campaigns/{campaign['id']}",
        json={"budget": {"amount": "1", "currency": "USD"}},
        headers={**MANAGER, "If-Match": '"11"'},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "budget.currency"


async def test_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    owner = f"camp-owner-{uuid.uuid4().hex[:6]}"
    made = [await create(client, owner_id=owner, channel="content") for _ in range(3)]
    r = await client.get("/v1/campaigns", params={"owner_id": owner, "limit": 2, "sort": "created_at"}, headers=REP)
    assert r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [m["id"] for m in made[:2]]
    assert r.json()["items"][0]["costs"] is None  # rows without their cost entries
    r = await client.get(
        "/v1/campaigns",
        params={"owner_id": owner, "limit": 2, "sort": "created_at", "cursor": r.json()["next_cursor"]},
        headers=REP,
    )
    assert [i["id"] for i in r.json()["items"]] == [made[2]["id"]] and r.json()["next_cursor"] is None
    r = await client.get("/v1/campaigns", params={"owner_id": owner, "status": "active"}, headers=REP)
    assert r.json()["items"] == []
    r = await client.get("/v1/campaigns", params={"channel": "radio"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"
