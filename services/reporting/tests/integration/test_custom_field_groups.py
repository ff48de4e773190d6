"""Reports grouped by a custom field of opportunities (the funnel's ``custom_field``), interactions
and tasks (the activity report's ``interaction_field`` and ``task_field``), learnt from the
crm.custom_field.* events and the records' ``custom`` snapshots, checked against hand-counted figures.

The story (November 2026, one department, reps A and B, one pipeline):
- o1 (A, 100000.00): seg big, prods [a, b], partner P, strategic true; open.
- o2 (A,  50000.00): seg big, prods [a], strategic false; won 11-10.
- o3 (A,  20000.00): seg small; lost 11-12.
- o4 (B,  30000.00): no custom values; open.
- o5 (A,  70000.00): seg small; won 12-02 (outside November).
- interactions of A: demo 11-03, demo 11-04, none 11-05, visit 12-01 (outside), demo hidden 11-06
  (its customer deleted: out of activity); of B: visit 11-07.
- tasks: A call created 11-03, A call deleted, B mail created 11-06, B call created 10-20 (outside).

Every field is archived at the end: definitions apply to every record the session's service
projects, and other tests' figures must not depend on them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from fastapi import FastAPI

from crm_platform.contracts import custom_fields as fev
from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope
from crm_platform.testing.event_feed import EventFeed, at, customer, opportunity, pipeline
from crm_platform.testing.fixtures import auth, eventually, unique
from crm_platform.testing.roles import role_event


def definition(module: str, key: str, type_: str, status: str = "active", **extra: Any) -> fev.FieldDefinitionData:
    now = datetime.now(UTC)
    return fev.FieldDefinitionData(
        field_id=f"{module}.{key}",
        module=module,
        key=key,
        type=type_,
        labels={"zh-CN": key, "en": key},
        status=status,
        created_at=now,
        updated_at=now,
        **extra,
    )


def options(*keys: str) -> list[fev.OptionData]:
    return [fev.OptionData(key=k, labels={"zh-CN": k, "en": k}) for k in keys]


def key(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def define(feed: EventFeed, fields: list[fev.FieldDefinitionData]) -> None:
    for f in fields:
        await feed.send(fev.FIELD_DEFINED, f.field_id, fev.FieldDefined(field=f), at("2026-10-01"))


async def archive(feed: EventFeed, fields: list[fev.FieldDefinitionData]) -> None:
    for f in fields:
        archived = f.model_copy(update={"status": "archived"})
        await feed.send(fev.FIELD_ARCHIVED, f.field_id, fev.FieldArchived(field=archived), at("2026-12-31"))


def interaction(iid: str, author: str, dept: str, day: str, custom: dict[str, Any], hidden: bool = False) -> Any:
    snap = iev.InteractionSnapshot(
        interaction_id=iid,
        channel="visit",
        customer_id=unique("c"),
        author_id=author,
        author_department_path=dept,
        occurred_at=at(day),
        recorded_at=at(day),
        recorded_late=False,
        updated_at=at(day),
        hidden=hidden,
        custom=custom,
    )
    return iev.InteractionLogged(
        interaction_id=iid,
        customer_id=snap.customer_id,
        author_id=author,
        channel="visit",
        occurred_at=at(day),
        interaction=snap,
    )


def task(tid: str, assignee: str, dept: str, day: str, custom: dict[str, Any], status: str = "open") -> Any:
    return iev.TaskSnapshot(
        task_id=tid,
        title="回访",
        due_at=at("2026-11-20"),
        assignee_id=assignee,
        assignee_department_path=dept,
        created_by=assignee,
        status=status,  # type: ignore[arg-type]
        created_at=at(day),
        updated_at=at(day),
        custom=custom,
    )


async def test_funnel_and_activity_group_by_custom_fields(
    client: Any, reporting_app: FastAPI, feed: EventFeed, wait_applied: Any
) -> None:
    seg, prods, partner, strategic, note, old = (key(p) for p in ("seg", "prods", "partner", "strat", "note", "old"))
    purpose, kind = key("purpose"), key("kind")
    fields = [
        definition("opportunities", seg, "choice", options=options("big", "small")),
        definition("opportunities", prods, "multi_choice", options=options("a", "b")),
        definition("opportunities", partner, "user"),
        definition("opportunities", strategic, "boolean"),
        definition("opportunities", note, "text"),
        definition("opportunities", old, "choice", options=options("x")),
        definition("interactions", purpose, "choice", options=options("demo", "visit")),
        definition("tasks", kind, "choice", options=options("call", "mail")),
    ]
    await define(feed, fields)
    await archive(feed, [fields[5]])
    definitions = reporting_app.state.reports.definitions
    await eventually(
        lambda: (
            {seg, prods, partner, strategic, note} <= set(definitions.fieldset("opportunities").active)
            and old in definitions.fieldset("opportunities").archived
            and purpose in definitions.fieldset("interactions").active
            and kind in definitions.fieldset("tasks").active
        ),
        message="definitions learnt",
    )
    try:
        await _story_and_reports(
            client, reporting_app, feed, wait_applied, seg, prods, partner, strategic, note, old, purpose, kind
        )
    finally:
        await archive(feed, [f for i, f in enumerate(fields) if i != 5])


async def _story_and_reports(
    client: Any,
    reporting_app: FastAPI,
    feed: EventFeed,
    wait_applied: Any,
    seg: str,
    prods: str,
    partner: str,
    strategic: str,
    note: str,
    old: str,
    purpose: str,
    kind: str,
) -> None:
    dept, pid, rep_a, rep_b, p = f"/hq/{unique('d')}", unique("p"), unique("a"), unique("b"), unique("u")
    sent: list[EventEnvelope] = [await feed.user(p, "伙伴甲", dept), await feed.user(rep_a, "甲", dept)]
    sent.append(
        await feed.send(
            pev.PIPELINE_CONFIGURED,
            pid,
            pev.PipelineConfigured(pipeline=pipeline(pid), action="created"),
            at("2026-10-01"),
        )
    )

    async def deal(
        oid: str, rep: str, amount: str, custom: dict[str, Any], end: str | None = None, day: str = ""
    ) -> None:
        snap = opportunity(
            oid, unique("c"), rep, dept, pid, "s1", amount, at("2026-11-02"), at("2026-11-02"), probability=10
        )
        snap = snap.model_copy(update={"custom": custom})
        sent.append(
            await feed.send(pev.OPPORTUNITY_CREATED, oid, pev.OpportunityCreated(opportunity=snap), at("2026-11-02"))
        )
        if end is None:
            return
        closed = opportunity(
            oid,
            snap.customer_id,
            rep,
            dept,
            pid,
            end,
            amount,
            at("2026-11-02"),
            at(day),
            probability=10,
            status=end,
            won_on=date.fromisoformat(day) if end == "won" else None,
            lost_on=date.fromisoformat(day) if end == "lost" else None,
        ).model_copy(update={"custom": custom})
        move = pev.StageMove(
            from_stage_id=f"{pid}-s1",
            from_stage_name="s1",
            to_stage_id=f"{pid}-{end}",
            to_stage_name=end,
            moved_by=rep,
            moved_at=at(day),
            time_in_previous_stage_seconds=86400.0,
        )
        if end == "won":
            won = pev.OpportunityWon(opportunity=closed, move=move, reason="价格合适")
            sent.append(await feed.send(pev.OPPORTUNITY_WON, oid, won, at(day)))
        else:
            lost = pev.OpportunityLost(opportunity=closed, move=move, reason="预算", competitor="X")
            sent.append(await feed.send(pev.OPPORTUNITY_LOST, oid, lost, at(day)))

    o1 = unique("o")
    await deal(o1, rep_a, "100000.00", {seg: "big", prods: ["a", "b"], partner: p, strategic: True})
    await deal(unique("o"), rep_a, "50000.00", {seg: "big", prods: ["a"], strategic: False}, "won", "2026-11-10")
    await deal(unique("o"), rep_a, "20000.00", {seg: "small"}, "lost", "2026-11-12")
    await deal(unique("o"), rep_b, "30000.00", {})
    await deal(unique("o"), rep_a, "70000.00", {seg: "small"}, "won", "2026-12-02")

    for author, day, custom, hidden in (
        (rep_a, "2026-11-03", {purpose: "demo"}, False),
        (rep_a, "2026-11-04", {purpose: "demo"}, False),
        (rep_a, "2026-11-05", {}, False),
        (rep_a, "2026-12-01", {purpose: "visit"}, False),
        (rep_a, "2026-11-06", {purpose: "demo"}, True),
        (rep_b, "2026-11-07", {purpose: "visit"}, False),
    ):
        iid = unique("i")
        sent.append(
            await feed.send(iev.INTERACTION_LOGGED, iid, interaction(iid, author, dept, day, custom, hidden), at(day))
        )
    deleted = unique("t")
    for tid, assignee, day, custom in (
        (unique("t"), rep_a, "2026-11-03", {kind: "call"}),
        (deleted, rep_a, "2026-11-04", {kind: "call"}),
        (unique("t"), rep_b, "2026-11-06", {kind: "mail"}),
        (unique("t"), rep_b, "2026-10-20", {kind: "call"}),
    ):
        snap = task(tid, assignee, dept, day, custom)
        sent.append(await feed.send(iev.TASK_CREATED, tid, iev.TaskCreated(task=snap), at(day)))
    gone = task(deleted, rep_a, dept, "2026-11-04", {kind: "call"}, status="deleted")
    sent.append(await feed.send(iev.TASK_DELETED, deleted, iev.TaskDeleted(task=gone), at("2026-11-05")))
    await wait_applied(sent)

    admin = auth("boss", ["admin"], "/hq")
    base = {"period": "2026-11", "pipeline_id": pid, "department_path": dept}

    async def by(field: str, headers: dict[str, str] = admin, **extra: str) -> dict[str, Any]:
        r = await client.get(
            "/v1/reports/funnel", params={**base, "custom_field": f"custom.{field}", **extra}, headers=headers
        )
        assert r.status_code == 200, r.text
        grouped: dict[str, Any] = r.json()["by_custom_field"]
        assert grouped["field"] == f"custom.{field}"
        return {row.pop("value"): row for row in grouped["rows"]}

    def row(open_n: int, open_amt: str, won: int, won_amt: str, lost: int) -> dict[str, Any]:
        return {"open_count": open_n, "open_amount": open_amt, "won": won, "won_amount": won_amt, "lost": lost}

    assert await by(seg) == {
        "big": row(1, "100000.00", 1, "50000.00", 0),
        "small": row(0, "0.00", 0, "0.00", 1),  # o5 won in December: not in November's figures
        "(none)": row(1, "30000.00", 0, "0.00", 0),
    }
    assert await by(prods) == {  # a multi-choice opportunity counts under each of its options
        "a": row(1, "100000.00", 1, "50000.00", 0),
        "b": row(1, "100000.00", 0, "0.00", 0),
        "(none)": row(1, "30000.00", 0, "0.00", 1),
    }
    assert await by(partner) == {  # a user field: the user's id, and name
        p: {"name": "伙伴甲", **row(1, "100000.00", 0, "0.00", 0)},
        "(none)": {"name": None, **row(1, "30000.00", 1, "50000.00", 1)},
    }
    assert await by(strategic) == {
        "true": row(1, "100000.00", 0, "0.00", 0),
        "false": row(0, "0.00", 1, "50000.00", 0),
        "(none)": row(1, "30000.00", 0, "0.00", 1),
    }
    # The usual filters: rep B's own figures only; and the CSV holds the rows per value.
    assert await by(seg, owner_id=rep_b) == {"(none)": row(1, "30000.00", 0, "0.00", 0)}
    r = await client.get(
        "/v1/reports/funnel", params={**base, "custom_field": f"custom.{seg}", "format": "csv"}, headers=admin
    )
    lines = r.text.lstrip("\ufeff").splitlines()
    assert lines[0] == "value,open_count,open_amount,won,won_amount,lost" and "big,1,100000.00,1,50000.00,0" in lines

    # A changed value moves the counts by the difference: o1 big -> small.
    o1_snap = opportunity(
        o1, unique("c"), rep_a, dept, pid, "s1", "100000.00", at("2026-11-02"), at("2026-11-02"), probability=10
    ).model_copy(update={"custom": {seg: "small"}})
    changes = [pev.FieldChange(field=f"custom.{seg}", old="big", new="small")]
    await wait_applied(
        [
            await feed.send(
                pev.OPPORTUNITY_UPDATED,
                o1,
                pev.OpportunityUpdated(opportunity=o1_snap, changes=changes),
                at("2026-11-15"),
            )
        ]
    )
    assert await by(seg) == {
        "big": row(0, "0.00", 1, "50000.00", 0),
        "small": row(1, "100000.00", 0, "0.00", 1),
        "(none)": row(1, "30000.00", 0, "0.00", 0),
    }

    # Unknown, archived, ungroupable, or not custom.<key>: 422 naming the parameter.
    for bad in (f"custom.{note}", f"custom.{old}", "custom.nope", seg):
        r = await client.get("/v1/reports/funnel", params={**base, "custom_field": bad}, headers=admin)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "custom_field", r.text
    assert (
        "archived"
        in (
            await client.get("/v1/reports/funnel", params={**base, "custom_field": f"custom.{old}"}, headers=admin)
        ).json()["errors"][0]["reason"]
    )

    # Activity: interactions by occurrence and author, tasks by creation and assignee, in the period.
    params = {
        "period": "2026-11",
        "department_path": dept,
        "interaction_field": f"custom.{purpose}",
        "task_field": f"custom.{kind}",
    }
    r = await client.get("/v1/reports/activity", params=params, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["custom_fields"] == {
        "interactions": {"field": f"custom.{purpose}", "type": "choice"},
        "tasks": {"field": f"custom.{kind}", "type": "choice"},
    }
    assert body["interactions_by_field"] == [
        {"value": "demo", "count": 2},
        {"value": "(none)", "count": 1},
        {"value": "visit", "count": 1},
    ]
    assert [(x["rep_id"], x["value"], x["count"]) for x in body["interactions_by_field_per_rep"]] == sorted(
        [(rep_a, "(none)", 1), (rep_a, "demo", 2), (rep_b, "visit", 1)]
    )
    assert body["tasks_by_field"] == [{"value": "call", "count": 1}, {"value": "mail", "count": 1}]
    assert [(x["rep_id"], x["value"], x["count"]) for x in body["tasks_by_field_per_rep"]] == sorted(
        [(rep_a, "call", 1), (rep_b, "mail", 1)]
    )
    r = await client.get("/v1/reports/activity", params={**params, "owner_id": rep_b}, headers=admin)
    assert r.json()["tasks_by_field"] == [{"value": "mail", "count": 1}]
    assert r.json()["interactions_by_field"] == [{"value": "visit", "count": 1}]
    csv_text = (
        await client.get(
            "/v1/reports/activity",
            params={**params, "format": "csv", "section": "tasks_by_field_per_rep"},
            headers=admin,
        )
    ).text
    assert csv_text.lstrip("\ufeff").splitlines()[0] == "rep_id,rep_name,value,count"
    # A rep's own scope: only their own tasks, whatever department they ask for.
    mine = await client.get(
        "/v1/reports/activity",
        params={"period": "2026-11", "task_field": f"custom.{kind}"},
        headers=auth(rep_b, ["rep"], dept),
    )
    assert mine.status_code == 200 and mine.json()["tasks_by_field"] == [{"value": "mail", "count": 1}], mine.text
    for name, bad in (("interaction_field", f"custom.{kind}"), ("task_field", f"custom.{purpose}")):
        r = await client.get("/v1/reports/activity", params={"period": "2026-11", name: bad}, headers=admin)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == name, r.text
    r = await client.get(
        "/v1/reports/activity", params={"period": "2026-11", "section": "tasks_by_field"}, headers=admin
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "section", r.text

    # A role that hides the amount keeps the counts per value without the sums; one that hides
    # the field may not group by it (nor a customer distribution over a hidden custom field).
    role = f"cf-staff-{uuid.uuid4().hex[:6]}"
    hides = {
        "opportunities": {"amount": "hidden", f"custom.{strategic}": "hidden"},
        "customers": {"custom.secret": "hidden"},
    }
    await reporting_app.state.kit.roles.apply(
        role_event(role, 1, permissions=["account:self", "reports:view"], scopes={"reports": "all"}, fields=hides)
    )
    staff = auth(rep_a, [role], dept)
    assert await by(seg, headers=staff) == {
        "big": {"open_count": 0, "won": 1, "lost": 0},
        "small": {"open_count": 1, "won": 0, "lost": 1},
        "(none)": {"open_count": 1, "won": 0, "lost": 0},
    }
    r = await client.get("/v1/reports/funnel", params={**base, "custom_field": f"custom.{strategic}"}, headers=staff)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == f"custom.{strategic}", r.text
    r = await client.get("/v1/reports/distribution", params={"field": "custom.secret"}, headers=staff)
    assert r.status_code == 403 and r.json()["type"].endswith("field-hidden"), r.text


async def test_quality_counts_required_custom_fields_of_opportunities(
    client: Any, reporting_app: FastAPI, feed: EventFeed, wait_applied: Any
) -> None:
    need, other = key("need"), key("opt")
    fields = [
        definition("opportunities", need, "text", required=True),
        definition("opportunities", other, "text"),
    ]
    await define(feed, fields)
    definitions = reporting_app.state.reports.definitions
    await eventually(lambda: need in definitions.fieldset("opportunities").active, message="definitions learnt")
    try:
        dept, pid, rep_a, rep_b = f"/hq/{unique('d')}", unique("p"), unique("a"), unique("b")
        sent: list[EventEnvelope] = []
        for rep, custom, hidden in (
            (rep_a, {need: "已填"}, False),
            (rep_a, {other: "x"}, False),
            (rep_b, {}, False),
            (rep_b, {}, True),  # its customer deleted: out of every report
        ):
            oid = unique("o")
            snap = opportunity(
                oid, unique("c"), rep, dept, pid, "s1", "1000.00", at("2026-11-02"), at("2026-11-02"), probability=10
            ).model_copy(update={"custom": custom, "hidden": hidden})
            created = pev.OpportunityCreated(opportunity=snap)
            sent.append(await feed.send(pev.OPPORTUNITY_CREATED, oid, created, at("2026-11-02")))
        await wait_applied(sent)
        params = {"period": "2026-11", "department_path": dept}
        r = await client.get("/v1/reports/quality", params=params, headers=auth("boss", ["admin"], "/hq"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["opportunity_required_fields"] == [f"custom.{need}"]
        assert body["overall"]["opportunity_missing_per_field"] == {f"custom.{need}": 2}
        figures = {
            row["rep_id"]: (row["opportunities"], row["opportunities_complete"], row["opportunity_completeness"])
            for row in body["rows"]
        }
        assert figures == {rep_a: (2, 1, 0.5), rep_b: (1, 0, 0.0)}
        overall = body["overall"]
        assert (overall["opportunities"], overall["opportunities_complete"], overall["opportunity_completeness"]) == (
            3,
            1,
            0.3333,
        )
        # A role that hides the field sees no column of it.
        role = f"cf-quality-{uuid.uuid4().hex[:6]}"
        hides = {"opportunities": {f"custom.{need}": "hidden"}}
        await reporting_app.state.kit.roles.apply(
            role_event(role, 1, permissions=["account:self", "reports:view"], scopes={"reports": "all"}, fields=hides)
        )
        r = await client.get("/v1/reports/quality", params=params, headers=auth(rep_a, [role], dept))
        assert r.status_code == 200, r.text
        assert r.json()["opportunity_required_fields"] == []
        assert r.json()["overall"]["opportunity_missing_per_field"] == {}
    finally:
        await archive(feed, fields)
    # Archived: no longer required, no opportunity columns.
    await eventually(lambda: need not in definitions.fieldset("opportunities").active, message="archive learnt")
    r = await client.get("/v1/reports/quality", params=params, headers=auth("boss", ["admin"], "/hq"))
    assert "opportunity_required_fields" not in r.json() and "opportunities" not in r.json()["overall"]


async def test_quality_counts_required_custom_fields_of_contacts(
    client: Any, reporting_app: FastAPI, feed: EventFeed, wait_applied: Any
) -> None:
    """Contacts' values come from the contact events (created with the customer, added, changed);
    a customer counts its current contacts, and a profile change keeps what they miss."""
    need = key("cneed")
    fields = [definition("contacts", need, "text", required=True)]
    await define(feed, fields)
    definitions = reporting_app.state.reports.definitions
    await eventually(lambda: need in definitions.fieldset("contacts").active, message="definitions learnt")
    dept, rep_a, rep_b = f"/hq/{unique('d')}", unique("a"), unique("b")
    params = {"period": "2026-11", "department_path": dept}
    admin = auth("boss", ["admin"], "/hq")
    try:
        day = at("2026-11-02")
        c1, c2 = unique("c"), unique("c")
        k1 = cev.ContactData(contact_id=unique("k"), name="张三", phones=["13800000000"], custom={need: "已填"})
        k2 = cev.ContactData(contact_id=unique("k"), name="李四")
        k3 = cev.ContactData(contact_id=unique("k"), name="王五")
        snap1 = customer(c1, rep_a, dept, day, contacts=[k1, k2])
        snap2 = customer(c2, rep_b, dept, day, contacts=[k3])
        sent = [
            await feed.send(cev.CUSTOMER_CREATED, c1, cev.CustomerCreated(customer=snap1, contacts=[k1, k2]), day),
            await feed.send(cev.CUSTOMER_CREATED, c2, cev.CustomerCreated(customer=snap2, contacts=[k3]), day),
        ]
        await wait_applied(sent)
        r = await client.get("/v1/reports/quality", params=params, headers=admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["contact_required_fields"] == [f"custom.{need}"]
        assert body["overall"]["contact_missing_per_field"] == {f"custom.{need}": 2}
        assert (body["overall"]["contacts"], body["overall"]["contacts_complete"]) == (3, 1)

        # k2 gets the value (a contact change); c2's profile changes (its contacts' figures kept).
        k2_done = k2.model_copy(update={"custom": {need: "补上"}})
        changes = [cev.FieldChange(field=f"custom.{need}", old=None, new="补上")]
        later = at("2026-11-03")
        snap2_tier = snap2.model_copy(update={"tier": "A", "updated_at": later})
        sent = [
            await feed.send(
                cev.CONTACT_CHANGED, c1, cev.ContactChanged(customer=snap1, contact=k2_done, changes=changes), later
            ),
            await feed.send(
                cev.CUSTOMER_UPDATED,
                c2,
                cev.CustomerUpdated(customer=snap2_tier, changes=[cev.FieldChange(field="tier", old=None, new="A")]),
                later,
            ),
        ]
        await wait_applied(sent)
        body = (await client.get("/v1/reports/quality", params=params, headers=admin)).json()
        assert body["overall"]["contact_missing_per_field"] == {f"custom.{need}": 1}
        figures = {
            row["rep_id"]: (row["contacts"], row["contacts_complete"], row["contact_completeness"])
            for row in body["rows"]
        }
        assert figures == {rep_a: (2, 2, 1.0), rep_b: (1, 0, 0.0)}

        # A role that hides the contacts' field sees no column of it.
        role = f"cf-contacts-{uuid.uuid4().hex[:6]}"
        hides = {"contacts": {f"custom.{need}": "hidden"}}
        await reporting_app.state.kit.roles.apply(
            role_event(role, 1, permissions=["account:self", "reports:view"], scopes={"reports": "all"}, fields=hides)
        )
        hidden = (await client.get("/v1/reports/quality", params=params, headers=auth(rep_a, [role], dept))).json()
        assert hidden["contact_required_fields"] == [] and hidden["overall"]["contact_missing_per_field"] == {}
    finally:
        await archive(feed, fields)
    await eventually(lambda: need not in definitions.fieldset("contacts").active, message="archive learnt")
    body = (await client.get("/v1/reports/quality", params=params, headers=admin)).json()
    assert "contact_required_fields" not in body and "contacts" not in body["overall"]
