"""Customer distribution by profile field: only active customers, counts, shares and chart series.

In one department: c1 制造业/A/广东 [vip, 重点]; c2 制造业/B/广东 [vip]; c3 零售/A/no region, no tags;
c4 零售, deleted (excluded); c5 制造业, merged away into c1 (excluded). c2's first snapshot said 零售:
its update (version 2) is delivered before its creation (version 1), which must not win.
"""

from __future__ import annotations

from typing import Any

from crm_platform.contracts import customers as cev
from crm_platform.testing.event_feed import EventFeed, at, customer
from crm_platform.testing.fixtures import auth, unique


async def test_distribution_of_active_customers(client: Any, feed: EventFeed, wait_applied: Any) -> None:
    dept = f"/hq/{unique('d')}"
    rep = unique("r")
    c1, c2, c3, c4, c5 = (unique("c") for _ in range(5))
    day = at("2026-11-02")
    sent = [
        await feed.send(cev.CUSTOMER_CREATED, c1, cev.CustomerCreated(customer=customer(
            c1, rep, dept, day, industry="制造业", tier="A", region="广东", tags=["vip", "重点"])), day),
        await feed.send(cev.CUSTOMER_CREATED, c3, cev.CustomerCreated(customer=customer(
            c3, rep, dept, day, industry="零售", tier="A")), day),
        await feed.send(cev.CUSTOMER_CREATED, c4, cev.CustomerCreated(customer=customer(
            c4, rep, dept, day, industry="零售")), day),
        await feed.send(cev.DELETED, c4, cev.Deleted(customer=customer(
            c4, rep, dept, day, industry="零售", status="deleted")), day),
        await feed.send(cev.CUSTOMER_CREATED, c5, cev.CustomerCreated(customer=customer(
            c5, rep, dept, day, industry="制造业")), day),
        await feed.send(cev.MERGED_AWAY, c5, cev.MergedAway(customer=customer(
            c5, rep, dept, day, industry="制造业", status="merged", merged_into=c1), survivor_id=c1), day),
    ]  # fmt: skip
    # c2: version 2 published first, then version 1 (stale: ignored).
    v1 = cev.CUSTOMER_CREATED.build(
        source="/crm/customers", subject=c2, aggregate_version=1, time=day, actor=rep,
        data=cev.CustomerCreated(customer=customer(c2, rep, dept, day, industry="零售", tier="B", region="广东")),
    )  # fmt: skip
    v2 = cev.CUSTOMER_UPDATED.build(
        source="/crm/customers", subject=c2, aggregate_version=2, time=at("2026-11-03"), actor=rep,
        data=cev.CustomerUpdated(
            customer=customer(c2, rep, dept, day, industry="制造业", tier="B", region="广东", tags=["vip"]),
            changes=[cev.FieldChange(field="industry", old="零售", new="制造业")],
        ),
    )  # fmt: skip
    await feed.resend(v2)
    await feed.resend(v1)
    await wait_applied([*sent, v1, v2])

    admin = auth("boss", ["admin"], "/hq")

    async def dist(field: str, **extra: Any) -> Any:
        r = await client.get(
            "/v1/reports/distribution", params={"field": field, "department_path": dept, **extra}, headers=admin
        )
        assert r.status_code == 200, r.text
        return r

    industry = (await dist("industry")).json()
    assert industry["customers"] == 3  # c1, c2, c3
    assert [(x["value"], x["count"]) for x in industry["rows"]] == [("制造业", 2), ("零售", 1)]
    assert industry["chart"] == {"labels": ["制造业", "零售"], "series": [{"name": "industry", "data": [2, 1]}]}
    tags = (await dist("tag")).json()
    assert [(x["value"], x["count"]) for x in tags["rows"]] == [("vip", 2), ("(none)", 1), ("重点", 1)]
    region = (await dist("region")).json()
    assert [(x["value"], x["count"]) for x in region["rows"]] == [("广东", 2), ("(none)", 1)]
    tier = (await dist("tier")).json()
    assert [(x["value"], x["count"], x["share"]) for x in tier["rows"]] == [("A", 2, 0.6667), ("B", 1, 0.3333)]

    csv = await dist("industry", format="csv")
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in csv.headers["content-disposition"]
    assert csv.content.startswith("\ufeff".encode())  # Excel reads the Chinese right
    assert csv.content.decode("utf-8").splitlines() == ["\ufeffvalue,count,share", "制造业,2,0.6667", "零售,1,0.3333"]

    # A rep of the same department who owns none of them sees nothing; the owner sees all three.
    other = (await client.get("/v1/reports/distribution", params={"field": "industry"},
                              headers=auth(unique("r"), ["rep"], dept))).json()  # fmt: skip
    assert other["customers"] == 0
    own = (await client.get("/v1/reports/distribution", params={"field": "industry"},
                            headers=auth(rep, ["rep"], dept))).json()  # fmt: skip
    assert own["customers"] == 3
