"""Funnel and forecast from a realistic pipeline stream, checked against hand-computed figures.

The story (November 2026, Shanghai time, one pipeline s1 → s2 → s3 → won, plus lost):
- o1 (rep A, 100000.00): created 11-02 in s1, → s2 11-04 (2 d in s1), → s3 11-09 (5 d in s2), won 11-12 (3 d in s3).
- o2 (rep A,  50000.00): created 11-03 in s1, → s2 11-05 (2 d), lost 11-10 from s2 (5 d).
- o3 (rep B,  80000.00): created 11-06 in s1, → s3 11-08 skipping s2 (2 d); 60 %, closes 11-28.
- o4 (rep B,  20000.00): created 11-07 in s1, stays; 10 %, closes 12-15 (outside November).
Targets for 2026-11: A 200000.00, B 100000.00, the department 250000.00.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed, at, opportunity, pipeline
from crm_platform.testing.fixtures import auth, unique


async def _story(feed: EventFeed, dept: str, pid: str, rep_a: str, rep_b: str) -> dict[str, Any]:
    sent: list[EventEnvelope] = []
    # Targets arrive before the pipeline configuration: order across aggregates must not matter.
    for scope, scope_id, path, amount in (
        ("rep", rep_a, dept, "200000.00"),
        ("rep", rep_b, dept, "100000.00"),
        ("department", dept.rsplit("/", 1)[-1], dept, "250000.00"),
    ):
        target = pev.TargetData(
            target_id=f"{scope}:{scope_id}:2026-11",
            scope=scope,  # type: ignore[arg-type]
            scope_id=scope_id,
            department_path=path,
            period="2026-11",
            period_start=date(2026, 11, 1),
            period_end=date(2026, 12, 1),
            amount=amount,
            currency="CNY",
            set_by="boss",
            set_at=at("2026-10-30"),
        )
        sent.append(await feed.send(pev.TARGET_SET, target.target_id, pev.TargetSet(target=target), at("2026-10-30")))
    sent.append(
        await feed.send(
            pev.PIPELINE_CONFIGURED,
            pid,
            pev.PipelineConfigured(pipeline=pipeline(pid), action="created"),
            at("2026-10-01"),
        )
    )

    async def create(oid: str, rep: str, amount: str, day: str, prob: int, close: date) -> None:
        snap = opportunity(
            oid, unique("c"), rep, dept, pid, "s1", amount, at(day), at(day), probability=prob, expected_close=close
        )
        sent.append(await feed.send(pev.OPPORTUNITY_CREATED, oid, pev.OpportunityCreated(opportunity=snap), at(day)))

    async def move(oid: str, rep: str, amount: str, created: str, frm: str, to: str, day: str, days: float,
                   prob: int, close: date) -> EventEnvelope:  # fmt: skip
        status = {"won": "won", "lost": "lost"}.get(to, "open")
        snap = opportunity(
            oid, "c", rep, dept, pid, to, amount, at(created), at(day), probability=prob, status=status,
            won_on=date.fromisoformat(day) if to == "won" else None,
            lost_on=date.fromisoformat(day) if to == "lost" else None, expected_close=close,
        )  # fmt: skip
        m = pev.StageMove(
            from_stage_id=f"{pid}-{frm}", from_stage_name=frm, to_stage_id=f"{pid}-{to}", to_stage_name=to,
            moved_by=rep, moved_at=at(day), time_in_previous_stage_seconds=days * 86400,
        )  # fmt: skip
        if to == "won":
            data: Any = pev.OpportunityWon(opportunity=snap, move=m, reason="价格合适")
            kind: Any = pev.OPPORTUNITY_WON
        elif to == "lost":
            data, kind = (
                pev.OpportunityLost(opportunity=snap, move=m, reason="预算", competitor="X"),
                pev.OPPORTUNITY_LOST,
            )
        else:
            data, kind = pev.StageChanged(opportunity=snap, move=m), pev.OPPORTUNITY_STAGE_CHANGED
        envelope = await feed.send(kind, oid, data, at(day), actor=rep)
        sent.append(envelope)
        return envelope

    o1, o2, o3, o4 = (unique("o") for _ in range(4))
    nov28, dec15 = date(2026, 11, 28), date(2026, 12, 15)
    await create(o1, rep_a, "100000.00", "2026-11-02", 10, nov28)
    await create(o2, rep_a, "50000.00", "2026-11-03", 10, nov28)
    await create(o3, rep_b, "80000.00", "2026-11-06", 10, nov28)
    await create(o4, rep_b, "20000.00", "2026-11-07", 10, dec15)
    await move(o1, rep_a, "100000.00", "2026-11-02", "s1", "s2", "2026-11-04", 2, 30, nov28)
    await move(o2, rep_a, "50000.00", "2026-11-03", "s1", "s2", "2026-11-05", 2, 30, nov28)
    await move(o3, rep_b, "80000.00", "2026-11-06", "s1", "s3", "2026-11-08", 2, 60, nov28)
    await move(o1, rep_a, "100000.00", "2026-11-02", "s2", "s3", "2026-11-09", 5, 60, nov28)
    await move(o2, rep_a, "50000.00", "2026-11-03", "s2", "lost", "2026-11-10", 5, 0, nov28)
    won = await move(o1, rep_a, "100000.00", "2026-11-02", "s3", "won", "2026-11-12", 3, 100, nov28)
    await feed.resend(won)  # delivered twice: counted once
    return {"sent": sent}


async def test_funnel_and_forecast_match_the_hand_computed_figures(
    client: Any, feed: EventFeed, wait_applied: Any
) -> None:
    dept, pid = f"/hq/{unique('d')}", unique("p")
    rep_a, rep_b = unique("a"), unique("b")
    story = await _story(feed, dept, pid, rep_a, rep_b)
    await wait_applied(story["sent"])
    admin = auth("boss", ["admin"], "/hq")

    r = await client.get(
        "/v1/reports/funnel", params={"period": "2026-11", "pipeline_id": pid, "department_path": dept}, headers=admin
    )
    assert r.status_code == 200, r.text
    funnel = r.json()
    stages = {row["stage_id"].removeprefix(f"{pid}-"): row for row in funnel["rows"]}
    assert [row["stage_name"] for row in funnel["rows"]] == ["线索 Lead", "Qualify", "Proposal", "Won", "Lost"]
    # s1: o4 still there; all four entered; o1, o2 reached s2 and o3 skipped past it: 3/4; 2 d each.
    assert (stages["s1"]["current_count"], stages["s1"]["current_amount"]) == (1, "20000.00")
    assert (stages["s1"]["entered_in_period"], stages["s1"]["conversion_to_next"]) == (4, 0.75)
    assert stages["s1"]["avg_days_in_stage"] == 2.0
    # s2: empty now; o1 and o2 entered; o1 went on to s3, o2 was lost: 1/2; 5 d each.
    assert (stages["s2"]["current_count"], stages["s2"]["current_amount"]) == (0, "0.00")
    assert (stages["s2"]["entered_in_period"], stages["s2"]["conversion_to_next"]) == (2, 0.5)
    assert stages["s2"]["avg_days_in_stage"] == 5.0
    # s3: o3 there now; o1 and o3 entered; o1 won: 1/2; o1 spent 3 d.
    assert (stages["s3"]["current_count"], stages["s3"]["current_amount"]) == (1, "80000.00")
    assert (stages["s3"]["entered_in_period"], stages["s3"]["conversion_to_next"]) == (2, 0.5)
    assert stages["s3"]["avg_days_in_stage"] == 3.0
    assert (stages["won"]["current_count"], stages["won"]["current_amount"]) == (1, "100000.00")
    assert (stages["lost"]["current_count"], stages["lost"]["current_amount"]) == (1, "50000.00")
    # One won, one lost in November: 50 %; o1 took 11-02 → 11-12 = 10 days.
    assert funnel["summary"] == {
        "won": 1,
        "lost": 1,
        "won_amount": "100000.00",
        "win_rate": 0.5,
        "avg_sales_cycle_days": 10.0,
    }

    r = await client.get("/v1/reports/forecast", params={"period": "2026-11", "department_path": dept}, headers=admin)
    assert r.status_code == 200, r.text
    forecast = r.json()
    reps = {row["scope_id"]: row for row in forecast["reps"]}
    # A: won 100000 of 200000 = 50 %; nothing open closes in November.
    assert reps[rep_a] | {"name": None} == {
        "scope": "rep", "scope_id": rep_a, "name": None, "target": "200000.00",
        "won_amount": "100000.00", "weighted_pipeline": "0.00", "attainment_pct": 50.0,
    }  # fmt: skip
    # B: nothing won; o3 80000 × 60 % = 48000 closes in November, o4 closes in December.
    assert (reps[rep_b]["won_amount"], reps[rep_b]["weighted_pipeline"], reps[rep_b]["attainment_pct"]) == (
        "0.00",
        "48000.00",
        0.0,
    )
    departments = {row["name"]: row for row in forecast["departments"]}
    # The department: 100000 won of 250000 = 40 %; weighted 48000.
    assert departments[dept]["target"] == "250000.00"
    assert (departments[dept]["won_amount"], departments[dept]["weighted_pipeline"]) == ("100000.00", "48000.00")
    assert departments[dept]["attainment_pct"] == 40.0

    # Visibility: rep A sees only their own opportunities; asking for B is refused.
    me = auth(rep_a, ["rep"], dept)
    mine = (await client.get("/v1/reports/funnel", params={"period": "2026-11", "pipeline_id": pid}, headers=me)).json()
    assert (mine["summary"]["won"], mine["summary"]["lost"], mine["rows"][0]["entered_in_period"]) == (1, 1, 2)
    r = await client.get("/v1/reports/funnel", params={"pipeline_id": pid, "owner_id": rep_b}, headers=me)
    assert r.status_code == 403
    r = await client.get("/v1/reports/forecast", params={"department_path": dept}, headers=me)
    assert r.status_code == 403
    # A manager of another department may not ask for this one; this department's manager sees both reps.
    other = auth(unique("m"), ["manager"], f"/hq/{unique('other')}")
    assert (
        await client.get("/v1/reports/forecast", params={"department_path": dept}, headers=other)
    ).status_code == 403
    manager = auth(unique("m"), ["manager"], dept)
    seen = (await client.get("/v1/reports/forecast", params={"period": "2026-11"}, headers=manager)).json()
    assert {row["scope_id"] for row in seen["reps"]} == {rep_a, rep_b}

    # CSV: a header row and one row per stage, UTF-8 with a BOM.
    r = await client.get(
        "/v1/reports/funnel", params={"period": "2026-11", "pipeline_id": pid, "format": "csv"}, headers=admin
    )
    assert r.headers["content-type"].startswith("text/csv")
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeffposition,stage_id,stage_name,kind,current_count")
    lines = text.strip().splitlines()
    assert len(lines) == 6 and lines[1].startswith(f"1,{pid}-s1,线索 Lead,open,1,20000.00,4,")


async def test_amounts_in_different_currencies_are_never_added_up(
    client: Any, feed: EventFeed, wait_applied: Any
) -> None:
    """The funnel and the forecast give the amounts of one currency (the request's, CNY by
    default) and count every opportunity; the funnel lists the other currencies' sums apart, each
    in its own precision; a target in another currency is not this forecast's."""
    dept, pid, rep = f"/hq/{unique('d')}", unique("p"), unique("r")
    nov20 = date(2026, 11, 20)
    target = pev.TargetData(
        target_id=f"rep:{rep}:2026-11", scope="rep", scope_id=rep, department_path=dept, period="2026-11",
        period_start=date(2026, 11, 1), period_end=date(2026, 12, 1), amount="200000.00", currency="CNY",
        set_by="boss", set_at=at("2026-10-30"),
    )  # fmt: skip
    sent = [
        await feed.send(pev.TARGET_SET, target.target_id, pev.TargetSet(target=target), at("2026-10-30")),
        await feed.send(
            pev.PIPELINE_CONFIGURED,
            pid,
            pev.PipelineConfigured(pipeline=pipeline(pid), action="created"),
            at("2026-10-01"),
        ),
    ]
    for stage, amount, currency in (
        ("s1", "100000.00", "CNY"),
        ("s1", "20000.00", "USD"),
        ("s3", "10000.00", "USD"),
        ("won", "50000.00", "CNY"),
        ("won", "3000000", "JPY"),
    ):
        oid, won = unique("o"), stage == "won"
        snap = opportunity(
            oid, unique("c"), rep, dept, pid, stage, amount, at("2026-11-02"), at("2026-11-02"),
            probability=100 if won else 50, status="won" if won else "open", won_on=date(2026, 11, 12) if won else None,
            expected_close=nov20,
        ).model_copy(update={"currency": currency})  # fmt: skip
        created = pev.OpportunityCreated(opportunity=snap)
        sent.append(await feed.send(pev.OPPORTUNITY_CREATED, oid, created, at("2026-11-02")))
    await wait_applied(sent)
    admin = auth("boss", ["admin"], "/hq")
    asked = {"period": "2026-11", "pipeline_id": pid, "department_path": dept}

    funnel = (await client.get("/v1/reports/funnel", params=asked, headers=admin)).json()
    stages = {row["stage_id"].removeprefix(f"{pid}-"): row for row in funnel["rows"]}
    assert funnel["currency"] == "CNY"
    assert (stages["s1"]["current_count"], stages["s1"]["current_amount"]) == (2, "100000.00")
    assert (stages["s3"]["current_count"], stages["s3"]["current_amount"]) == (1, "0.00")
    assert (stages["won"]["current_count"], stages["won"]["current_amount"]) == (2, "50000.00")
    assert (funnel["summary"]["won"], funnel["summary"]["won_amount"]) == (2, "50000.00")
    assert funnel["other_currencies"] == [
        {"currency": "JPY", "current_amount": "3000000", "won_amount": "3000000"},
        {"currency": "USD", "current_amount": "30000.00", "won_amount": "0.00"},
    ]
    usd = (await client.get("/v1/reports/funnel", params={**asked, "currency": "usd"}, headers=admin)).json()
    assert usd["currency"] == "USD" and usd["summary"]["won_amount"] == "0.00"
    assert [row["current_amount"] for row in usd["rows"]] == ["20000.00", "0.00", "10000.00", "0.00", "0.00"]
    assert [c["currency"] for c in usd["other_currencies"]] == ["CNY", "JPY"]
    r = await client.get("/v1/reports/funnel", params={**asked, "currency": "XYZ"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency", r.text

    forecast_of = {"period": "2026-11", "department_path": dept}
    forecast = (await client.get("/v1/reports/forecast", params=forecast_of, headers=admin)).json()
    (row,) = [r for r in forecast["reps"] if r["scope_id"] == rep]
    assert forecast["currency"] == "CNY"
    assert (row["target"], row["won_amount"], row["weighted_pipeline"], row["attainment_pct"]) == (
        "200000.00", "50000.00", "50000.00", 25.0,
    )  # fmt: skip
    jpy = (await client.get("/v1/reports/forecast", params={**forecast_of, "currency": "JPY"}, headers=admin)).json()
    (row,) = [r for r in jpy["reps"] if r["scope_id"] == rep]
    assert (row["target"], row["won_amount"], row["weighted_pipeline"]) == (None, "3000000", "0")
