"""The lead pool per department and the assignment rules, over HTTP against the real embedded store
and broker: rules' validation, permissions and versions (412/428), round-robin fairness, capacity,
two runs at once, the event-driven offer of a lead entering the pool, and who sees and claims a
department's pool. Each test works in departments of its own (the store is shared)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import directory as dev
from crm_platform.contracts import leads as lev
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, collecting, eventually

ADMIN = auth("assign-admin", ["admin"], "/hq")


def company() -> str:
    return f"分配测试{uuid.uuid4().hex[:10]}有限公司"


class Org:
    """A department of its own (under /hq) with a manager and reps, copied from directory events."""

    def __init__(self, feed: EventFeed, app: FastAPI) -> None:
        self.feed = feed
        self.app = app
        self.key = uuid.uuid4().hex[:8]
        self.dept_id = f"as{self.key}"
        self.path = f"/hq/{self.dept_id}"
        self.manager_id = f"mgr-{self.key}"
        self.manager = auth(self.manager_id, ["manager"], self.path)

    def rep_id(self, i: int) -> str:
        return f"rep-{self.key}-{i}"

    def rep(self, i: int) -> dict[str, str]:
        return auth(self.rep_id(i), ["rep"], self.path)

    async def department(self, dept_id: str | None = None, parent: str = "/hq") -> str:
        dept_id = dept_id or self.dept_id
        now = datetime.now(UTC)
        snapshot = dev.DepartmentSnapshot(
            department_id=dept_id,
            name=dept_id,
            parent_id="hq",
            path=f"{parent}/{dept_id}",
            created_at=now,
            updated_at=now,
        )
        await self.feed.send(dev.DEPARTMENT_CREATED, dept_id, dev.DepartmentCreated(department=snapshot), now, "admin")
        await eventually(lambda: self.app.state.repo.directory_departments.find_one({"_id": dept_id}), timeout=30)
        return snapshot.path

    async def users(self, count: int) -> list[str]:
        ids = [self.rep_id(i) for i in range(count)]
        for user_id in ids:
            await self.feed.user(user_id, user_id, self.path)
        for user_id in ids:
            await eventually(lambda u=user_id: self.app.state.repo.directory_users.find_one({"_id": u}), timeout=30)  # type: ignore[misc]
        return ids


async def make_rule(client: httpx.AsyncClient, org: Org, users: list[str], **fields: Any) -> dict[str, Any]:
    body = {"name": f"规则 {org.key}", "department_id": org.dept_id, "users": users, **fields}
    r = await client.post("/v1/leads/assignment-rules", json=body, headers=org.manager)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def pool_lead(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/leads", json={"company_name": company(), "in_pool": True, **fields}, headers=headers)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def owners(app: FastAPI, lead_ids: list[str]) -> list[str | None]:
    return [(await app.state.repo.get(i) or {}).get("owner_id") for i in lead_ids]


async def test_rules_validation_permissions_versions_and_history(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    org = Org(feed, leads_app)
    await org.department()
    (user,) = await org.users(1)
    body = {"name": "华东轮转", "department_id": org.dept_id, "users": [user]}
    r = await client.post("/v1/leads/assignment-rules", json=body, headers=org.rep(9))
    assert r.status_code == 403  # reps hold no leads:rules
    r = await client.post("/v1/leads/assignment-rules", json={**body, "department_id": "nowhere"}, headers=org.manager)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "department_id", r.text
    r = await client.post("/v1/leads/assignment-rules", json={**body, "users": [user, "ghost"]}, headers=org.manager)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "users[1]", r.text
    other = Org(feed, leads_app)
    await other.department()
    r = await client.post(
        "/v1/leads/assignment-rules", json={**body, "department_id": other.dept_id}, headers=org.manager
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "department_id"  # not in the manager's reach
    r = await client.post(
        "/v1/leads/assignment-rules", json={**body, "condition": {"field": "region", "values": []}}, headers=org.manager
    )
    assert r.status_code == 422 and "condition" in r.json()["errors"][0]["field"], r.text
    r = await client.post("/v1/leads/assignment-rules", json={**body, "capacity": 0}, headers=org.manager)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "capacity"

    async with collecting(leads_app.state.kit.settings.kafka_bootstrap_servers, [lev.TOPIC]) as events:
        r = await client.post("/v1/leads/assignment-rules", json=body, headers=org.manager)
        assert r.status_code == 201 and r.headers["etag"] == '"1"', r.text
        url = r.headers["location"]
        assert r.json()["department_path"] == org.path and r.json()["method"] == "round_robin"
        assert (await client.patch(url, json={"capacity": 5}, headers=org.manager)).status_code == 428
        stale = await client.patch(url, json={"capacity": 5}, headers={**org.manager, "If-Match": '"7"'})
        assert stale.status_code == 412
        r = await client.patch(url, json={"capacity": 5}, headers={**org.manager, "If-Match": '"1"'})
        assert r.status_code == 200 and r.headers["etag"] == '"2"' and r.json()["capacity"] == 5
        rule_id = r.json()["id"]
        got = await events.wait_for(subject=rule_id, type=lev.LEAD_RULE_CHANGED.name, count=2)
        assert [g.event["data"]["action"] for g in got] == ["created", "updated"]
    listed = (await client.get("/v1/leads/assignment-rules", headers=org.manager)).json()["items"]
    assert rule_id in [i["id"] for i in listed]
    history = (await client.get(f"{url}/history", headers=org.manager)).json()
    assert [h["summary"] for h in history] == ["Rule created", "Rule updated"]
    assert (
        history[1]["changes"] == [{"field": "capacity", "old": None, "new": 5}]
        and history[1]["actor"] == org.manager_id
    )
    assert (await client.delete(url, headers=org.manager)).status_code == 428
    assert (await client.delete(url, headers={**org.manager, "If-Match": '"2"'})).status_code == 204
    assert (await client.get(url, headers=org.manager)).status_code == 404


async def test_round_robin_is_fair_when_leads_enter_the_pool(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    """Ten leads entered into the pool over three users: 4/3/3, by this service's reaction to its
    own crm.lead.created (no call to any rule API)."""
    org = Org(feed, leads_app)
    await org.department()
    users = await org.users(3)
    region = f"区域{org.key}"
    rule = await make_rule(client, org, users, condition={"field": "region", "values": [region]})
    leads = [(await pool_lead(client, org.rep(9), region=region))["id"] for _ in range(10)]

    async def all_assigned() -> bool:
        return None not in await owners(leads_app, leads)

    await eventually(all_assigned, timeout=60, message="the rule assigned every lead")
    assert sorted(Counter(await owners(leads_app, leads)).values()) == [3, 3, 4]
    lead = leads[0]
    history = (await client.get(f"/v1/leads/{lead}/history", headers=org.manager)).json()
    assert history[-1]["actor"] == f"rule:{rule['id']}" and rule["id"] in history[-1]["summary"]


async def test_capacity_skips_a_full_user_and_leaves_the_rest_in_the_pool(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    org = Org(feed, leads_app)
    await org.department()
    users = await org.users(3)
    for _ in range(2):  # the first user owns two open leads already: full at capacity 2
        r = await client.post("/v1/leads", json={"company_name": company()}, headers=org.rep(0))
        assert r.status_code == 201
    leads = [(await pool_lead(client, org.rep(9)))["id"] for _ in range(5)]
    await make_rule(client, org, users, capacity=2)
    r = await client.post("/v1/leads/assignment-rules/run", headers=org.manager)
    assert r.status_code == 200, r.text
    got = Counter(await owners(leads_app, leads))
    assert got == {users[1]: 2, users[2]: 2, None: 1}, got
    pooled = leads[(await owners(leads_app, leads)).index(None)]
    r = await client.post(f"/v1/leads/{pooled}/auto-assign", headers=org.manager)
    assert r.status_code == 200 and r.json()["assignment"] is None and r.json()["lead"]["in_pool"]
    r = await client.post(f"/v1/leads/{leads[0]}/auto-assign", headers=org.rep(9))
    assert r.status_code == 403  # reps hold no leads:assign


async def test_two_runs_at_once_never_exceed_a_capacity(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    org = Org(feed, leads_app)
    await org.department()
    users = await org.users(3)
    leads = [(await pool_lead(client, org.rep(9)))["id"] for _ in range(10)]
    await make_rule(client, org, users, capacity=2, method="least_loaded")
    runs = await asyncio.gather(*(client.post("/v1/leads/assignment-rules/run", headers=org.manager) for _ in range(2)))
    assert [r.status_code for r in runs] == [200, 200], [r.text for r in runs]
    got = Counter(await owners(leads_app, leads))
    assert got == {users[0]: 2, users[1]: 2, users[2]: 2, None: 4}, got
    assert sum(r.json()["assigned"] for r in runs) <= 6


async def test_a_deactivated_user_is_skipped(client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI) -> None:
    org = Org(feed, leads_app)
    await org.department()
    users = await org.users(2)
    await make_rule(client, org, users)
    now = datetime.now(UTC)
    snapshot = dev.UserSnapshot(
        user_id=users[0], email=f"{users[0]}@example.com", name=users[0], roles=["rep"],
        department_id=org.dept_id, department_path=org.path, status="deactivated", created_at=now, updated_at=now,
    )  # fmt: skip
    await feed.send(dev.USER_DEACTIVATED, users[0], dev.UserDeactivated(user=snapshot), now, "admin")

    async def gone() -> bool:
        return ((await leads_app.state.repo.directory_users.find_one({"_id": users[0]})) or {}).get(
            "status"
        ) != "active"

    await eventually(gone, timeout=30)
    leads = [(await pool_lead(client, org.rep(9)))["id"] for _ in range(3)]
    await client.post("/v1/leads/assignment-rules/run", headers=org.manager)

    async def all_assigned() -> bool:
        return None not in await owners(leads_app, leads)

    await eventually(all_assigned, timeout=30)
    assert set(await owners(leads_app, leads)) == {users[1]}


async def test_a_department_pool_is_its_own(client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI) -> None:
    east, west = Org(feed, leads_app), Org(feed, leads_app)
    await east.department()
    await west.department()
    plan = {
        "name": f"分配活动 {east.key}",
        "channel": "event",
        "budget": {"amount": "1.00", "currency": "CNY"},
        "start_date": "2026-04-01",
        "end_date": "2026-04-30",
    }
    r = await client.post("/v1/campaigns", json=plan, headers=ADMIN)  # a lead's campaign must exist
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    lead = await pool_lead(client, east.rep(1), campaign_id=campaign_id)
    url = f"/v1/leads/{lead['id']}"

    async def ids(headers: dict[str, str], **params: Any) -> set[str]:
        r = await client.get("/v1/leads", params={"in_pool": "true", **params}, headers=headers)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    assert lead["id"] in await ids(east.rep(2))
    assert lead["id"] in await ids(east.manager, department_id=east.dept_id)
    assert lead["id"] not in await ids(west.rep(1))
    assert lead["id"] not in await ids(east.rep(2), department_id=west.dept_id)
    assert (await client.get(url, headers=west.rep(1))).status_code == 404
    assert (await client.post(f"{url}/claim", headers=west.rep(1))).status_code == 404

    r = await client.put("/v1/leads/pool-settings", json={"claim_scope": "company"}, headers=east.manager)
    assert r.status_code == 403  # company-wide is the administrators'
    settings = (await client.get("/v1/leads/pool-settings", headers=ADMIN)).json()
    try:
        r = await client.put("/v1/leads/pool-settings", json={"claim_scope": "company"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["claim_scope"] == "company", r.text
        r = await client.put(
            "/v1/leads/pool-settings", json={"claim_scope": "company"}, headers={**ADMIN, "If-Match": '"0"'}
        )
        assert r.status_code == 412
        assert lead["id"] in await ids(west.rep(1), campaign_id=campaign_id)
    finally:
        r = await client.put("/v1/leads/pool-settings", json={"claim_scope": settings["claim_scope"]}, headers=ADMIN)
        assert r.status_code == 200
    assert lead["id"] not in await ids(west.rep(1), campaign_id=campaign_id)

    # Claimed in the east, then sent to the west's pool: now the west's, and no longer the east reps'.
    assert (await client.post(f"{url}/claim", headers=east.rep(2))).status_code == 200
    r = await client.post(
        f"{url}/release", json={"reason": "西区客户", "department_id": "nowhere"}, headers=east.rep(2)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "department_id"
    r = await client.post(
        f"{url}/release", json={"reason": "西区客户", "department_id": west.dept_id}, headers=east.rep(2)
    )
    assert r.status_code == 200 and r.json()["department_path"] == west.path and r.json()["in_pool"], r.text
    assert (await client.get(url, headers=east.rep(2))).status_code == 404
    assert (await client.post(f"{url}/claim", headers=west.rep(1))).status_code == 200


async def test_a_released_lead_is_offered_to_the_rules(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    """crm.lead.owner_changed into the pool (a release here; recycling the same way) brings the rules in."""
    org = Org(feed, leads_app)
    await org.department()
    (user,) = await org.users(1)
    r = await client.post("/v1/leads", json={"company_name": company()}, headers=org.rep(9))
    assert r.status_code == 201
    lead = r.json()
    rule = await make_rule(client, org, [user])
    r = await client.post(f"/v1/leads/{lead['id']}/release", json={"reason": "换人跟进"}, headers=org.rep(9))
    assert r.status_code == 200 and r.json()["in_pool"]

    async def assigned() -> bool:
        return await owners(leads_app, [lead["id"]]) == [user]

    await eventually(assigned, timeout=30, message="the released lead went to the rule's user")
    history = (await client.get(f"/v1/leads/{lead['id']}/history", headers=org.manager)).json()
    assert history[-1]["actor"] == f"rule:{rule['id']}"
