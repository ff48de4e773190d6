"""The customer 360 timeline (with a merged duplicate) and the data-quality KPIs, by hand.

Rep A (王五) in one department, November 2026:
- c1 created 11-01: 制造业, 广东, 展会, tier A, a contact with a phone: complete.
- c3 created 11-01: 北京, 官网, tier B, a contact with neither phone nor email, no industry: incomplete.
- c2 created 11-02 (a duplicate, contact with an email); interaction ia on c2 11-03; c2 merged into c1 11-04.
- interaction i1 on c1 11-05 10:00, c1 updated 11-05 12:00 (within 24 h);
  interaction i2 on c3 11-06 10:00, c3 updated 11-08 (too late).
- opportunity o on c1: created 11-05 11:00 in s1, → s2 11-07 (2 days: on time, the limit is 30),
  → s3 11-20 after 40 days in s2 (late).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed, at, customer, opportunity, pipeline
from crm_platform.testing.fixtures import auth, unique


async def _interaction(feed: EventFeed, cid: str, author: str, dept: str, when: datetime) -> EventEnvelope:
    iid = unique("i")
    snap = iev.InteractionSnapshot(
        interaction_id=iid, channel="phone", customer_id=cid, author_id=author, author_department_path=dept,
        occurred_at=when, recorded_at=when, recorded_late=False, summary="电话沟通", updated_at=when,
    )  # fmt: skip
    data = iev.InteractionLogged(
        interaction_id=iid, customer_id=cid, author_id=author, channel="phone", occurred_at=when, interaction=snap
    )
    return await feed.send(iev.INTERACTION_LOGGED, iid, data, when, author)


async def test_timeline_and_quality(client: Any, feed: EventFeed, wait_applied: Any) -> None:
    dept, pid = f"/hq/{unique('d')}", unique("p")
    a = unique("a")
    c1, c2, c3, oid = unique("c"), unique("c"), unique("c"), unique("o")
    phone = cev.ContactData(contact_id=unique("k"), name="赵六", phones=["+8613800138000"])
    mute = cev.ContactData(contact_id=unique("k"), name="钱七")
    mail = cev.ContactData(contact_id=unique("k"), name="孙八", emails=["s@example.com"])
    full = {"industry": "制造业", "region": "广东", "source": "展会", "tier": "A", "name": "华南制造"}
    s: list[EventEnvelope] = [await feed.user(a, "王五", dept)]
    day1, day2 = at("2026-11-01", "09:00"), at("2026-11-02", "09:00")
    c1_snap = customer(c1, a, dept, day1, contacts=[phone], **full)  # type: ignore[arg-type]
    s.append(
        await feed.send(cev.CUSTOMER_CREATED, c1, cev.CustomerCreated(customer=c1_snap, contacts=[phone]), day1, a)
    )
    c3_snap = customer(c3, a, dept, day1, region="北京", source="官网", tier="B", contacts=[mute])
    s.append(await feed.send(cev.CUSTOMER_CREATED, c3, cev.CustomerCreated(customer=c3_snap, contacts=[mute]), day1, a))
    c2_snap = customer(c2, a, dept, day2, name="华南制造(重复)", contacts=[mail])
    s.append(await feed.send(cev.CUSTOMER_CREATED, c2, cev.CustomerCreated(customer=c2_snap, contacts=[mail]), day2, a))
    s.append(await _interaction(feed, c2, a, dept, at("2026-11-03", "10:00")))
    merged_at = at("2026-11-04", "10:00")
    away = customer(c2, a, dept, day2, status="merged", merged_into=c1, contacts=[])
    s.append(await feed.send(cev.MERGED_AWAY, c2, cev.MergedAway(customer=away, survivor_id=c1), merged_at, a))
    c1_merged = customer(c1, a, dept, day1, contacts=[phone, mail], **full)  # type: ignore[arg-type]
    merged = cev.Merged(customer=c1_merged, merged_customer_id=c2, moved_contact_ids=[mail.contact_id])
    s.append(await feed.send(cev.MERGED, c1, merged, at("2026-11-04", "10:01"), a))
    s.append(await _interaction(feed, c1, a, dept, at("2026-11-05", "10:00")))
    configured = pev.PipelineConfigured(pipeline=pipeline(pid), action="created")
    s.append(await feed.send(pev.PIPELINE_CONFIGURED, pid, configured, day1))
    created = at("2026-11-05", "11:00")
    snap = opportunity(oid, c1, a, dept, pid, "s1", "30000.00", created, created, probability=10)
    s.append(await feed.send(pev.OPPORTUNITY_CREATED, oid, pev.OpportunityCreated(opportunity=snap), created, a))
    updated = cev.CustomerUpdated(
        customer=customer(c1, a, dept, day1, contacts=[phone, mail], **{**full, "tier": "S"}),  # type: ignore[arg-type]
        changes=[cev.FieldChange(field="tier", old="A", new="S")],
    )
    s.append(await feed.send(cev.CUSTOMER_UPDATED, c1, updated, at("2026-11-05", "12:00"), a))
    s.append(await _interaction(feed, c3, a, dept, at("2026-11-06", "10:00")))
    c3_updated = cev.CustomerUpdated(
        customer=customer(c3, a, dept, day1, region="北京", source="官网", tier="A", contacts=[mute]),
        changes=[cev.FieldChange(field="tier", old="B", new="A")],
    )
    s.append(await feed.send(cev.CUSTOMER_UPDATED, c3, c3_updated, at("2026-11-08", "10:00"), a))
    for frm, to, day, days in (("s1", "s2", "2026-11-07", 2), ("s2", "s3", "2026-11-20", 40)):
        moved = opportunity(oid, c1, a, dept, pid, to, "30000.00", created, at(day), probability=30)
        move = pev.StageMove(
            from_stage_id=f"{pid}-{frm}", from_stage_name=frm, to_stage_id=f"{pid}-{to}", to_stage_name=to,
            moved_by=a, moved_at=at(day), time_in_previous_stage_seconds=days * 86400,
        )  # fmt: skip
        data = pev.StageChanged(opportunity=moved, move=move)
        s.append(await feed.send(pev.OPPORTUNITY_STAGE_CHANGED, oid, data, at(day), a))
    await wait_applied(s)

    # --- the timeline: c1's own events and its merged duplicate's, in time order ---------------
    me = auth(a, ["rep"], dept)
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"/v1/customers/{c1}/timeline", params=params, headers=me)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["merged_customer_ids"] == [c2]
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # 10 events: c1 created, c2 created, ia, c2 merged away, c1 merged, i1, o created, c1 updated,
    # o → s2, o → s3; nothing of c3 (c3 created, i2, c3 updated are c3's).
    types = [i["type"] for i in items]
    assert types == [
        "crm.customer.created",
        "crm.customer.created",
        "crm.interaction.logged",
        "crm.customer.merged_away",
        "crm.customer.merged",
        "crm.interaction.logged",
        "crm.opportunity.created",
        "crm.customer.updated",
        "crm.opportunity.stage_changed",
        "crm.opportunity.stage_changed",
    ]
    assert pages == 3 and len({i["event_id"] for i in items}) == 10
    assert [i["customer_id"] for i in items[:3]] == [c1, c2, c2]
    assert items[7]["summary"] == "Customer updated: tier" and items[7]["actor_name"] == "王五"
    assert items[0]["time"] == "2026-11-01T09:00:00+08:00"
    assert "s1 → s2" in items[8]["summary"]
    # Someone else's rep cannot read it (404: no hint it exists); the department's manager can.
    assert (
        await client.get(f"/v1/customers/{c1}/timeline", headers=auth(unique("r"), ["rep"], dept))
    ).status_code == 404
    manager = auth(unique("m"), ["manager"], dept)
    assert (await client.get(f"/v1/customers/{c1}/timeline", headers=manager)).status_code == 200

    # --- data quality and adoption -----------------------------------------------------------
    r = await client.get("/v1/reports/quality", params={"period": "2026-11", "department_path": dept}, headers=manager)
    assert r.status_code == 200, r.text
    q = r.json()
    row = next(x for x in q["rows"] if x["rep_id"] == a)
    assert row["rep_name"] == "王五"
    # c1 complete, c3 lacks industry and a reachable contact; c2 merged away does not count: 1/2.
    assert (row["customers"], row["complete"], row["completeness"]) == (2, 1, 0.5)
    assert q["overall"]["missing_per_field"] == {
        "name": 0, "industry": 1, "region": 0, "source": 0, "tier": 0, "contact": 1,
    }  # fmt: skip
    # ia (no update of c2 after it), i1 (c1 updated 2 h later), i2 (c3 updated 2 days later): 1/3.
    assert (row["interactions"], row["followed_by_update_24h"], row["update_within_24h_rate"]) == (3, 1, 0.3333)
    # s1 left after 2 days (on time), s2 after 40 (late): 1/2.
    assert (row["stage_moves"], row["stage_moves_on_time"], row["on_time_rate"]) == (2, 1, 0.5)
    # Two updates for two active customers over November (30 / 30.44 months): 1.015 per customer per month.
    assert (row["customer_updates"], row["updates_per_customer_per_month"], row["merges"]) == (2, 1.015, 1)
    csv = await client.get(
        "/v1/reports/quality", params={"period": "2026-11", "department_path": dept, "format": "csv"}, headers=manager
    )
    lines = csv.content.decode("utf-8").splitlines()
    assert lines[0].startswith("\ufeffrep_id,rep_name,customers,complete,completeness")
    assert lines[1].startswith(f"{a},王五,2,1,0.5,3,1,0.3333,2,1,0.5,2,1.015,1")
