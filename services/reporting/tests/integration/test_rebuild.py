"""A rebuild re-reads every topic into a new generation and gives the same figures."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import FastAPI

from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.contracts import sales as sev
from crm_platform.testing.event_feed import EventFeed, at, customer, opportunity, pipeline
from crm_platform.testing.fixtures import auth, eventually, unique
from crm_reporting.adapters.rebuild_lease import RebuildLease


async def test_rebuild_gives_the_same_figures(
    reporting_app: FastAPI, client: Any, feed: EventFeed, wait_applied: Any
) -> None:
    dept, pid = f"/hq/{unique('d')}", unique("p")
    reps = [unique("r") for _ in range(3)]
    sent = [await feed.user(r, f"销售{i}", dept) for i, r in enumerate(reps)]
    p = pev.PipelineConfigured(pipeline=pipeline(pid).model_copy(update={"is_default": False}), action="created")
    sent.append(await feed.send(pev.PIPELINE_CONFIGURED, pid, p, at("2026-10-01")))
    for n in range(12):
        rep, day = reps[n % 3], f"2026-11-{n + 1:02d}"
        cid, oid, iid = unique("c"), unique("o"), unique("i")
        snap = customer(cid, rep, dept, at(day), industry=["制造业", "零售", "金融"][n % 3], tier="AB"[n % 2])
        sent.append(await feed.send(cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap), at(day), rep))
        i = iev.InteractionSnapshot(
            interaction_id=iid, channel=["phone", "visit"][n % 2], customer_id=cid, author_id=rep,  # type: ignore[arg-type]
            author_department_path=dept, occurred_at=at(day, "15:00"), recorded_at=at(day, "15:00"),
            recorded_late=False, updated_at=at(day, "15:00"),
        )  # fmt: skip
        logged = iev.InteractionLogged(
            interaction_id=iid, customer_id=cid, author_id=rep, channel=i.channel, occurred_at=i.occurred_at,
            interaction=i,
        )  # fmt: skip
        sent.append(await feed.send(iev.INTERACTION_LOGGED, iid, logged, at(day, "15:00"), rep))
        o = opportunity(oid, cid, rep, dept, pid, "s1", f"{(n + 1) * 1000}.50", at(day), at(day), probability=10,
                        expected_close=date(2026, 11, 30))  # fmt: skip
        sent.append(await feed.send(pev.OPPORTUNITY_CREATED, oid, pev.OpportunityCreated(opportunity=o), at(day), rep))
        if n % 4 == 0:
            won = opportunity(oid, cid, rep, dept, pid, "won", f"{(n + 1) * 1000}.50", at(day), at(day, "18:00"),
                              probability=100, status="won", won_on=date.fromisoformat(day))  # fmt: skip
            move = pev.StageMove(from_stage_id=f"{pid}-s1", from_stage_name="s1", to_stage_id=f"{pid}-won",
                                 to_stage_name="won", moved_by=rep, moved_at=at(day, "18:00"),
                                 time_in_previous_stage_seconds=6 * 3600)  # fmt: skip
            data = pev.OpportunityWon(opportunity=won, move=move, reason="ok")
            sent.append(await feed.send(pev.OPPORTUNITY_WON, oid, data, at(day, "18:00"), rep))
    sent.extend(await _sales(feed, reps[0], dept))
    await wait_applied(sent)
    admin = auth("boss", ["admin"], "/hq")
    first_customer = sent[4].subject
    urls = [
        f"/v1/reports/funnel?period=2026-11&pipeline_id={pid}&department_path={dept}",
        f"/v1/reports/forecast?period=2026-11&department_path={dept}",
        f"/v1/reports/activity?period=2026-11&department_path={dept}&bucket=week",
        f"/v1/reports/distribution?field=industry&department_path={dept}",
        f"/v1/reports/quality?period=2026-11&department_path={dept}",
        f"/v1/customers/{first_customer}/timeline",
        "/v1/reports/receivables/ageing?currency=CNY&as_of=2026-12-10",
        "/v1/reports/receivables/collection?currency=CNY&from=2026-10-01&to=2026-12-31",
        "/v1/reports/contracts/target?currency=CNY&period=2026-Q4",
        "/v1/reports/tickets/sla?from=2026-11-01&to=2026-11-30",
        "/v1/reports/customers/lifetime-value?currency=CNY&limit=500",
    ]

    async def take() -> list[Any]:
        out = []
        for url in urls:
            r = await client.get(url, headers=admin)
            assert r.status_code == 200, (url, r.text)
            out.append(r.json())
        return out

    before = await take()
    assert before[0]["summary"]["won"] == 3  # n = 0, 4, 8
    assert before[10]["rows"] and before[9]["tickets"] >= 1
    assert before[3]["customers"] == 12
    generation = (await client.get("/v1/admin/lag", headers=admin)).json()["generation"]

    assert (await client.post("/v1/admin/rebuild", headers=auth("r", ["rep"], dept))).status_code == 403
    r = await client.post("/v1/admin/rebuild", headers=admin)
    assert r.status_code == 202, r.text
    assert (await client.post("/v1/admin/rebuild", headers=admin)).status_code == 409  # one at a time

    async def finished() -> Any:
        status = (await client.get("/v1/admin/rebuild", headers=admin)).json()
        return status if status["status"] in ("done", "failed") else None

    status = await eventually(finished, timeout=240, interval=0.5, message="rebuild finished")
    assert status["status"] == "done", status
    assert status["previous"] == generation and status["generation"] > generation
    assert (await client.get("/v1/admin/lag", headers=admin)).json()["generation"] == status["generation"]
    names = await reporting_app.state.kit.db.list_collection_names()
    assert f"g{generation}_facts" not in names and f"g{status['generation']}_facts" in names
    after = await take()
    assert after == before


async def test_one_rebuild_at_a_time_on_every_replica(reporting_app: FastAPI, client: Any) -> None:
    """The lease is in the database, not in one replica's memory: a rebuild held elsewhere (another
    replica, the command line) refuses a second with 409 and shows in the status; a holder that died
    is taken over once its lease has run out."""
    admin = auth(unique("admin"), ["admin"], "/hq")
    db = reporting_app.state.kit.db
    elsewhere = await RebuildLease.acquire(db, seconds=30)
    try:
        r = await client.post("/v1/admin/rebuild", headers=admin)
        assert r.status_code == 409, r.text
        assert r.json()["rebuild"] == elsewhere.holder
        status = (await client.get("/v1/admin/rebuild", headers=admin)).json()
        assert status["status"] == "running" and status["rebuild"] == elsewhere.holder
    finally:
        await elsewhere.release()
    # A holder that died: its lease ran out, nobody renews it; the next rebuild takes it over.
    await db["rebuild_lock"].replace_one(
        {"_id": "running"}, {"holder": "rebuild-dead", "started_ms": 0, "expires_ms": 1}, upsert=True
    )
    taken = await RebuildLease.acquire(db, seconds=30)
    try:
        assert (await RebuildLease.running(db) or {}).get("holder") == taken.holder
    finally:
        await taken.release()
    assert await RebuildLease.running(db) is None


async def _sales(feed: EventFeed, rep: str, dept: str) -> list[Any]:
    """A contract with a plan, a payment and a refund, and a ticket: the sales reports are rebuilt too."""
    cid, customer_id, tid = unique("con"), unique("c"), unique("t")
    c = sev.ContractSnapshot(
        contract_id=cid, number="C-2026-000009", customer_id=customer_id, owner_id=rep, department="d",
        department_path=dept, amount="900.00", currency="CNY", status="signed", signed_on=date(2026, 11, 3), version=0,
    )  # fmt: skip
    plan = [
        sev.InstalmentState(
            instalment_id=f"{cid}-{n}",
            due_date=date(2026, 10 + n, 1),
            amount="300.00",
            paid="0.00",
            outstanding="300.00",
            status="unpaid",
        )
        for n in range(3)
    ]

    def pay(amount: str, instalment: str, refund_id: str | None = None) -> sev.ContractPayment:
        return sev.ContractPayment(
            contract_id=cid, payment_id=f"{cid}-p", refund_id=refund_id, owner_id=rep, department_path=dept,
            customer_id=customer_id, amount=amount, currency="CNY", received_on=date(2026, 11, 4),
            allocation=[sev.Allocation(instalment_id=instalment, amount=amount)], contract=c,
        )  # fmt: skip

    t = sev.TicketSnapshot(
        ticket_id=tid, number="T-2026-000009", customer_id=customer_id, source="agent", category="fault",
        priority="high", subject="S", status="resolved", owner_id=rep, opened_by=rep, department_path=dept,
        opened_at=at("2026-11-05"), first_response_due_at=at("2026-11-05", "13:00"),
        resolution_due_at=at("2026-11-05", "20:00"), first_responded_at=at("2026-11-05", "12:30"),
        resolved_at=at("2026-11-05", "16:00"), satisfaction=4, version=0,
    )  # fmt: skip
    when = at("2026-11-04")
    return [
        await feed.send(sev.CONTRACT_SIGNED, cid, sev.ContractDecided(contract=c), when, rep),
        await feed.send(sev.CONTRACT_PLAN_SET, cid, sev.ContractPlanSet(contract=c, instalments=plan), when, rep),
        await feed.send(sev.CONTRACT_PAYMENT_RECEIVED, cid, pay("300.00", f"{cid}-0"), when, rep),
        await feed.send(sev.CONTRACT_PAYMENT_REFUNDED, cid, pay("100.00", f"{cid}-0", f"{cid}-r"), when, rep),
        await feed.send(sev.TICKET_RESOLVED, tid, sev.TicketChanged(ticket=t), at("2026-11-05", "16:00"), rep),
    ]
