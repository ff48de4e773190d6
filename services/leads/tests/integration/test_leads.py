"""Leads over HTTP against the real embedded store and broker: entry, validation, the duplicate
check (against leads, and against customers learnt from crm.customers.v1), statuses, versions,
scopes, the lead pool and the events each change publishes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, collecting, eventually

PROBLEM = "application/problem+json"


def company(prefix: str = "线索测试") -> str:
    """A company name no other test uses (the duplicate check is global)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}有限公司"


def phone() -> str:
    """A valid mainland mobile number no other test uses."""
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


def body(**fields: Any) -> dict[str, Any]:
    return {"company_name": company(), **fields}


REP = auth("lead-rep-1", ["rep"], "/hq/east/t1")
REP2 = auth("lead-rep-2", ["rep"], "/hq/east/t2")
WEST = auth("lead-rep-w", ["rep"], "/hq/west")
MANAGER = auth("lead-mgr-east", ["manager"], "/hq/east")
ADMIN = auth("lead-admin", ["admin"], "/hq")


async def create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/leads", json=body(**fields), headers=headers)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/leads/{data['id']}"
    return data


async def new_campaign(client: httpx.AsyncClient) -> str:
    """A campaign of this test's own: a lead's campaign_id must name one the service knows."""
    plan = {
        "name": f"线索活动 {uuid.uuid4().hex[:6]}",
        "channel": "event",
        "budget": {"amount": "1000.00", "currency": "CNY"},
        "start_date": "2026-04-01",
        "end_date": "2026-04-30",
    }
    r = await client.post("/v1/campaigns", json=plan, headers=ADMIN)
    assert r.status_code == 201, r.text
    campaign_id: str = r.json()["id"]
    return campaign_id


async def test_create_normalises_and_publishes(client: httpx.AsyncClient, leads_app: FastAPI) -> None:
    bootstrap = leads_app.state.kit.settings.kafka_bootstrap_servers
    # A number and an address of this test's own: customers of other tests in the session hold keys too.
    tail = f"{uuid.uuid4().int % 10**8:08d}"
    mailbox = f"wang{tail}"
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        lead = await create(
            client,
            REP,
            contact_name=" 王经理 ",
            phones=[f"139 {tail[:4]} {tail[4:]}", f"+86 139-{tail[:4]}-{tail[4:]}"],
            emails=[f"{mailbox.capitalize()}@Example.COM"],
            source="exhibition",
            region="上海",
        )
        assert lead["phones"] == [f"+86139{tail}"] and lead["emails"] == [f"{mailbox}@example.com"]
        assert lead["contact_name"] == "王经理" and lead["status"] == "new"
        assert lead["owner_id"] == "lead-rep-1" and not lead["in_pool"]
        assert lead["department_path"] == "/hq/east/t1"
        (got,) = await events.wait_for(subject=lead["id"], type=lev.LEAD_CREATED.name)
    assert got.event["data"]["lead"]["company_name"] == lead["company_name"]
    assert got.event["aggregateversion"] == 1 and got.key == lead["id"].encode()


async def test_bad_input_is_422_naming_each_field(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/leads",
        json={"company_name": "  ", "phones": ["12", "139 1234 5678"], "emails": ["not-an-email"], "source": "tv"},
        headers=REP,
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"company_name", "phones[0]", "emails[0]", "source"} <= fields, r.json()
    assert "phones[1]" not in fields
    r = await client.post("/v1/leads", json={"company_name": company(), "owner": "x"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "owner"


async def test_a_second_lead_for_the_same_company_phone_or_email_is_409(client: httpx.AsyncClient) -> None:
    first_phone, mail = phone(), f"{uuid.uuid4().hex[:8]}@example.com"
    first = await create(client, REP, phones=[first_phone], emails=[mail])
    name = first["company_name"]
    # The same company typed another way (suffix, width, case): the normalised name matches.
    r = await client.post("/v1/leads", json={"company_name": name.replace("有限公司", "（有限公司）")}, headers=REP2)
    assert r.status_code == 409, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "company_name" and "already a lead of lead-rep-1" in error["reason"]
    r = await client.post("/v1/leads", json=body(phones=[phone(), first_phone], emails=[mail.upper()]), headers=REP2)
    assert r.status_code == 409
    assert {e["field"] for e in r.json()["errors"]} == {"phones[1]", "emails[0]"}
    # Deleting the first gives its keys up.
    r = await client.delete(f"/v1/leads/{first['id']}", headers=REP)
    assert r.status_code == 403  # reps may not delete leads (managers may)
    r = await client.delete(f"/v1/leads/{first['id']}", headers=MANAGER)
    assert r.status_code == 204
    again = await create(client, REP2, company_name=name, phones=[first_phone])
    assert again["owner_id"] == "lead-rep-2"
    r = await client.get(f"/v1/leads/{first['id']}", headers=REP)
    assert r.status_code == 404


async def test_concurrent_entries_of_one_company_make_one_lead(client: httpx.AsyncClient) -> None:
    name = company()
    answers = await asyncio.gather(
        *(client.post("/v1/leads", json={"company_name": name}, headers=REP) for _ in range(10))
    )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 9, [r.text for r in answers]


async def test_a_lead_that_is_already_a_customer_is_409(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    """The customer reaches the leads service only through crm.customers.v1, via the real broker."""
    now = datetime.now(UTC)
    customer_id, name, mobile = str(uuid.uuid4()), company("客户公司"), phone()
    snapshot = cev.CustomerSnapshot(
        customer_id=customer_id,
        kind="company",
        name=name,
        owner_id="cust-owner-9",
        department_path="/hq/east",
        created_at=now,
        updated_at=now,
        match_phones=[mobile],
        match_emails=["buyer@customer.example"],
    )
    await feed.send(cev.CUSTOMER_CREATED, customer_id, cev.CustomerCreated(customer=snapshot), now, "feed")
    repo = leads_app.state.repo
    await eventually(lambda: repo.customer(customer_id), timeout=30, message="customer keys copied")
    r = await client.post("/v1/leads", json={"company_name": name.replace("有限公司", "")}, headers=REP)
    assert r.status_code == 409, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "company_name"
    assert error["reason"].startswith(f"already a customer ({customer_id}) owned by cust-owner-9")
    r = await client.post("/v1/leads", json=body(phones=[mobile], emails=["Buyer@customer.example"]), headers=REP)
    assert {e["field"] for e in r.json()["errors"]} == {"phones[0]", "emails[0]"}
    # The customer's phone changes: the old one is free for a lead, the new one is not.
    other = phone()
    snapshot.match_phones = [other]
    await feed.send(cev.CUSTOMER_UPDATED, customer_id, cev.CustomerUpdated(customer=snapshot, changes=[]), now, "feed")
    await eventually(
        lambda: _holds(repo, customer_id, f"phones:{other}"), timeout=30, message="customer's new phone copied"
    )
    await create(client, REP, phones=[mobile])
    r = await client.post("/v1/leads", json=body(phones=[other]), headers=REP)
    assert r.status_code == 409
    # Merged away: it holds nothing any more.
    snapshot.status = "merged"
    await feed.send(
        cev.MERGED_AWAY, customer_id, cev.MergedAway(customer=snapshot, survivor_id=str(uuid.uuid4())), now, "feed"
    )
    await eventually(lambda: _holds(repo, customer_id, None), timeout=30, message="merged customer holds nothing")
    await create(client, REP, company_name=name, phones=[other])


async def _holds(repo: Any, customer_id: str, key: str | None) -> bool:
    copy = await repo.customer(customer_id)
    keys = (copy or {}).get("keys") or []
    return key in keys if key else copy is not None and not keys


async def test_status_moves_and_versions(client: httpx.AsyncClient) -> None:
    lead = await create(client, REP)
    url = f"/v1/leads/{lead['id']}"
    r = await client.patch(url, json={"status": "contacted"}, headers=REP)
    assert r.status_code == 428
    r = await client.patch(url, json={"status": "contacted"}, headers={**REP, "If-Match": '"1"'})
    assert r.status_code == 200 and r.headers["etag"] == '"2"' and r.json()["status"] == "contacted"
    r = await client.patch(url, json={"notes": "stale"}, headers={**REP, "If-Match": '"1"'})
    assert r.status_code == 412 and r.headers["etag"] == '"2"'
    r = await client.patch(url, json={"status": "disqualified"}, headers={**REP, "If-Match": '"2"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = await client.patch(url, json={"status": "new"}, headers={**REP, "If-Match": '"2"'})
    assert r.status_code == 409
    move = {"status": "disqualified", "reason": "没有预算", "notes": "明年再联系"}
    r = await client.patch(url, json=move, headers={**REP, "If-Match": '"2"'})
    assert r.status_code == 200, r.text
    assert r.json()["disqualified_reason"] == "没有预算" and r.headers["etag"] == '"3"'
    r = await client.patch(url, json={"company_name": None}, headers={**REP, "If-Match": '"3"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "company_name"
    history = (await client.get(f"{url}/history", headers=REP)).json()
    assert [h["type"] for h in history] == [
        "crm.lead.created",
        "crm.lead.status_changed",
        "crm.lead.updated",
        "crm.lead.status_changed",
    ]
    assert history[-1]["changes"] == [{"field": "status", "old": "contacted", "new": "disqualified"}]


async def test_a_patch_that_brings_a_taken_phone_is_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    taken = phone()
    await create(client, REP2, phones=[taken])
    lead = await create(client, REP)
    url = f"/v1/leads/{lead['id']}"
    r = await client.patch(url, json={"phones": [phone(), taken]}, headers={**REP, "If-Match": '"1"'})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "phones[1]"
    r = await client.get(url, headers=REP)
    assert r.headers["etag"] == '"1"' and r.json()["phones"] == []


async def test_scopes_a_rep_sees_own_a_manager_their_subtree(client: httpx.AsyncClient) -> None:
    campaign = await new_campaign(client)
    mine = await create(client, REP, campaign_id=campaign)
    theirs = await create(client, REP2, campaign_id=campaign)
    west = await create(client, WEST, campaign_id=campaign)
    pooled = await create(client, REP, campaign_id=campaign, in_pool=True)  # the pool of /hq/east/t1
    pooled_west = await create(client, WEST, campaign_id=campaign, in_pool=True)  # the pool of /hq/west

    async def ids(headers: dict[str, str], **params: Any) -> set[str]:
        r = await client.get("/v1/leads", params={"campaign_id": campaign, **params}, headers=headers)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    assert await ids(REP) == {mine["id"], pooled["id"]}
    assert await ids(REP2) == {theirs["id"]}  # another department's pool is not theirs
    assert await ids(MANAGER) == {mine["id"], theirs["id"], pooled["id"]}
    assert await ids(WEST) == {west["id"], pooled_west["id"]}
    assert await ids(ADMIN) == {mine["id"], theirs["id"], west["id"], pooled["id"], pooled_west["id"]}
    assert await ids(MANAGER, in_pool="false") == {mine["id"], theirs["id"]}
    assert await ids(MANAGER, owner_id="lead-rep-2") == {theirs["id"]}
    assert await ids(REP, owner_id="lead-rep-2") == set()
    assert (await client.get(f"/v1/leads/{theirs['id']}", headers=REP)).status_code == 404
    assert (await client.get(f"/v1/leads/{theirs['id']}", headers=MANAGER)).status_code == 200
    assert (await client.get(f"/v1/leads/{west['id']}", headers=MANAGER)).status_code == 404


async def test_list_pages_and_filters(client: httpx.AsyncClient) -> None:
    campaign = await new_campaign(client)
    made = [await create(client, REP, campaign_id=campaign, source="web") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"campaign_id": campaign, "limit": 2, "sort": "created_at"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/leads", params=params, headers=REP)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [m["id"] for m in made]
    r = await client.get(
        "/v1/leads",
        params={"campaign_id": campaign, "created_from": made[2]["created_at"], "sort": "-created_at"},
        headers=REP,
    )
    assert [i["id"] for i in r.json()["items"]] == [m["id"] for m in reversed(made[2:])]
    r = await client.get("/v1/leads", params={"sort": "name"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"
    r = await client.get("/v1/leads", params={"status": "won"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"


async def test_twenty_concurrent_claims_have_one_winner(client: httpx.AsyncClient, leads_app: FastAPI) -> None:
    lead = await create(client, REP, in_pool=True)  # the claimers' department's pool
    assert lead["in_pool"] and lead["owner_id"] is None
    claimers = [auth(f"claimer-{i}", ["rep"], "/hq/east/t1") for i in range(20)]
    answers = await asyncio.gather(*(client.post(f"/v1/leads/{lead['id']}/claim", headers=h) for h in claimers))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [409] * 19, [r.text for r in answers]
    winner = next(r.json() for r in answers if r.status_code == 200)
    stored = await leads_app.state.repo.get(lead["id"])
    assert stored["owner_id"] == winner["owner_id"] and stored["version"] == 2
    assert sum(1 for e in stored.get("outbox") or [] if e["envelope"]["type"] == lev.LEAD_OWNER_CHANGED.name) <= 1


async def test_release_and_assign(client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI) -> None:
    lead = await create(client, REP)
    url = f"/v1/leads/{lead['id']}"
    r = await client.post(f"{url}/release", json={}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = await client.post(f"{url}/release", json={"reason": "不是目标客户"}, headers=REP)
    assert r.status_code == 200 and r.json()["in_pool"] and r.json()["owner_id"] is None
    r = await client.post(f"{url}/assign", json={"owner_id": "lead-rep-2"}, headers=REP)
    assert r.status_code == 403  # reps may not assign
    r = await client.post(f"{url}/assign", json={"owner_id": "nobody-here"}, headers=MANAGER)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "owner_id"
    await feed.user("lead-rep-2", "李雷", "/hq/east/t2")
    await eventually(
        lambda: leads_app.state.repo.directory_users.find_one({"_id": "lead-rep-2"}),
        timeout=30,
        message="user copied",
    )
    r = await client.post(f"{url}/assign", json={"owner_id": "lead-rep-2", "reason": "east"}, headers=MANAGER)
    assert r.status_code == 200, r.text
    assert r.json()["owner_id"] == "lead-rep-2" and r.json()["department_path"] == "/hq/east/t2"
    assert not r.json()["in_pool"] and r.headers["etag"] == '"3"'
    history = (await client.get(f"{url}/history", headers=MANAGER)).json()
    assert [h["summary"] for h in history[1:]] == ["Lead released (不是目标客户)", "Lead assigned (east)"]
