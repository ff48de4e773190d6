"""The lead and campaign reports, from lead, campaign and opportunity events published on the broker."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import httpx

from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import NOW, EventFeed, opportunity
from crm_platform.testing.fixtures import auth
from crm_platform.testing.roles import role_event

T0 = NOW - timedelta(days=3)


def campaign(cid: str, name: str, channel: str, cost: str, owner: str, dept: str) -> lev.CampaignSnapshot:
    return lev.CampaignSnapshot(
        campaign_id=cid,
        name=name,
        channel=channel,  # type: ignore[arg-type]
        budget=lev.Money(amount="50000.00", currency="CNY"),
        start_date=date(2026, 11, 1),
        end_date=date(2026, 11, 30),
        owner_id=owner,
        department_path=dept,
        status="active",
        cost_total=lev.Money(amount=cost, currency="CNY"),
        cost_count=1,
        created_at=T0,
        updated_at=T0,
    )


def lead(
    lid: str, owner: str, dept: str, status: str, campaign_id: str | None, source: str, **more: Any
) -> lev.LeadSnapshot:
    return lev.LeadSnapshot(
        lead_id=lid,
        company_name=f"公司 {lid[:8]}",
        phones=[f"+86138{uuid.uuid4().int % 10**8:08d}"],
        source=source,
        campaign_id=campaign_id,
        owner_id=owner,
        department_path=dept,
        status=status,  # type: ignore[arg-type]
        created_at=T0,
        updated_at=T0,
        **more,
    )


async def _world(feed: EventFeed, wait_applied: Any) -> dict[str, Any]:
    """3 campaigns; leads in several states; a converted lead whose opportunity is won."""
    tag = uuid.uuid4().hex[:8]
    dept = f"/hq/leadrep-{tag}"
    rep, other = f"rep-{tag}", f"other-{tag}"
    src, src2 = f"expo-{tag}", f"web-{tag}"
    c1, c2, c3 = (f"camp-{tag}-{i}" for i in range(3))
    sent: list[EventEnvelope] = []
    for cid, name, channel, cost in (
        (c1, "展会", "exhibition", "1000.00"),
        (c2, "投放", "online_ads", "300.00"),
        (c3, "内容", "content", "0.00"),
    ):
        sent.append(
            await feed.send(
                lev.CAMPAIGN_CREATED,
                cid,
                lev.CampaignCreated(campaign=campaign(cid, name, channel, cost, rep, dept)),
                T0,
            )
        )
    # c1: 4 leads of rep: new, contacted, qualified then disqualified, converted (opportunity won 5000)
    ids = [f"lead-{tag}-{i}" for i in range(7)]
    for i, status in enumerate(("new", "contacted", "qualified")):
        sent.append(
            await feed.send(lev.LEAD_CREATED, ids[i], lev.LeadCreated(lead=lead(ids[i], rep, dept, "new", c1, src)), T0)
        )
        if status != "new":
            snap = lead(ids[i], rep, dept, status, c1, src)
            ev = lev.LeadStatusChanged(lead=snap, from_status="new", to_status=status)  # type: ignore[arg-type]
            sent.append(await feed.send(lev.LEAD_STATUS_CHANGED, ids[i], ev, T0 + timedelta(hours=1)))
    disq = lead(ids[2], rep, dept, "disqualified", c1, src, disqualified_reason="no budget")
    sent.append(
        await feed.send(
            lev.LEAD_STATUS_CHANGED,
            ids[2],
            lev.LeadStatusChanged(lead=disq, from_status="qualified", to_status="disqualified", reason="no budget"),
            T0 + timedelta(hours=2),
        )
    )
    conv, cust, opp = ids[3], f"cust-{tag}", f"opp-{tag}"
    sent.append(
        await feed.send(lev.LEAD_CREATED, conv, lev.LeadCreated(lead=lead(conv, rep, dept, "qualified", c1, src)), T0)
    )
    # The opportunity arrives before the lead's converted event (its snapshot names the lead).
    o = opportunity(
        opp,
        cust,
        rep,
        dept,
        "p",
        "won",
        "5000.00",
        T0,
        T0 + timedelta(days=1),
        probability=100,
        status="won",
        won_on=date(2026, 11, 18),
    ).model_copy(update={"lead_id": conv})
    sent.append(await feed.send(pev.OPPORTUNITY_CREATED, opp, pev.OpportunityCreated(opportunity=o), T0))
    done = lead(conv, rep, dept, "converted", c1, src, customer_id=cust, opportunity_id=opp)
    sent.append(
        await feed.send(
            lev.LEAD_CONVERTED,
            conv,
            lev.LeadConverted(
                lead=done, conversion_id=f"{conv}:1", customer_id=cust, opportunity_id=opp, existing_customer=False
            ),
            T0 + timedelta(days=1),
        )
    )
    # c2: 2 leads, one of another rep (same department), one deleted
    sent.append(
        await feed.send(lev.LEAD_CREATED, ids[4], lev.LeadCreated(lead=lead(ids[4], other, dept, "new", c2, src2)), T0)
    )
    sent.append(
        await feed.send(lev.LEAD_CREATED, ids[5], lev.LeadCreated(lead=lead(ids[5], rep, dept, "new", c2, src2)), T0)
    )
    sent.append(
        await feed.send(
            lev.LEAD_DELETED, ids[5], lev.LeadDeleted(lead=lead(ids[5], rep, dept, "new", c2, src2, deleted=True)), T0
        )
    )
    # c3: one lead, no cost
    sent.append(
        await feed.send(
            lev.LEAD_CREATED, ids[6], lev.LeadCreated(lead=lead(ids[6], other, dept, "contacted", c3, src2)), T0
        )
    )
    await wait_applied(sent)
    return {"dept": dept, "rep": rep, "other": other, "c": (c1, c2, c3), "src": (src, src2), "sent": sent}


def _rows(r: httpx.Response, key: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return {row[key]: row for row in r.json()["rows"]}


async def test_campaign_report_figures(client: httpx.AsyncClient, feed: EventFeed, wait_applied: Any) -> None:
    w = await _world(feed, wait_applied)
    c1, c2, c3 = w["c"]
    manager = auth(f"mgr-{w['dept']}", ["manager"], w["dept"])
    rows = _rows(
        await client.get("/v1/reports/campaigns", params={"department": w["dept"]}, headers=manager), "campaign_id"
    )
    assert set(rows) == {c1, c2, c3}
    one = rows[c1]
    assert (one["leads"], one["contacted"], one["qualified"], one["converted"]) == (4, 3, 2, 1)
    assert (one["opportunities"], one["won"], one["won_amount"], one["currency"]) == (1, 1, "5000.00", "CNY")
    assert (one["cost"], one["cost_per_lead"], one["cost_per_converted"]) == ("1000.00", "250.00", "1000.00")
    assert one["roi"] == "4.0000"  # (5000 - 1000) / 1000
    assert one["conversion_rate"] == 0.25 and one["name"] == "展会"
    two = rows[c2]  # the deleted lead left out
    assert (two["leads"], two["cost_per_lead"], two["cost_per_converted"], two["roi"]) == (1, "300.00", None, "-1.0000")
    assert rows[c3]["roi"] is None and rows[c3]["cost_per_lead"] == "0.00"
    only_ads = _rows(
        await client.get(
            "/v1/reports/campaigns", params={"department": w["dept"], "channel": "online_ads"}, headers=manager
        ),
        "campaign_id",
    )
    assert set(only_ads) == {c2}
    # One campaign's row (what the console's campaign page asks for).
    only_c1 = _rows(
        await client.get("/v1/reports/campaigns", params={"department": w["dept"], "campaign_id": c1}, headers=manager),
        "campaign_id",
    )
    assert set(only_c1) == {c1} and only_c1[c1]["roi"] == "4.0000"
    # A period before the leads: nothing.
    before = {"department": w["dept"], "from": "2020-01-01", "to": "2020-01-31"}
    assert (await client.get("/v1/reports/campaigns", params=before, headers=manager)).json()["rows"] == []
    # A repeated event changes nothing.
    for envelope in w["sent"]:
        await feed.resend(envelope)
    await wait_applied(w["sent"])
    again = _rows(
        await client.get("/v1/reports/campaigns", params={"department": w["dept"]}, headers=manager), "campaign_id"
    )
    assert again == rows
    csv = await client.get("/v1/reports/campaigns", params={"department": w["dept"], "format": "csv"}, headers=manager)
    assert csv.status_code == 200 and "cost_per_lead" in csv.text


async def test_rep_sees_own_leads_only(client: httpx.AsyncClient, feed: EventFeed, wait_applied: Any) -> None:
    w = await _world(feed, wait_applied)
    c1, c2, c3 = w["c"]
    rep = auth(w["rep"], ["rep"], w["dept"])
    rows = _rows(await client.get("/v1/reports/campaigns", headers=rep), "campaign_id")
    assert set(rows) == {c1}  # c2's visible lead and c3's are another rep's
    assert rows[c1]["leads"] == 4
    other = _rows(
        await client.get("/v1/reports/campaigns", headers=auth(w["other"], ["rep"], w["dept"])), "campaign_id"
    )
    assert set(other) == {c2, c3}
    # A department the rep's scope does not reach: 403.
    r = await client.get("/v1/reports/lead-funnel", params={"department": "/elsewhere"}, headers=rep)
    assert r.status_code == 403


async def test_sources_and_funnel(client: httpx.AsyncClient, feed: EventFeed, wait_applied: Any) -> None:
    w = await _world(feed, wait_applied)
    src, src2 = w["src"]
    manager = auth(f"mgr-{w['dept']}", ["manager"], w["dept"])
    rows = _rows(
        await client.get("/v1/reports/lead-sources", params={"department": w["dept"]}, headers=manager), "source"
    )
    assert (rows[src]["leads"], rows[src]["won"], rows[src]["won_amounts"]) == (
        4,
        1,
        [{"amount": "5000.00", "currency": "CNY"}],
    )
    assert (rows[src2]["leads"], rows[src2]["contacted"]) == (2, 1)
    funnel = await client.get(
        "/v1/reports/lead-funnel", params={"department": w["dept"], "source": src}, headers=manager
    )
    steps = {r["step"]: r for r in funnel.json()["rows"]}
    assert [steps[s]["count"] for s in ("lead", "qualified", "customer", "opportunity", "won")] == [4, 2, 1, 1, 1]
    assert steps["qualified"]["rate_from_previous"] == 0.5 and steps["won"]["rate_from_leads"] == 0.25
    by_campaign = await client.get("/v1/reports/lead-funnel", params={"campaign_id": w["c"][2]}, headers=manager)
    assert by_campaign.json()["rows"][0]["count"] == 1
    bad = await client.get(
        "/v1/reports/lead-funnel", params={"from": "2026-11-05", "to": "2026-11-01"}, headers=manager
    )
    assert bad.status_code == 422 and "to" in bad.text
    far = await client.get("/v1/reports/campaigns", params={"to": "9999-12-31"}, headers=manager)
    assert far.status_code == 422 and "to" in far.text


async def test_hidden_amounts_are_left_out(
    client: httpx.AsyncClient, reporting_app: Any, feed: EventFeed, wait_applied: Any
) -> None:
    role = f"marketing-{uuid.uuid4().hex[:6]}"
    await reporting_app.state.kit.roles.apply(
        role_event(
            role,
            1,
            permissions=["account:self", "reports:view"],
            scopes={"leads": "subtree", "reports": "subtree"},
            fields={"opportunities": {"amount": "hidden"}},
        )
    )
    w = await _world(feed, wait_applied)
    c1 = w["c"][0]
    marketing = auth(f"mkt-{w['dept']}", [role], w["dept"])
    rows = _rows(await client.get("/v1/reports/campaigns", headers=marketing), "campaign_id")
    one = rows[c1]
    assert (one["won"], one["cost"], one["cost_per_lead"]) == (1, "1000.00", "250.00")
    assert not {"won_amount", "won_amounts_other", "roi"} & set(one)
    funnel = await client.get("/v1/reports/lead-funnel", params={"campaign_id": c1}, headers=marketing)
    assert "won_amounts" not in funnel.json() and funnel.json()["rows"][-1]["count"] == 1
    assert "5000.00" not in (await client.get("/v1/reports/lead-sources", headers=marketing)).text
