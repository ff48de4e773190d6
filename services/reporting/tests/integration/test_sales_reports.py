"""The sales reports from contract, payment, refund, target and ticket events published on the broker."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import pipeline as pev
from crm_platform.contracts import sales as sev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import NOW, EventFeed
from crm_platform.testing.fixtures import auth
from crm_platform.testing.plans import deliver

T0 = NOW - timedelta(days=40)


def contract(
    cid: str, customer: str, owner: str, dept_id: str, dept: str, amount: str, **more: Any
) -> sev.ContractSnapshot:
    return sev.ContractSnapshot(
        contract_id=cid,
        number=f"C-2026-{uuid.uuid4().int % 10**6:06d}",
        customer_id=customer,
        owner_id=owner,
        department=dept_id,
        department_path=dept,
        amount=amount,
        currency="CNY",
        status=more.pop("status", "draft"),
        version=0,
        **more,
    )


def plan(*rows: tuple[str, date, str]) -> list[sev.InstalmentState]:
    return [
        sev.InstalmentState(instalment_id=i, due_date=d, amount=a, paid="0.00", outstanding=a, status="unpaid")
        for i, d, a in rows
    ]


def payment(
    c: sev.ContractSnapshot, pid: str, amount: str, day: date, allocation: list[tuple[str | None, str]], **more: Any
) -> sev.ContractPayment:
    return sev.ContractPayment(
        contract_id=c.contract_id,
        payment_id=pid,
        owner_id=c.owner_id,
        department=c.department,
        department_path=c.department_path,
        customer_id=c.customer_id,
        amount=amount,
        currency="CNY",
        received_on=day,
        allocation=[sev.Allocation(instalment_id=i, amount=a) for i, a in allocation],
        contract=c,
        **more,
    )


async def _contracts(feed: EventFeed) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    dept, dept_id = f"/hq/salesrep-{tag}", f"d-{tag}"
    rep1, rep2 = f"rep1-{tag}", f"rep2-{tag}"
    cust1, cust2 = f"cust1-{tag}", f"cust2-{tag}"
    a, b, c = (f"con-{tag}-{x}" for x in "abc")
    sent: list[EventEnvelope] = []

    async def send(event_type: Any, subject: str, data: Any) -> EventEnvelope:
        envelope = await feed.send(event_type, subject, data, T0)
        sent.append(envelope)
        return envelope

    # A: 1000.00 signed 2026-10-15; 300 + 300 + 400; paid 350 then 700 (50 kept as credit); 100 refunded
    ca = contract(a, cust1, rep1, dept_id, dept, "1000.00")
    await send(sev.CONTRACT_CREATED, a, sev.ContractChanged(contract=ca))
    ca = ca.model_copy(update={"status": "signed", "signed_on": date(2026, 10, 15)})
    await send(sev.CONTRACT_SIGNED, a, sev.ContractDecided(contract=ca))
    ia = [f"{a}-i{n}" for n in range(3)]
    rows = plan(
        (ia[0], date(2026, 9, 1), "300.00"),
        (ia[1], date(2026, 10, 20), "300.00"),
        (ia[2], date(2026, 12, 20), "400.00"),
    )
    await send(sev.CONTRACT_PLAN_SET, a, sev.ContractPlanSet(contract=ca, instalments=rows))
    p1 = payment(ca, f"pay-{tag}-1", "350.00", date(2026, 11, 5), [(ia[0], "300.00"), (ia[1], "50.00")])
    await send(sev.CONTRACT_PAYMENT_RECEIVED, a, p1)
    p2 = payment(
        ca, f"pay-{tag}-2", "700.00", date(2026, 11, 20), [(ia[1], "250.00"), (ia[2], "400.00"), (None, "50.00")]
    )
    paid2 = await send(sev.CONTRACT_PAYMENT_RECEIVED, a, p2)
    r1 = payment(
        ca,
        p2.payment_id,
        "100.00",
        date(2026, 11, 20),
        [(None, "50.00"), (ia[2], "50.00")],
        refund_id=f"ref-{tag}",
        refunded_on=date(2026, 12, 3),
    )
    refund = await send(sev.CONTRACT_PAYMENT_REFUNDED, a, r1)
    # B: 2000.00 signed 2026-11-02; four instalments of 500 long past due; 200 paid on the first
    cb = contract(b, cust2, rep2, dept_id, dept, "2000.00", status="signed", signed_on=date(2026, 11, 2))
    await send(sev.CONTRACT_SIGNED, b, sev.ContractDecided(contract=cb))
    ib = [f"{b}-j{n}" for n in range(4)]
    days = (date(2026, 8, 1), date(2026, 9, 25), date(2026, 10, 20), date(2026, 11, 30))
    rows = plan(*((i, d, "500.00") for i, d in zip(ib, days, strict=True)))
    await send(sev.CONTRACT_PLAN_SET, b, sev.ContractPlanSet(contract=cb, instalments=rows))
    q1 = payment(cb, f"pay-{tag}-3", "200.00", date(2026, 11, 10), [(ib[0], "200.00")])
    await send(sev.CONTRACT_PAYMENT_RECEIVED, b, q1)
    # C: signed then terminated: neither owed nor counted against the target
    cc = contract(c, cust1, rep1, dept_id, dept, "500.00", status="signed", signed_on=date(2026, 11, 5))
    await send(sev.CONTRACT_SIGNED, c, sev.ContractDecided(contract=cc))
    rows = plan((f"{c}-k0", date(2026, 10, 1), "500.00"))
    await send(sev.CONTRACT_PLAN_SET, c, sev.ContractPlanSet(contract=cc, instalments=rows))
    cc = cc.model_copy(update={"status": "terminated"})
    await send(sev.CONTRACT_TERMINATED, c, sev.ContractDecided(contract=cc, comment="客户违约"))
    for scope, scope_id, amount in (("rep", rep1, "4000.00"), ("department", dept_id, "6000.00")):
        target = pev.TargetData(
            target_id=f"{scope}:{scope_id}:2026-Q4",
            scope=scope,  # type: ignore[arg-type]
            scope_id=scope_id,
            department_path=dept,
            period="2026-Q4",
            period_start=date(2026, 10, 1),
            period_end=date(2027, 1, 1),
            amount=amount,
            currency="CNY",
            set_by="boss",
            set_at=T0,
        )
        await send(pev.TARGET_SET, target.target_id, pev.TargetSet(target=target))
    return {
        "tag": tag, "dept": dept, "dept_id": dept_id, "rep1": rep1, "rep2": rep2, "cust1": cust1,
        "cust2": cust2, "sent": sent, "again": [paid2, refund], "contract_a": a, "last_instalment_a": ia[2],
    }  # fmt: skip


async def test_receivables_targets_and_lifetime_value(
    client: httpx.AsyncClient, feed: EventFeed, wait_applied: Any, reporting_app: FastAPI
) -> None:
    w = await _contracts(feed)
    await wait_applied(w["sent"])
    for envelope in w["again"]:  # redelivered: nothing counts twice
        await deliver(reporting_app, envelope)
    manager = auth(f"mgr-{w['tag']}", ["manager"], w["dept"])
    rep1, rep2 = w["rep1"], w["rep2"]
    # The refund sits in the instalment's history on its own day, not the payment's.
    models = await reporting_app.state.generations.current()
    stored = await models.collection("sales_contracts").find_one({"_id": w["contract_a"]})
    (last,) = [i for i in stored["instalments"] if i["id"] == w["last_instalment_a"]]
    assert [entry[0] for entry in last["history"]] == [20261120, 20261203]

    r = await client.get(
        "/v1/reports/receivables/ageing", params={"as_of": "2026-12-10", "currency": "CNY"}, headers=manager
    )
    assert r.status_code == 200, r.text
    ageing = {row["owner_id"]: row for row in r.json()["rows"]}
    assert set(ageing) == {rep1, rep2}
    zero = "0.00"
    assert ageing[rep1] == {
        "owner_id": rep1, "outstanding": "50.00", "not_due": "50.00",
        "0-30": zero, "31-60": zero, "61-90": zero, "90+": zero,
    }  # fmt: skip
    assert ageing[rep2] == {
        "owner_id": rep2, "outstanding": "1800.00", "not_due": zero,
        "0-30": "500.00", "31-60": "500.00", "61-90": "500.00", "90+": "300.00",
    }  # fmt: skip
    assert r.json()["totals"]["outstanding"] == "1850.00"
    assert r.json()["departments"] == [{"department_path": w["dept"], **r.json()["totals"]}]

    params = {"from": "2026-10-01", "to": "2026-11-30", "currency": "CNY"}
    r = await client.get("/v1/reports/receivables/collection", params=params, headers=manager)
    assert r.status_code == 200, r.text
    rows = {row["owner_id"]: row for row in r.json()["rows"]}
    assert rows[rep1] == {
        "owner_id": rep1,
        "due": "300.00",
        "collected": "300.00",
        "rate": "1.0000",
        "received": "950.00",
    }
    assert rows[rep2] == {
        "owner_id": rep2,
        "due": "1000.00",
        "collected": "0.00",
        "rate": "0.0000",
        "received": "200.00",
    }
    totals = r.json()["totals"]
    assert (totals["due"], totals["collected"], totals["rate"], totals["received"]) == (
        "1300.00",
        "300.00",
        "0.2308",
        "1150.00",
    )

    r = await client.get(
        "/v1/reports/contracts/target", params={"period": "2026-Q4", "currency": "CNY"}, headers=manager
    )
    assert r.status_code == 200, r.text
    rows = {(row["scope"], row["scope_id"]): row for row in r.json()["rows"]}
    assert rows[("rep", rep1)] == {
        "scope": "rep", "scope_id": rep1, "department_path": None,
        "signed": "1000.00", "target": "4000.00", "attainment": "0.2500",
    }  # fmt: skip
    assert (rows[("rep", rep2)]["signed"], rows[("rep", rep2)]["target"]) == ("2000.00", None)
    d = rows[("department", w["dept_id"])]
    assert (d["signed"], d["target"], d["attainment"], d["department_path"]) == (
        "3000.00",
        "6000.00",
        "0.5000",
        w["dept"],
    )
    r = await client.get(
        "/v1/reports/contracts/target", params={"period": "2026-11", "currency": "CNY"}, headers=manager
    )
    assert {(row["scope_id"], row["signed"]) for row in r.json()["rows"]} == {
        (rep2, "2000.00"),
        (w["dept_id"], "2000.00"),
    }

    r = await client.get(
        "/v1/reports/customers/lifetime-value", params={"currency": "CNY", "limit": 1}, headers=manager
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["rows"] == [
        {"customer_id": w["cust1"], "currency": "CNY", "value": "950.00", "first_payment_day": "2026-11-05",
         "last_payment_day": "2026-11-20", "contracts": 2},
    ]  # fmt: skip
    params = {"currency": "CNY", "limit": 1, "cursor": first["next_cursor"]}
    second = (await client.get("/v1/reports/customers/lifetime-value", params=params, headers=manager)).json()
    assert [(x["customer_id"], x["value"], x["contracts"]) for x in second["rows"]] == [(w["cust2"], "200.00", 1)]
    assert second["next_cursor"] is None

    # A rep sees their own contracts only.
    mine = auth(rep2, ["rep"], w["dept"])
    r = await client.get(
        "/v1/reports/receivables/ageing", params={"as_of": "2026-12-10", "currency": "CNY"}, headers=mine
    )
    assert [row["owner_id"] for row in r.json()["rows"]] == [rep2]
    r = await client.get("/v1/reports/customers/lifetime-value", params={"currency": "CNY"}, headers=mine)
    assert [x["customer_id"] for x in r.json()["rows"]] == [w["cust2"]]


async def test_bad_report_parameters_are_named(client: httpx.AsyncClient) -> None:
    manager = auth(f"mgr-{uuid.uuid4().hex[:8]}", ["manager"], "/hq/x")
    for path, params, field in (
        ("/v1/reports/receivables/collection", {"to": "2026-11-30", "currency": "CNY"}, "from"),
        ("/v1/reports/receivables/collection", {"from": "2026-12-01", "to": "2026-11-30", "currency": "CNY"}, "to"),
        ("/v1/reports/contracts/target", {"period": "2026-13", "currency": "CNY"}, "period"),
        ("/v1/reports/customers/lifetime-value", {"currency": "CNY", "cursor": "USD|1"}, "cursor"),
        ("/v1/reports/receivables/ageing", {"currency": "cny"}, "currency"),
    ):
        r = await client.get(path, params=params, headers=manager)
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text, (path, r.text)


def ticket(
    tid: str, owner: str, dept: str, priority: str, category: str, opened: datetime, **more: Any
) -> sev.TicketSnapshot:
    first_due = more.pop("first_due", opened + timedelta(hours=1))
    return sev.TicketSnapshot(
        ticket_id=tid,
        number=f"T-2026-{uuid.uuid4().int % 10**6:06d}",
        customer_id="k",
        source="agent",
        category=category,
        priority=priority,
        subject="S",
        status=more.pop("status", "open"),
        owner_id=owner,
        opened_by=owner,
        department_path=dept,
        opened_at=opened,
        first_response_due_at=first_due,
        resolution_due_at=more.pop("resolution_due", opened + timedelta(hours=8)),
        version=0,
        **more,
    )


async def test_ticket_sla_and_satisfaction(client: httpx.AsyncClient, feed: EventFeed, wait_applied: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    dept, rep1, rep2 = f"/hq/tickets-{tag}", f"rep1-{tag}", f"rep2-{tag}"
    o1, o2 = datetime(2026, 11, 3, 2, tzinfo=UTC), datetime(2026, 11, 4, 2, tzinfo=UTC)
    t1, t2, t3, t4 = (f"tk-{tag}-{n}" for n in range(4))
    met = ticket(t1, rep1, dept, "urgent", "fault", o1, status="closed", first_responded_at=o1 + timedelta(minutes=30),
                 resolved_at=o1 + timedelta(hours=4), satisfaction=5)  # fmt: skip
    late = ticket(t2, rep1, dept, "high", "fault", o2, status="closed", first_responded_at=o2 + timedelta(hours=3),
                  resolved_at=o2 + timedelta(hours=5), breached=["first_response"], satisfaction=2)  # fmt: skip
    at_risk = ticket(t3, rep2, dept, "normal", "install", NOW - timedelta(hours=2), first_due=NOW + timedelta(hours=1),
                     resolution_due=NOW + timedelta(days=1))  # fmt: skip
    missed = ticket(t4, rep2, dept, "normal", "install", datetime(2026, 11, 10, 2, tzinfo=UTC), satisfaction=4)
    sent = [
        await feed.send(
            sev.TICKET_OPENED, t1, sev.TicketChanged(ticket=ticket(t1, rep1, dept, "urgent", "fault", o1)), o1
        ),
        await feed.send(sev.TICKET_RETURN_VISITED, t1, sev.TicketChanged(ticket=met), o1),
        await feed.send(sev.TICKET_OPENED, t2, sev.TicketChanged(ticket=late), o2),
        await feed.send(sev.TICKET_OPENED, t3, sev.TicketChanged(ticket=at_risk), NOW),
        await feed.send(sev.TICKET_OPENED, t4, sev.TicketChanged(ticket=missed), NOW),
    ]
    await wait_applied(sent)
    manager = auth(f"mgr-{tag}", ["manager"], dept)
    r = await client.get("/v1/reports/tickets/sla", params={"from": "2026-11-01", "to": "2026-11-30"}, headers=manager)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tickets"] == 4
    rows = {row["owner_id"]: row for row in body["rows"]}
    assert rows[rep1]["first_response"] == {"met": 1, "breached": 1, "open_at_risk": 0, "rate": "0.5000"}
    assert rows[rep1]["resolution"] == {"met": 2, "breached": 0, "open_at_risk": 0, "rate": "1.0000"}
    # t4's first response is past due with no reply: breached though no event said so yet
    assert rows[rep2]["first_response"] == {"met": 0, "breached": 1, "open_at_risk": 1, "rate": "0.0000"}
    assert rows[rep2]["resolution"] == {"met": 0, "breached": 1, "open_at_risk": 1, "rate": "0.0000"}
    priorities = {row["priority"]: row for row in body["priorities"]}
    assert priorities["urgent"]["first_response"]["met"] == 1 and priorities["high"]["first_response"]["breached"] == 1
    sat = {row["owner_id"]: row for row in body["satisfaction"]["assignees"]}
    assert sat[rep1] == {
        "owner_id": rep1,
        "responses": 2,
        "average": "3.50",
        "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1},
    }
    assert sat[rep2]["average"] == "4.00"
    cats = {row["category"]: (row["responses"], row["average"]) for row in body["satisfaction"]["categories"]}
    assert cats == {"fault": (2, "3.50"), "install": (1, "4.00")}
