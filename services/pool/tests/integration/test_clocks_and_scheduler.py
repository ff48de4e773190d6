"""Clocks built from events, the preview, a rep's countdown, and the scheduler's warnings and decisions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import interactions, pipeline
from crm_platform.events import to_kafka
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.event_feed import pipeline_configured
from crm_platform.testing.fixtures import EventCollector, auth, eventually, unique
from crm_pool.application.recycler import Recycler

ADMIN = auth("admin-1", ["admin"], "/hq")


async def log_interaction(producer: Any, customer_id: str, author_id: str, occurred_at: datetime) -> str:
    interaction_id = str(uuid.uuid4())
    envelope = interactions.INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=interactions.InteractionLogged(
            interaction_id=interaction_id,
            customer_id=customer_id,
            author_id=author_id,
            channel="phone",
            occurred_at=occurred_at,
        ),
        aggregate_version=1,
        time=datetime.now(UTC),
        actor=author_id,
    )
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(
        interactions.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
    )
    return interaction_id


async def clock_of(app: FastAPI, customer_id: str, **expected: Any) -> dict[str, Any]:
    """The customer's clock once it has every ``expected`` value (waits for the consumers)."""

    async def probe() -> dict[str, Any] | None:
        clock = await app.state.repo.get_clock(customer_id)
        if clock is None or any(clock.get(k) != v for k, v in expected.items()):
            return None
        return clock

    result: dict[str, Any] = await eventually(probe, timeout=20, message=f"clock of {customer_id} with {expected}")
    return result


async def make_rule(client: Any, path: str, **kw: Any) -> dict[str, Any]:
    fields = {"name": f"rule {path}", "department_path": path, "no_interaction_days": 10, "warn_days": 3, **kw}
    r = await client.post("/v1/pool/rules", json=fields, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def run(client: Any) -> dict[str, Any]:
    r = await client.post("/v1/pool/run", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_warned_once_then_decided_once_with_the_basis(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any, pool_events: EventCollector
) -> None:
    dept = f"/{unique('d')}"
    rule = await make_rule(pool_client, dept)
    rep = unique("rep")
    customer = await CustomerFeed(producer).created(owner_id=rep, department_path=dept)
    clock = await clock_of(pool_app, customer.id, owner_id=rep, rule_id=rule["rule_id"])
    since = clock["owner_since"]
    assert clock["deadline"] == since + timedelta(days=10)

    # The rep sees the countdown.
    pool_clock.set(since + timedelta(days=2))
    mine = (await pool_client.get("/v1/pool/my-customers", headers=auth(rep, ["rep"], dept))).json()["items"]
    assert [(m["customer_id"], m["days_left"], m["rule_id"], m["reason"]) for m in mine] == [
        (customer.id, 8, rule["rule_id"], "no_interaction")
    ]

    # The preview tells who would be warned / recycled at a moment, and why.
    at = (since + timedelta(days=8)).isoformat()
    preview = (await pool_client.get("/v1/pool/preview", params={"at": at, "department": dept}, headers=ADMIN)).json()
    assert [(i["customer_id"], i["action"], i["rule_id"], i["days_without_interaction"]) for i in preview["items"]] == [
        (customer.id, "warn", rule["rule_id"], 8)
    ]
    at = (since + timedelta(days=11)).isoformat()
    preview = (await pool_client.get("/v1/pool/preview", params={"at": at, "department": dept}, headers=ADMIN)).json()
    assert [i["action"] for i in preview["items"]] == ["recycle"]
    assert "no follow-up by the owner for 10 days" in preview["items"][0]["reason_text"]

    # Nothing before the warning date; then one warning, however often it runs.
    pool_clock.set(since + timedelta(days=6))
    await run(pool_client)
    pool_clock.set(since + timedelta(days=7))
    assert (await run(pool_client))["warned"] >= 1
    await run(pool_client)
    warnings = await pool_events.wait_for(1, type="crm.pool.recycle_warning", subject=customer.id)
    data = warnings[0].event["data"]
    assert (data["owner_id"], data["recycle_at"][:19], data["days_left"]) == (
        rep,
        (since + timedelta(days=10)).isoformat()[:19],
        3,
    )
    mine = (await pool_client.get("/v1/pool/my-customers", headers=auth(rep, ["rep"], dept))).json()["items"]
    assert mine[0]["warned"] is True

    # At the deadline: one decision, with the basis it was made on.
    pool_clock.set(since + timedelta(days=10, seconds=1))
    await run(pool_client)
    await run(pool_client)
    decided = await pool_events.wait_for(1, type="crm.pool.release_decided", subject=customer.id)
    await asyncio.sleep(0)  # let any stray duplicate reach the collector before counting
    assert len(pool_events.matching(type="crm.pool.release_decided", subject=customer.id)) == 1
    assert len(pool_events.matching(type="crm.pool.recycle_warning", subject=customer.id)) == 1
    event = decided[0].event
    assert event["actor"] == "system:pool"
    assert (event["data"]["owner_id"], event["data"]["rule_id"], event["data"]["reason"]) == (
        rep,
        rule["rule_id"],
        "no_interaction",
    )
    assert event["data"]["basis"]["last_interaction_at"] is None


async def test_a_late_warning_still_gives_the_owner_k_days(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any, pool_events: EventCollector
) -> None:
    dept = f"/{unique('d')}"
    rep = unique("rep")
    customer = await CustomerFeed(producer).created(owner_id=rep, department_path=dept)
    clock = await clock_of(pool_app, customer.id, owner_id=rep)
    since = clock["owner_since"]
    # The rule arrives when the customer is long overdue.
    await make_rule(pool_client, dept)
    pool_clock.set(since + timedelta(days=30))
    report = await run(pool_client)
    assert report["decided"] == 0
    warning = (await pool_events.wait_for(1, type="crm.pool.recycle_warning", subject=customer.id))[0].event["data"]
    assert warning["recycle_at"][:19] == (since + timedelta(days=33)).isoformat()[:19]
    pool_clock.set(since + timedelta(days=33))
    await run(pool_client)
    await pool_events.wait_for(1, type="crm.pool.release_decided", subject=customer.id)


async def test_a_follow_up_by_the_owner_moves_the_deadline_and_others_do_not(
    pool_app: FastAPI, pool_client: Any, producer: Any
) -> None:
    dept = f"/{unique('d')}"
    await make_rule(pool_client, dept)
    rep = unique("rep")
    customer = await CustomerFeed(producer).created(owner_id=rep, department_path=dept)
    clock = await clock_of(pool_app, customer.id, owner_id=rep)
    since = clock["owner_since"]
    await log_interaction(producer, customer.id, unique("someone-else"), since + timedelta(days=4))
    clock = await clock_of(pool_app, customer.id, last_interaction_at=since + timedelta(days=4))
    assert clock["deadline"] == since + timedelta(days=10)
    await log_interaction(producer, customer.id, rep, since + timedelta(days=5))
    clock = await clock_of(pool_app, customer.id, deadline=since + timedelta(days=15))
    assert clock["last_owner_interaction_at"] == since + timedelta(days=5)


async def test_exempt_by_tag_and_by_an_open_opportunity_past_the_stage(
    pool_app: FastAPI, pool_client: Any, producer: Any
) -> None:
    dept = f"/{unique('d')}"
    proposal, initial = unique("stage-proposal"), unique("stage-initial")
    await publish_pipeline(producer, initial, proposal)
    rule = await make_rule(pool_client, dept, exempt_tags=["key-account"], exempt_stage_id=proposal)
    feed = CustomerFeed(producer)
    key = await feed.created(owner_id=unique("rep"), department_path=dept, tags=["key-account"])
    clock = await clock_of(pool_app, key.id, rule_id=rule["rule_id"])
    assert clock["exempt"] == "tag key-account"

    rep = unique("rep")
    deal = await feed.created(owner_id=rep, department_path=dept)
    await clock_of(pool_app, deal.id, owner_id=rep, exempt=None, rule_id=rule["rule_id"])
    await publish_opportunity(producer, deal.id, rep, initial, "Initial")
    await clock_of(
        pool_app,
        deal.id,
        open_opportunities=[{"opportunity_id": f"o-{deal.id}", "stage_id": initial, "stage_name": "Initial"}],
    )
    assert (await pool_app.state.repo.get_clock(deal.id))["exempt"] is None
    await publish_opportunity(producer, deal.id, rep, proposal, "Proposal", version=2)
    clock = await clock_of(pool_app, deal.id, exempt=f"open opportunity o-{deal.id} at stage Proposal")
    assert clock["release_due"].year == 9999


async def test_two_schedulers_racing_decide_each_customer_once(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any, pool_events: EventCollector
) -> None:
    dept = f"/{unique('d')}"
    await make_rule(pool_client, dept, warn_days=0)
    feed = CustomerFeed(producer)
    customers = [await feed.created(owner_id=unique("rep"), department_path=dept) for _ in range(20)]
    clocks = [await clock_of(pool_app, c.id, department_path=dept, reason="no_interaction") for c in customers]
    pool_clock.set(max(c["deadline"] for c in clocks) + timedelta(seconds=1))
    repo = pool_app.state.repo
    kit = pool_app.state.kit
    replicas = [Recycler(repo, pool_clock, kit.source, batch_size=7) for _ in range(2)]
    # warn_days=0: the warning and the decision fall due together; two rounds, both replicas racing.
    first = await asyncio.gather(*(r.run() for r in replicas))
    second = await asyncio.gather(*(r.run() for r in replicas))
    assert sum(r.warned for r in first + second) >= 20  # this department's 20 (other tests' customers may join)
    ids = {c.id for c in customers}

    def ours(event_type: str) -> list[Any]:
        return [e for e in pool_events.matching(type=event_type) if e.event["subject"] in ids]

    # Other tests' customers publish decisions too: wait for ours, then check there are no more.
    await eventually(lambda: len(ours("crm.pool.release_decided")) >= 20, timeout=30, message="20 decisions")
    await eventually(lambda: len(ours("crm.pool.recycle_warning")) >= 20, timeout=30, message="20 warnings")
    decided, warned = ours("crm.pool.release_decided"), ours("crm.pool.recycle_warning")
    assert sorted(e.event["subject"] for e in decided) == sorted(ids)
    assert sorted(e.event["subject"] for e in warned) == sorted(ids)


async def publish_pipeline(producer: Any, *stage_ids: str) -> None:
    await send(producer, pipeline.TOPIC, pipeline_configured(*stage_ids).model_dump(mode="json"))


async def publish_opportunity(
    producer: Any, customer_id: str, owner: str, stage_id: str, stage_name: str, version: int = 1
) -> None:
    now = datetime.now(UTC)
    snapshot = pipeline.OpportunitySnapshot(
        opportunity_id=f"o-{customer_id}",
        name="deal",
        customer_id=customer_id,
        currency="CNY",
        probability=20,
        pipeline_id="p",
        stage_id=stage_id,
        stage_name=stage_name,
        stage_kind="open",
        stage_entered_at=now,
        status="open",
        owner_id=owner,
        created_at=now,
        updated_at=now,
    )
    envelope = pipeline.OPPORTUNITY_CREATED.build(
        source="/crm/pipeline",
        subject=snapshot.opportunity_id,
        data=pipeline.OpportunityCreated(opportunity=snapshot),
        aggregate_version=version,
        time=now,
        actor=owner,
    )
    await send(producer, pipeline.TOPIC, envelope.model_dump(mode="json"))


async def send(producer: Any, topic: str, envelope: dict[str, Any]) -> None:
    key, value, headers = to_kafka(envelope)
    await producer.send_and_wait(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])


async def test_changing_a_rule_recomputes_the_deadlines_under_it(
    pool_app: FastAPI, pool_client: Any, producer: Any
) -> None:
    dept = f"/{unique('d')}"
    rule = await make_rule(pool_client, dept)
    rep = unique("rep")
    customer = await CustomerFeed(producer).created(owner_id=rep, department_path=f"{dept}/team")
    clock = await clock_of(pool_app, customer.id, owner_id=rep, rule_id=rule["rule_id"])
    since = clock["owner_since"]
    r = await pool_client.patch(
        f"/v1/pool/rules/{rule['rule_id']}", json={"no_interaction_days": 20}, headers={**ADMIN, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    await pool_app.state.recomputes.settle()  # the recompute runs after the answer
    assert (await pool_app.state.repo.get_clock(customer.id))["deadline"] == since + timedelta(days=20)
    # A more specific rule for the team takes over; deleting it hands back to the department's.
    team = await make_rule(pool_client, f"{dept}/team", no_interaction_days=5, warn_days=1)
    await pool_app.state.recomputes.settle()
    clock = await pool_app.state.repo.get_clock(customer.id)
    assert (clock["rule_id"], clock["deadline"]) == (team["rule_id"], since + timedelta(days=5))
    r = await pool_client.delete(f"/v1/pool/rules/{team['rule_id']}", headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 200
    await pool_app.state.recomputes.settle()
    clock = await pool_app.state.repo.get_clock(customer.id)
    assert (clock["rule_id"], clock["deadline"]) == (rule["rule_id"], since + timedelta(days=20))
    # Managers preview their own subtree only.
    manager = auth(unique("mgr"), ["manager"], dept)
    at = (since + timedelta(days=19)).isoformat()
    mine = (await pool_client.get("/v1/pool/preview", params={"at": at}, headers=manager)).json()["items"]
    assert [i["customer_id"] for i in mine] == [customer.id]
    outsider = auth(unique("mgr"), ["manager"], f"/{unique('else')}")
    theirs = (await pool_client.get("/v1/pool/preview", params={"at": at}, headers=outsider)).json()["items"]
    assert customer.id not in [i["customer_id"] for i in theirs]
    bad = await pool_client.get("/v1/pool/preview", params={"at": "tomorrow"}, headers=manager)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "at"


async def publish_deal_event(
    producer: Any,
    event_type: Any,
    data_type: Any,
    customer_id: str,
    opportunity_id: str,
    owner: str,
    version: int,
    status: str,
    at: datetime,
    **extra: Any,
) -> None:
    """An opportunity event whose snapshot has ``status``, moved at ``at`` (won, reopened, customer changed)."""
    snapshot = pipeline.OpportunitySnapshot(
        opportunity_id=opportunity_id,
        name="deal",
        customer_id=customer_id,
        currency="CNY",
        probability=100 if status == "won" else 50,
        pipeline_id="p",
        stage_id="s-won" if status == "won" else "s-open",
        stage_name="Won" if status == "won" else "Negotiation",
        stage_kind="won" if status == "won" else "open",
        stage_entered_at=at,
        status=status,
        won_on=at.date() if status == "won" else None,
        owner_id=owner,
        created_at=at - timedelta(days=30),
        updated_at=at,
    )
    move = pipeline.StageMove(
        from_stage_id="s-open",
        from_stage_name="Negotiation",
        to_stage_id=snapshot.stage_id,
        to_stage_name=snapshot.stage_name,
        moved_by=owner,
        moved_at=at,
    )
    fields: dict[str, Any] = {"opportunity": snapshot, **extra}
    if "move" in data_type.model_fields:
        fields["move"] = move
    if "customer_id" in data_type.model_fields:
        fields["customer_id"] = customer_id
    envelope = event_type.build(
        source="/crm/pipeline",
        subject=opportunity_id,
        data=data_type(**fields),
        aggregate_version=version,
        time=at,
        actor=owner,
    )
    await send(producer, pipeline.TOPIC, envelope.model_dump(mode="json"))


async def test_a_reopened_won_deal_no_longer_counts_and_a_merge_carries_won_deals(
    pool_app: FastAPI, pool_client: Any, producer: Any
) -> None:
    dept = f"/{unique('d')}"
    await make_rule(pool_client, dept, no_interaction_days=None, no_won_days=90)
    rep = unique("rep")
    feed = CustomerFeed(producer)
    customer = await feed.created(owner_id=rep, department_path=dept)
    clock = await clock_of(pool_app, customer.id, owner_id=rep, reason="no_won_opportunity")
    since = clock["owner_since"]
    assert clock["deadline"] == since + timedelta(days=90)

    first, second = unique("opp"), unique("opp")
    won_first, won_second = since + timedelta(days=10), since + timedelta(days=40)
    for opp, at in ((first, won_first), (second, won_second)):
        await publish_deal_event(
            producer,
            pipeline.OPPORTUNITY_WON,
            pipeline.OpportunityWon,
            customer.id,
            opp,
            rep,
            2,
            "won",
            at,
            reason="signed",
        )
    clock = await clock_of(pool_app, customer.id, last_won_at=won_second)
    assert clock["deadline"] == won_second + timedelta(days=90)

    # The later deal is reopened: the customer's last won deal is the earlier one again.
    await publish_deal_event(
        producer,
        pipeline.OPPORTUNITY_REOPENED,
        pipeline.OpportunityReopened,
        customer.id,
        second,
        rep,
        3,
        "open",
        since + timedelta(days=45),
        reason="contract cancelled",
        previous_status="won",
    )
    clock = await clock_of(pool_app, customer.id, last_won_at=won_first)
    assert clock["deadline"] == won_first + timedelta(days=90)
    assert [d["opportunity_id"] for d in clock["won_deals"]] == [first]

    # A merge moves the won deal to the survivor, with the moment it was won.
    survivor = await feed.created(owner_id=rep, department_path=dept)
    await clock_of(pool_app, survivor.id, owner_id=rep, last_won_at=None)
    await publish_deal_event(
        producer,
        pipeline.OPPORTUNITY_CUSTOMER_CHANGED,
        pipeline.CustomerChanged,
        survivor.id,
        first,
        rep,
        4,
        "won",
        since + timedelta(days=50),
        previous_customer_id=customer.id,
    )
    moved = await clock_of(pool_app, survivor.id, last_won_at=won_first)
    assert [d["opportunity_id"] for d in moved["won_deals"]] == [first]
    await clock_of(pool_app, customer.id, last_won_at=None, won_deals=[])


async def test_a_rule_change_applies_at_the_next_run_and_a_draft_rule_can_be_previewed(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any, pool_events: EventCollector
) -> None:
    dept = f"/{unique('d')}"
    rule = await make_rule(pool_client, dept, no_interaction_days=60, warn_days=3)
    rep = unique("rep")
    customer = await CustomerFeed(producer).created(owner_id=rep, department_path=dept)
    since = (await clock_of(pool_app, customer.id, owner_id=rep, rule_id=rule["rule_id"]))["owner_since"]
    at = since + timedelta(days=20)
    preview = (await pool_client.get("/v1/pool/preview", params={"at": at.isoformat()}, headers=ADMIN)).json()
    assert customer.id not in [i["customer_id"] for i in preview["items"]]

    # A stricter rule, previewed before saving it: nothing stored, nothing published.
    draft = {"name": "stricter", "department_path": dept, "no_interaction_days": 15, "warn_days": 3}
    r = await pool_client.post("/v1/pool/preview", json={"rule": draft, "at": at.isoformat()}, headers=ADMIN)
    assert r.status_code == 200, r.text
    [item] = [i for i in r.json()["items"] if i["customer_id"] == customer.id]
    assert (item["action"], item["rule_id"], item["deadline"][:19]) == (
        "recycle",
        "draft",
        (since + timedelta(days=15)).isoformat()[:19],
    )
    assert (await pool_app.state.repo.get_rule(rule["rule_id"]))["no_interaction_days"] == 60
    outsider = auth(unique("mgr"), ["manager"], f"/{unique('else')}")
    refused = await pool_client.post("/v1/pool/preview", json={"rule": draft}, headers=outsider)
    assert refused.status_code == 403
    bad = await pool_client.post("/v1/pool/preview", json={"rule": {**draft, "warn_days": -1}}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "rule.warn_days"

    # Saved: the next run uses it straight away (the deadlines are worked out at the run).
    r = await pool_client.patch(
        f"/v1/pool/rules/{rule['rule_id']}", json={"no_interaction_days": 15}, headers={**ADMIN, "If-Match": '"1"'}
    )
    assert r.status_code == 200
    pool_clock.set(at)
    await run(pool_client)
    [warning] = await pool_events.wait_for(1, type="crm.pool.recycle_warning", subject=customer.id)
    # Past the new deadline already: the owner still gets the K days of notice.
    assert warning.event["data"]["recycle_at"][:19] == (at + timedelta(days=3)).isoformat()[:19]
    mine = (await pool_client.get("/v1/pool/my-customers", headers=auth(rep, ["rep"], dept))).json()["items"]
    assert [(m["customer_id"], m["warned"], m["days_left"]) for m in mine] == [(customer.id, True, 3)]


async def test_runs_leave_handled_clocks_alone_until_an_event_or_a_rule_change(
    pool_app: FastAPI, pool_client: Any, pool_clock: ManualClock, producer: Any, pool_events: EventCollector
) -> None:
    dept = f"/{unique('d')}"
    rule = await make_rule(pool_client, dept, no_interaction_days=10, warn_days=3, exempt_tags=["vip"])
    feed = CustomerFeed(producer)
    vip = await feed.created(owner_id=unique("rep"), department_path=dept, tags=["vip"])
    plain = await feed.created(owner_id=unique("rep"), department_path=dept)
    since = (await clock_of(pool_app, plain.id, rule_id=rule["rule_id"]))["owner_since"]
    await clock_of(pool_app, vip.id, exempt="tag vip")
    pool_clock.set(since + timedelta(days=8))
    await run(pool_client)
    await pool_events.wait_for(1, type="crm.pool.recycle_warning", subject=plain.id)
    repo = pool_app.state.repo

    def parked_until(clock: dict[str, Any]) -> datetime:
        return datetime.fromtimestamp(clock["parked_until_ms"] / 1000, UTC)

    # The warned customer waits for its recycling date, the exempt one for a day.
    warned = await repo.get_clock(plain.id)
    assert parked_until(warned) == warned["recycle_at"]
    assert parked_until(await repo.get_clock(vip.id)) == pool_clock.now() + timedelta(days=1)
    candidates = await pool_app.state.recycler.candidates(await repo.live_rules(), pool_clock.now(), dept, False)
    assert {c["_id"] for c in candidates}.isdisjoint({plain.id, vip.id})

    # A follow-up (an event) puts the clock back; so does a rule change, which here ends the exemption.
    await log_interaction(producer, plain.id, warned["owner_id"], since + timedelta(days=8))
    await clock_of(pool_app, plain.id, parked_until_ms=0)
    r = await pool_client.patch(
        f"/v1/pool/rules/{rule['rule_id']}", json={"exempt_tags": []}, headers={**ADMIN, "If-Match": '"1"'}
    )
    assert r.status_code == 200
    assert (await repo.get_clock(vip.id))["parked_until_ms"] == 0
    await run(pool_client)
    [warning] = await pool_events.wait_for(1, type="crm.pool.recycle_warning", subject=vip.id)
    assert warning.event["data"]["reason"] == "no_interaction"
