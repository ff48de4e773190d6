"""Field-level permissions in reports (issue 16): a role that hides opportunities' amounts and
customers' industry gets no figure made of them, while the built-in rep role gets every one."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI

from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed, at, customer, opportunity, pipeline
from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import role_event

ROLE = f"service-staff-{uuid.uuid4().hex[:6]}"
FIELDS = {"opportunities": {"amount": "hidden"}, "customers": {"industry": "hidden"}}


async def test_reports_leave_out_what_the_role_hides(
    client: Any, reporting_app: FastAPI, feed: EventFeed, wait_applied: Any
) -> None:
    await reporting_app.state.kit.roles.apply(
        role_event(ROLE, 1, permissions=["account:self", "reports:view", "customers:view"], fields=FIELDS)
    )
    dept, pid, a, cid, oid = f"/hq/{unique('d')}", unique("p"), unique("a"), unique("c"), unique("o")
    day = at("2026-11-03", "09:00")
    sent: list[EventEnvelope] = [await feed.user(a, "客服甲", dept)]
    configured = pev.PipelineConfigured(pipeline=pipeline(pid), action="created")
    sent.append(await feed.send(pev.PIPELINE_CONFIGURED, pid, configured, day))
    snap = customer(cid, a, dept, day, industry="制造业", tier="A")
    sent.append(await feed.send(cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap, contacts=[]), day, a))
    created = at("2026-11-04", "10:00")
    opp = opportunity(oid, cid, a, dept, pid, "s1", "30000.00", created, created, probability=10)
    sent.append(await feed.send(pev.OPPORTUNITY_CREATED, oid, pev.OpportunityCreated(opportunity=opp), created, a))
    await wait_applied(sent)

    staff, rep = auth(a, [ROLE], dept), auth(a, ["rep"], dept)

    def line(body: dict[str, Any]) -> str:
        return str(next(i["summary"] for i in body["items"] if i["type"] == "crm.opportunity.created"))

    r = await client.get(f"/v1/customers/{cid}/timeline", headers=staff)
    assert r.status_code == 200, r.text
    assert "30000.00" not in r.text and line(r.json()).endswith("created")
    assert line((await client.get(f"/v1/customers/{cid}/timeline", headers=rep)).json()).endswith(": 30000.00 CNY")

    params = {"period": "2026-11", "pipeline_id": pid}
    r = await client.get("/v1/reports/funnel", params=params, headers=staff)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "won_amount" not in body["summary"] and body["rows"][0]["current_count"] == 1
    assert all("current_amount" not in row for row in body["rows"])
    assert "other_currencies" not in body and body["currency"] == "CNY"  # the other currencies' sums are amounts too
    csv_text = (await client.get("/v1/reports/funnel", params={**params, "format": "csv"}, headers=staff)).text
    assert "current_amount" not in csv_text and "30000.00" not in csv_text
    full = (await client.get("/v1/reports/funnel", params=params, headers=rep)).json()
    assert full["rows"][0]["current_amount"] == "30000.00" and full["other_currencies"] == []

    r = await client.get("/v1/reports/forecast", params={"period": "2026-11"}, headers=staff)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "amount", r.text
    assert (await client.get("/v1/reports/forecast", params={"period": "2026-11"}, headers=rep)).status_code == 200

    r = await client.get("/v1/reports/distribution", params={"field": "industry"}, headers=staff)
    assert r.status_code == 403 and r.json()["type"].endswith("field-hidden"), r.text
    r = await client.get("/v1/reports/distribution", params={"field": "tier"}, headers=staff)
    assert r.status_code == 200 and r.json()["rows"], r.text

    r = await client.get("/v1/reports/quality", params={"period": "2026-11"}, headers=staff)
    assert r.status_code == 200, r.text
    quality = r.json()
    assert "industry" not in quality["required_fields"] and "industry" not in quality["overall"]["missing_per_field"]
    assert all("missing_industry" not in row for row in quality["rows"])
    full_quality = (await client.get("/v1/reports/quality", params={"period": "2026-11"}, headers=rep)).json()
    assert "industry" in full_quality["required_fields"]


async def test_the_timeline_leaves_out_interaction_and_feedback_content_the_role_hides(
    client: Any, reporting_app: FastAPI, feed: EventFeed, wait_applied: Any
) -> None:
    role = f"follow-up-{uuid.uuid4().hex[:6]}"
    fields = {"interactions": {"summary": "hidden", "minutes": "hidden"}, "feedback": {"resolution": "hidden"}}
    await reporting_app.state.kit.roles.apply(
        role_event(role, 1, permissions=["account:self", "reports:view", "customers:view"], fields=fields)
    )
    dept, a, cid, iid, fid = f"/hq/{unique('d')}", unique("a"), unique("c"), unique("i"), unique("f")
    day = at("2026-11-05", "09:00")
    sent: list[EventEnvelope] = [await feed.user(a, "客服乙", dept)]
    snap = customer(cid, a, dept, day)
    sent.append(await feed.send(cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap, contacts=[]), day, a))
    met = at("2026-11-05", "10:00")
    visit = iev.InteractionSnapshot(
        interaction_id=iid, channel="visit", customer_id=cid, author_id=a, author_department_path=dept,
        occurred_at=met, recorded_at=met, recorded_late=False, summary="谈妥底价 80 万", minutes="纪要",
        updated_at=met,
    )  # fmt: skip
    logged = iev.InteractionLogged(
        interaction_id=iid, customer_id=cid, author_id=a, channel="visit", occurred_at=met, interaction=visit
    )
    sent.append(await feed.send(iev.INTERACTION_LOGGED, iid, logged, met, a))
    later = at("2026-11-05", "11:00")
    changes = [iev.FieldChange(field="minutes", new="新纪要"), iev.FieldChange(field="location", new="杭州")]
    updated = iev.InteractionUpdated(interaction=visit, changes=changes)
    sent.append(await feed.send(iev.INTERACTION_UPDATED, iid, updated, later, a))
    fb = iev.FeedbackSnapshot(
        feedback_id=fid, kind="complaint", title="发票有误", description="金额不符", customer_id=cid,
        status="resolved", reported_by=a, reporter_department_path=dept, resolution="退款 5000 元",
        opened_at=later, updated_at=later,
    )  # fmt: skip
    resolved = iev.FeedbackResolved(feedback=fb, from_status="in_progress", resolution="退款 5000 元")
    sent.append(await feed.send(iev.FEEDBACK_RESOLVED, fid, resolved, at("2026-11-05", "12:00"), a))
    await wait_applied(sent)

    def lines(body: dict[str, Any]) -> dict[str, str]:
        return {
            i["type"]: i["summary"]
            for i in body["items"]
            if i["type"].startswith(("crm.interaction.", "crm.feedback."))
        }

    r = await client.get(f"/v1/customers/{cid}/timeline", headers=auth(a, [role], dept))
    assert r.status_code == 200, r.text
    assert "80 万" not in r.text and "5000" not in r.text and "minutes" not in r.text
    assert lines(r.json()) == {
        "crm.interaction.logged": "visit logged",
        "crm.interaction.updated": "visit updated: location",
        "crm.feedback.resolved": "complaint resolved",
    }
    full = await client.get(f"/v1/customers/{cid}/timeline", headers=auth(a, ["rep"], dept))
    assert lines(full.json()) == {
        "crm.interaction.logged": "visit logged: 谈妥底价 80 万",
        "crm.interaction.updated": "visit updated: minutes, location",
        "crm.feedback.resolved": "complaint resolved: 退款 5000 元",
    }
