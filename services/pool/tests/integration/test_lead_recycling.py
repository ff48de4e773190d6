"""Pool rules apply to leads: the lead clock from crm.leads.v1, warnings K days ahead, release decisions at
N days (once, however many runs race), not for leads worked in between, never for closed or pooled ones."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import leads as lev
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import EventCollector, auth, eventually, unique
from crm_pool.domain.recycling import NEVER_MS

ADMIN = auth("admin-1", ["admin"], "/hq")


def snapshot(lead_id: str, owner: str | None, dept: str, at: datetime, **fields: Any) -> lev.LeadSnapshot:
    values: dict[str, Any] = {
        "lead_id": lead_id,
        "company_name": f"回收线索{uuid.uuid4().hex[:8]}有限公司",
        "owner_id": owner,
        "department_path": dept,
        "status": "new",
        "created_at": at,
        "updated_at": at,
        **fields,
    }
    return lev.LeadSnapshot(**values)


async def lead_clock(app: FastAPI, lead_id: str, version: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        clock = await app.state.lead_recycling.clocks.get(lead_id)
        return clock if clock is not None and clock.get("version") == version else None

    found: dict[str, Any] = await eventually(probe, timeout=20, message=f"lead clock {lead_id} at v{version}")
    return found


async def notices(app: FastAPI, lead_id: str, kind: str) -> int:
    return int(await app.state.repo.notices.count_documents({"lead_id": lead_id, "kind": kind}))


async def make_rule(client: Any, path: str, **kw: Any) -> dict[str, Any]:
    fields = {"name": f"lead rule {path}", "department_path": path, "lead_no_work_days": 10, "lead_warn_days": 3, **kw}
    r = await client.post("/v1/pool/rules", json=fields, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def run(client: Any) -> dict[str, Any]:
    r = await client.post("/v1/pool/run", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_an_unworked_lead_is_warned_then_released_once(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any, pool_events: EventCollector
) -> None:
    dept = f"/{unique('ld')}"
    rule = await make_rule(pool_client, dept)
    assert (rule["lead_no_work_days"], rule["lead_warn_days"], rule["no_interaction_days"]) == (10, 3, None)
    rep, lead_id = unique("rep"), str(uuid.uuid4())
    start = pool_clock.now().replace(microsecond=0)
    feed = EventFeed(producer)
    await feed.send(lev.LEAD_CREATED, lead_id, lev.LeadCreated(lead=snapshot(lead_id, rep, dept, start)), start, rep)
    clock = await lead_clock(pool_app, lead_id, 1)
    assert clock["worked_at"].replace(tzinfo=UTC) == start

    # The preview names the lead, with the rule and why.
    at = (start + timedelta(days=8)).isoformat()
    preview = (await pool_client.get("/v1/pool/preview", params={"at": at, "department": dept}, headers=ADMIN)).json()
    assert preview["items"] == []
    assert [(i["lead_id"], i["action"], i["rule_id"], i["days_without_work"]) for i in preview["leads"]] == [
        (lead_id, "warn", rule["rule_id"], 8)
    ]
    assert "not worked by the owner for 10 days" in preview["leads"][0]["reason_text"]

    # Nothing before N - K days; then one warning, however often it runs.
    pool_clock.set(start + timedelta(days=6, hours=23))
    await run(pool_client)
    assert await notices(pool_app, lead_id, "lead_warning") == 0
    pool_clock.set(start + timedelta(days=7))
    assert (await run(pool_client))["leads_warned"] >= 1
    await run(pool_client)
    warnings = await pool_events.wait_for(1, type="crm.pool.lead_recycle_warning", subject=lead_id)
    data = warnings[0].event["data"]
    assert (data["owner_id"], data["recycle_at"][:19], data["days_left"]) == (
        rep,
        (start + timedelta(days=10)).isoformat()[:19],
        3,
    )
    assert await notices(pool_app, lead_id, "lead_warning") == 1

    # Not yet at N days; at N days one decision, even with two runs racing (two replicas).
    pool_clock.set(start + timedelta(days=9, hours=23))
    await run(pool_client)
    assert await notices(pool_app, lead_id, "lead_release") == 0
    pool_clock.set(start + timedelta(days=10, seconds=1))
    recycler = pool_app.state.recycler
    await asyncio.gather(recycler.run(), recycler.run())
    await run(pool_client)
    decided = await pool_events.wait_for(1, type="crm.pool.lead_release_decided", subject=lead_id)
    data = decided[0].event["data"]
    assert (data["owner_id"], data["lead_version"], data["rule_id"]) == (rep, 1, rule["rule_id"])
    assert data["last_worked_at"][:19] == start.isoformat()[:19]
    assert await notices(pool_app, lead_id, "lead_release") == 1

    # The leads service releases it: the clock stops.
    released = snapshot(lead_id, None, dept, start)
    envelope = lev.LeadOwnerChanged(lead=released, previous_owner_id=rep, owner_id=None, how="recycled")
    await feed.send(lev.LEAD_OWNER_CHANGED, lead_id, envelope, pool_clock.now(), "system:pool")
    assert (await lead_clock(pool_app, lead_id, 2))["work_ms"] == NEVER_MS


async def test_a_worked_lead_is_not_released_and_its_clock_restarts(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any
) -> None:
    dept = f"/{unique('ld')}"
    await make_rule(pool_client, dept)
    rep, lead_id = unique("rep"), str(uuid.uuid4())
    start = pool_clock.now().replace(microsecond=0)
    feed = EventFeed(producer)
    await feed.send(lev.LEAD_CREATED, lead_id, lev.LeadCreated(lead=snapshot(lead_id, rep, dept, start)), start, rep)
    await lead_clock(pool_app, lead_id, 1)
    pool_clock.set(start + timedelta(days=8))
    await run(pool_client)
    assert await notices(pool_app, lead_id, "lead_warning") == 1
    # Followed up on day 8 (the leads service counted it): the deadline moves to day 18.
    worked = start + timedelta(days=8)
    followed = snapshot(lead_id, rep, dept, start, followup_count=1, last_followup_at=worked)
    data = lev.LeadFollowedUp(lead=followed, interaction_id=str(uuid.uuid4()), author_id=rep, occurred_at=worked)
    await feed.send(lev.LEAD_FOLLOWED_UP, lead_id, data, worked, rep)
    await lead_clock(pool_app, lead_id, 2)
    pool_clock.set(start + timedelta(days=11))
    await run(pool_client)
    assert await notices(pool_app, lead_id, "lead_release") == 0
    assert await notices(pool_app, lead_id, "lead_warning") == 1
    # Moved on to contacted on day 14: worked again, the deadline is day 24.
    moved_at = start + timedelta(days=14)
    contacted = snapshot(lead_id, rep, dept, start, status="contacted", followup_count=1, last_followup_at=worked)
    change = lev.LeadStatusChanged(lead=contacted, from_status="new", to_status="contacted")
    await feed.send(lev.LEAD_STATUS_CHANGED, lead_id, change, moved_at, rep)
    await lead_clock(pool_app, lead_id, 3)
    pool_clock.set(start + timedelta(days=20))
    await run(pool_client)
    assert await notices(pool_app, lead_id, "lead_warning") == 1
    pool_clock.set(start + timedelta(days=21))
    await run(pool_client)
    assert await notices(pool_app, lead_id, "lead_warning") == 2  # the warning of the new deadline
    assert await notices(pool_app, lead_id, "lead_release") == 0


async def test_closed_pooled_and_ruleless_leads_are_never_recycled(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any
) -> None:
    dept = f"/{unique('ld')}"
    await make_rule(pool_client, dept)
    other = f"/{unique('ld')}"
    await make_rule(pool_client, other, lead_no_work_days=None, lead_warn_days=None, no_interaction_days=5)
    rep = unique("rep")
    start = pool_clock.now().replace(microsecond=0)
    feed = EventFeed(producer)
    leads = {
        "converted": snapshot(str(uuid.uuid4()), rep, dept, start, status="converted"),
        "disqualified": snapshot(str(uuid.uuid4()), rep, dept, start, status="disqualified"),
        "in the pool": snapshot(str(uuid.uuid4()), None, dept, start),
        "no lead settings": snapshot(str(uuid.uuid4()), rep, other, start),
    }
    for lead in leads.values():
        await feed.send(lev.LEAD_CREATED, lead.lead_id, lev.LeadCreated(lead=lead), start, rep)
    for lead in leads.values():
        assert (await lead_clock(pool_app, lead.lead_id, 1))["work_ms"] == NEVER_MS or lead.department_path == other
    pool_clock.set(start + timedelta(days=40))
    await run(pool_client)
    await run(pool_client)
    for why, lead in leads.items():
        assert await notices(pool_app, lead.lead_id, "lead_warning") == 0, why
        assert await notices(pool_app, lead.lead_id, "lead_release") == 0, why
    for path in (dept, other):
        params = {"at": pool_clock.now().isoformat(), "department": path}
        assert (await pool_client.get("/v1/pool/preview", params=params, headers=ADMIN)).json()["leads"] == []


async def test_lead_settings_are_validated_and_published(pool_client: Any, pool_events: EventCollector) -> None:
    dept = f"/{unique('ld')}"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"lead_no_work_days": 0}, "lead_no_work_days"),
        ({"lead_no_work_days": 10, "lead_warn_days": 10}, "lead_warn_days"),
        ({"lead_no_work_days": 10, "lead_warn_days": -1}, "lead_warn_days"),
    ]
    for fields, field in bad:
        body = {"name": "bad", "department_path": dept, **fields}
        r = await pool_client.post("/v1/pool/rules", json=body, headers=ADMIN)
        assert r.status_code == 422, (fields, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field], r.json()
    rule = await make_rule(pool_client, dept)  # lead settings alone make a rule
    url = f"/v1/pool/rules/{rule['rule_id']}"
    r = await pool_client.patch(url, json={"lead_warn_days": 12}, headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lead_warn_days", r.text
    r = await pool_client.patch(url, json={"lead_no_work_days": 20}, headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["lead_no_work_days"] == 20, r.text
    changed = await pool_events.wait_for(2, type="crm.pool.rules_changed", subject=rule["rule_id"])
    data = [c.event["data"] for c in changed]
    assert data[0]["rule"]["lead_no_work_days"] == 10 and data[0]["rule"]["lead_warn_days"] == 3
    assert {"field": "lead_no_work_days", "old": 10, "new": 20} in data[1]["changes"]
