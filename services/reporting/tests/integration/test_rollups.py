"""The rollups stay exact when states change, events repeat or arrive out of order.

Each report now sums counter documents the projection moves as events arrive; these
stories change what was already counted (a customer changes owner and industry, an
opportunity goes back a stage, an interaction is deleted, a customer is merged) and
check the figures against hand-computed ones.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed, at, customer, opportunity, pipeline
from crm_platform.testing.fixtures import auth, unique

ADMIN = auth("boss", ["admin"], "/hq")


def _build(kind: Any, subject: str, data: Any, version: int, day: str, hhmm: str = "12:00") -> EventEnvelope:
    built: EventEnvelope = kind.build(
        source="/crm/test", subject=subject, data=data, aggregate_version=version, time=at(day, hhmm), actor="t"
    )
    return built


def _call_on_1118(
    interaction_id: str, customer_id: str, rep: str, dept: str
) -> tuple[iev.InteractionSnapshot, iev.InteractionLogged]:
    """A phone call to ``customer_id`` on 2026-11-18 and the event that logs it."""
    call = iev.InteractionSnapshot(
        interaction_id=interaction_id, channel="phone", customer_id=customer_id, author_id=rep,
        author_department_path=dept, occurred_at=at("2026-11-18"), recorded_at=at("2026-11-18"),
        recorded_late=False, updated_at=at("2026-11-18"),
    )  # fmt: skip
    logged = iev.InteractionLogged(interaction_id=interaction_id, customer_id=customer_id, author_id=rep,
                                   channel="phone", occurred_at=call.occurred_at, interaction=call)  # fmt: skip
    return call, logged


async def test_a_customer_moving_owner_and_industry_moves_its_counts(
    client: Any, feed: EventFeed, wait_applied: Any
) -> None:
    """c1: A/制造业 (v1) → B/零售 (v2, delivered twice, and before v1) → deleted (v3)."""
    dept = f"/hq/{unique('d')}"
    a, b = unique("a"), unique("b")
    c1, c2 = unique("c"), unique("c")
    day = "2026-11-02"
    v1 = _build(cev.CUSTOMER_CREATED, c1, cev.CustomerCreated(customer=customer(c1, a, dept, at(day),
                industry="制造业")), 1, day)  # fmt: skip
    v2 = _build(cev.CUSTOMER_UPDATED, c1, cev.CustomerUpdated(customer=customer(c1, b, dept, at(day),
                industry="零售"), changes=[cev.FieldChange(field="industry", old="制造业", new="零售")]),
                2, "2026-11-03")  # fmt: skip
    other = _build(cev.CUSTOMER_CREATED, c2, cev.CustomerCreated(customer=customer(c2, a, dept, at(day),
                   industry="制造业")), 1, day)  # fmt: skip
    for envelope in (v2, v1, v2, other):
        await feed.resend(envelope)
    await wait_applied([v1, v2, other])

    async def industry(**params: Any) -> dict[str, int]:
        r = await client.get(
            "/v1/reports/distribution", params={"field": "industry", "department_path": dept, **params}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        return {x["value"]: x["count"] for x in r.json()["rows"]} | {"*": r.json()["customers"]}

    assert await industry() == {"制造业": 1, "零售": 1, "*": 2}
    assert await industry(owner_id=a) == {"制造业": 1, "*": 1}  # c1 is B's now
    assert await industry(owner_id=b) == {"零售": 1, "*": 1}
    quality = (await client.get("/v1/reports/quality", params={"period": "2026-11", "department_path": dept},
                                headers=ADMIN)).json()  # fmt: skip
    assert {r["rep_id"]: r["customers"] for r in quality["rows"]} == {a: 1, b: 1}
    assert quality["overall"]["customer_updates"] == 1  # v2, delivered twice

    v3 = _build(cev.DELETED, c1, cev.Deleted(customer=customer(c1, b, dept, at(day), industry="零售",
                status="deleted")), 3, "2026-11-04")  # fmt: skip
    await feed.resend(v3)
    await feed.resend(v2)  # stale now: changes nothing
    await wait_applied([v3])
    assert await industry() == {"制造业": 1, "*": 1}
    assert await industry(owner_id=b) == {"*": 0}


async def test_funnel_counts_an_opportunity_once_per_stage_whatever_the_order(
    client: Any, feed: EventFeed, wait_applied: Any
) -> None:
    """o1: created in s1 11-02, → s2 11-04, back → s1 11-06, → s2 11-09 (moves delivered newest first).
    s1 entered once in November (by o1) and converted; s2 entered once; o1 sits in s2 now."""
    dept, pid, rep, o1 = f"/hq/{unique('d')}", unique("p"), unique("a"), unique("o")
    close = date(2026, 11, 30)
    sent = [await feed.send(pev.PIPELINE_CONFIGURED, pid, pev.PipelineConfigured(pipeline=pipeline(pid),
                            action="created"), at("2026-10-01"))]  # fmt: skip

    def snap(stage: str, day: str) -> pev.OpportunitySnapshot:
        return opportunity(o1, "c", rep, dept, pid, stage, "1000.00", at("2026-11-02"), at(day), probability=10,
                           expected_close=close)  # fmt: skip

    created = _build(pev.OPPORTUNITY_CREATED, o1, pev.OpportunityCreated(opportunity=snap("s1", "2026-11-02")),
                     1, "2026-11-02")  # fmt: skip
    moves = []
    for version, (frm, to, day, days) in enumerate(
        (("s1", "s2", "2026-11-04", 2), ("s2", "s1", "2026-11-06", 2), ("s1", "s2", "2026-11-09", 3)), start=2
    ):
        m = pev.StageMove(from_stage_id=f"{pid}-{frm}", from_stage_name=frm, to_stage_id=f"{pid}-{to}",
                          to_stage_name=to, moved_by=rep, moved_at=at(day),
                          time_in_previous_stage_seconds=days * 86400)  # fmt: skip
        moves.append(_build(pev.OPPORTUNITY_STAGE_CHANGED, o1, pev.StageChanged(opportunity=snap(to, day), move=m),
                            version, day))  # fmt: skip
    for envelope in (*reversed(moves), created, moves[0]):
        await feed.resend(envelope)
    await wait_applied([*sent, created, *moves])

    r = await client.get("/v1/reports/funnel", params={"period": "2026-11", "pipeline_id": pid}, headers=ADMIN)
    assert r.status_code == 200, r.text
    rows = {row["stage_id"].removeprefix(f"{pid}-"): row for row in r.json()["rows"]}
    assert (rows["s1"]["entered_in_period"], rows["s1"]["conversion_to_next"]) == (1, 1.0)
    assert (rows["s2"]["entered_in_period"], rows["s2"]["current_count"], rows["s1"]["current_count"]) == (1, 1, 0)
    assert rows["s1"]["avg_days_in_stage"] == 2.5  # 2 d, then 3 d
    assert rows["s2"]["avg_days_in_stage"] == 2.0
    # From 11-05 on only the second entry into s1 (11-06) and into s2 (11-09) fall in the period.
    later = await client.get("/v1/reports/funnel", params={"from": "2026-11-05", "to": "2026-11-30",
                             "pipeline_id": pid}, headers=ADMIN)  # fmt: skip
    rows = {row["stage_id"].removeprefix(f"{pid}-"): row for row in later.json()["rows"]}
    assert (rows["s1"]["entered_in_period"], rows["s2"]["entered_in_period"]) == (1, 1)
    forecast = (await client.get("/v1/reports/forecast", params={"period": "2026-11", "owner_id": rep},
                                 headers=ADMIN)).json()  # fmt: skip
    assert [(x["scope_id"], x["weighted_pipeline"]) for x in forecast["reps"]] == [(rep, "100.00")]


async def test_not_followed_up_follows_merges_and_deletions(client: Any, feed: EventFeed, wait_applied: Any) -> None:
    """Now is 2026-11-20 12:00 Shanghai. c1 (survivor) has no interaction of its own; c2, merged
    into it, was called on 11-18: c1 is followed up. Then that call is deleted: c1 is stale again."""
    dept, rep = f"/hq/{unique('d')}", unique("a")
    c1, c2, i1 = unique("c"), unique("c"), unique("i")
    day = at("2026-11-01")
    call, logged = _call_on_1118(i1, c2, rep, dept)
    sent = [
        # The interaction and the merge arrive before the survivor exists.
        await feed.send(iev.INTERACTION_LOGGED, i1, logged, at("2026-11-18")),
        await feed.send(cev.CUSTOMER_CREATED, c2, cev.CustomerCreated(customer=customer(c2, rep, dept, day)), day),
        await feed.send(cev.MERGED_AWAY, c2, cev.MergedAway(customer=customer(
            c2, rep, dept, day, status="merged", merged_into=c1), survivor_id=c1), at("2026-11-19")),
        await feed.send(cev.CUSTOMER_CREATED, c1, cev.CustomerCreated(customer=customer(c1, rep, dept, day)), day),
    ]  # fmt: skip
    await wait_applied(sent)
    params = {"period": "2026-11", "department_path": dept, "stale_days": 14}

    async def stale() -> list[str]:
        r = await client.get("/v1/reports/activity", params=params, headers=ADMIN)
        assert r.status_code == 200, r.text
        return [x["customer_id"] for x in r.json()["not_followed_up"]]

    assert await stale() == []
    call.status = "deleted"
    deleted = await feed.send(iev.INTERACTION_DELETED, i1, iev.InteractionDeleted(interaction=call), at("2026-11-19"))
    await wait_applied([deleted])
    assert await stale() == [c1]


async def test_a_customer_referred_to_before_it_arrives_is_derived_in_full(
    client: Any, feed: EventFeed, wait_applied: Any, reporting_app: Any
) -> None:
    """A customer with no copy yet takes the short way (its reach from its own contacts, no
    interaction): only right if nothing referred to it before. Each step waits for the one
    before, so the order is certain: c2 is called, then merged into c1, then c1 is created (with
    no contact of its own) and after it c3 (created with a phone, nothing before it)."""
    dept, rep = f"/hq/{unique('d')}", unique("a")
    c1, c2, c3, i1 = unique("c"), unique("c"), unique("c"), unique("i")
    day = at("2026-11-01")
    _, logged = _call_on_1118(i1, c2, rep, dept)
    phone = cev.ContactData(contact_id=unique("p"), name="王五", phones=["13800138000"])
    steps = [
        [await feed.send(iev.INTERACTION_LOGGED, i1, logged, at("2026-11-18"))],
        [await feed.send(cev.CUSTOMER_CREATED, c2, cev.CustomerCreated(
            customer=customer(c2, rep, dept, day, contacts=[phone]), contacts=[phone]), day)],
        [await feed.send(cev.MERGED_AWAY, c2, cev.MergedAway(customer=customer(
            c2, rep, dept, day, status="merged", merged_into=c1), survivor_id=c1), at("2026-11-19"))],
    ]  # fmt: skip
    for sent in steps:
        await wait_applied(sent)
    models = await reporting_app.state.generations.current()
    assert models.tracks_references, "a generation this version filled from empty tracks references"
    placeholder = await models.customers.find_one({"_id": c1})
    assert placeholder is not None and placeholder["status"] == "placeholder"
    # A placeholder counts nowhere and has no timeline.
    r = await client.get("/v1/reports/distribution", params={"field": "industry", "department_path": dept},
                         headers=ADMIN)  # fmt: skip
    assert r.json()["customers"] == 0
    assert (await client.get(f"/v1/customers/{c1}/timeline", headers=ADMIN)).status_code == 404

    created = [
        await feed.send(cev.CUSTOMER_CREATED, c1, cev.CustomerCreated(customer=customer(c1, rep, dept, day)), day),
    ]
    await wait_applied(created)
    created.append(await feed.send(cev.CUSTOMER_CREATED, c3, cev.CustomerCreated(
        customer=customer(c3, rep, dept, day, contacts=[phone]), contacts=[phone]), day))  # fmt: skip
    await wait_applied(created)
    survivor = await models.customers.find_one({"_id": c1})
    assert survivor is not None and survivor["status"] == "active"
    # c2's call counts for c1, though it arrived before c1 did.
    assert survivor["touch_ms"] == int(at("2026-11-18").timestamp() * 1000)
    fresh = await models.customers.find_one({"_id": c3})
    assert fresh is not None and (fresh["reach"], fresh["touch_ms"]) == (True, -1)
    r = await client.get("/v1/reports/activity", params={"period": "2026-11", "department_path": dept,
                         "stale_days": 14}, headers=ADMIN)  # fmt: skip
    assert [x["customer_id"] for x in r.json()["not_followed_up"]] == [c3]
