"""Activity: interactions per rep, channel and bucket; new customers; not followed up; overdue tasks.

Now is 2026-11-20 12:00 Shanghai (04:00 UTC). Reps A (张三) and B (李四) in one department.
- Customers: c1, c2 (A) created 11-01; c3 (B) created 11-03; c4 (A) created 10-20 (before the period).
- Interactions: i1, i2 A phone c1 on 11-18 (10:00, 15:00); i3 A visit c2 on 11-03 00:30 Shanghai
  (11-02 in UTC: the day bucket follows the time zone); i4 B email c3 on 11-19, published BEFORE c3 exists;
  i5 A phone c1 on 11-10, then deleted (not counted); i1 delivered twice (counted once).
- Tasks: t1 A due 11-19 open (overdue); t2 A due 11-25 open; t3 B due 11-15 done; t4 B due 11-18 open (overdue).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed, at, customer
from crm_platform.testing.fixtures import auth, unique


def _interaction(iid: str, cid: str, author: str, dept: str, channel: str, when: datetime) -> iev.InteractionSnapshot:
    return iev.InteractionSnapshot(
        interaction_id=iid,
        channel=channel,  # type: ignore[arg-type]
        customer_id=cid,
        author_id=author,
        author_department_path=dept,
        occurred_at=when,
        recorded_at=when,
        recorded_late=False,
        summary="跟进",
        updated_at=when,
    )


async def _log(feed: EventFeed, snap: iev.InteractionSnapshot) -> EventEnvelope:
    data = iev.InteractionLogged(
        interaction_id=snap.interaction_id,
        customer_id=snap.customer_id,
        author_id=snap.author_id,
        channel=snap.channel,
        occurred_at=snap.occurred_at,
        interaction=snap,
    )
    return await feed.send(iev.INTERACTION_LOGGED, snap.interaction_id, data, snap.recorded_at, snap.author_id)


def _task(tid: str, assignee: str, dept: str, due: datetime, status: str = "open") -> iev.TaskSnapshot:
    return iev.TaskSnapshot(
        task_id=tid,
        title="回访",
        due_at=due,
        assignee_id=assignee,
        assignee_department_path=dept,
        created_by=assignee,
        status=status,  # type: ignore[arg-type]
        created_at=at("2026-11-01"),
        updated_at=at("2026-11-01"),
    )


async def test_activity_counts_per_rep_channel_and_bucket(client: Any, feed: EventFeed, wait_applied: Any) -> None:
    dept = f"/hq/{unique('d')}"
    a, b = unique("a"), unique("b")
    c1, c2, c3, c4 = (unique("c") for _ in range(4))
    sent = [await feed.user(a, "张三", dept), await feed.user(b, "李四", dept)]
    # Out of order across services: c3's interaction comes before c3 itself.
    sent.append(await _log(feed, _interaction(unique("i"), c3, b, dept, "email", at("2026-11-19", "09:00"))))
    i1 = await _log(feed, _interaction(unique("i"), c1, a, dept, "phone", at("2026-11-18", "10:00")))
    await feed.resend(i1)
    sent.append(i1)
    sent.append(await _log(feed, _interaction(unique("i"), c1, a, dept, "phone", at("2026-11-18", "15:00"))))
    sent.append(await _log(feed, _interaction(unique("i"), c2, a, dept, "visit", at("2026-11-03", "00:30"))))
    i5 = _interaction(unique("i"), c1, a, dept, "phone", at("2026-11-10"))
    sent.append(await _log(feed, i5))
    i5.status = "deleted"
    sent.append(
        await feed.send(
            iev.INTERACTION_DELETED, i5.interaction_id, iev.InteractionDeleted(interaction=i5), at("2026-11-11"), a
        )
    )
    for cid, owner, day in ((c1, a, "2026-11-01"), (c2, a, "2026-11-01"), (c3, b, "2026-11-03"), (c4, a, "2026-10-20")):
        snap = customer(cid, owner, dept, at(day), name=f"客户{cid[-3:]}")
        sent.append(await feed.send(cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap), at(day), owner))
    for tid, who, due, status in (
        (unique("t"), a, at("2026-11-19"), "open"),
        (unique("t"), a, at("2026-11-25"), "open"),
        (unique("t"), b, at("2026-11-15"), "done"),
        (unique("t"), b, at("2026-11-18"), "open"),
    ):
        sent.append(
            await feed.send(
                iev.TASK_CREATED, tid, iev.TaskCreated(task=_task(tid, who, dept, due, status)), at("2026-11-01")
            )
        )
    await wait_applied(sent)

    admin = auth("boss", ["admin"], "/hq")
    params = {"period": "2026-11", "department_path": dept, "stale_days": 14}
    r = await client.get("/v1/reports/activity", params=params, headers=admin)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["time_zone"] == "Asia/Shanghai"
    counts = {(x["rep_name"], x["channel"], x["bucket"]): x["count"] for x in report["interactions"]}
    assert counts == {
        ("张三", "phone", "2026-11-18"): 2,  # i1 (twice delivered) + i2; i5 deleted
        ("张三", "visit", "2026-11-03"): 1,  # 00:30 Shanghai is still 11-02 in UTC
        ("李四", "email", "2026-11-19"): 1,  # arrived before its customer
    }
    assert {x["rep_name"]: x["count"] for x in report["new_customers"]} == {"张三": 2, "李四": 1}  # c4 is October's
    stale = {x["customer_id"]: x for x in report["not_followed_up"]}
    # Cut-off 11-06 12:00: c2 last seen 11-03 00:30 (17.48 days ago), c4 never; c1 and c3 recently.
    assert set(stale) == {c2, c4}
    assert stale[c2]["days_since"] == 17.48 and stale[c4]["last_interaction_at"] is None
    assert {x["rep_id"]: x["count"] for x in report["not_followed_up_per_rep"]} == {a: 2}
    assert {x["rep_id"]: x["count"] for x in report["overdue_tasks"]} == {a: 1, b: 1}

    weekly = (await client.get("/v1/reports/activity", params={**params, "bucket": "week"}, headers=admin)).json()
    assert {(x["channel"], x["bucket"]): x["count"] for x in weekly["interactions"]} == {
        ("phone", "2026-W47"): 2,
        ("visit", "2026-W45"): 1,
        ("email", "2026-W47"): 1,
    }
    utc = (await client.get("/v1/reports/activity", params={**params, "tz": "UTC"}, headers=admin)).json()
    assert ("visit", "2026-11-02") in {(x["channel"], x["bucket"]) for x in utc["interactions"]}

    # A rep sees only their own work.
    mine = (
        await client.get("/v1/reports/activity", params={"period": "2026-11"}, headers=auth(b, ["rep"], dept))
    ).json()
    assert [(x["rep_id"], x["count"]) for x in mine["interactions"]] == [(b, 1)]
    assert [x["rep_id"] for x in mine["overdue_tasks"]] == [b]
    # CSV of one section, names in Chinese.
    r = await client.get(
        "/v1/reports/activity", params={**params, "section": "overdue_tasks"}, headers={**admin, "Accept": "text/csv"}
    )
    lines = r.content.decode("utf-8").lstrip("\ufeff").strip().splitlines()
    assert lines[0] == "rep_id,rep_name,count" and sorted(lines[1:]) == sorted([f"{a},张三,1", f"{b},李四,1"])
