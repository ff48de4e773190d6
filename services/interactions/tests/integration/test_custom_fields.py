"""Custom fields of interactions, tasks and feedback: values validated on create and change,
carried by the records and their events; definitions published on crm.interactions.v1.

No field defined here is required or has a default: the session's service is shared with every
other test of the service.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from crm_platform.testing.fixtures import EventCollector


def key() -> str:
    return f"f{uuid.uuid4().hex[:8]}"


CHOICES = [{"key": k, "labels": {"zh-CN": k, "en": k}} for k in ("hot", "cold")]


async def define(client: httpx.AsyncClient, admin: Any, module: str, **body: Any) -> None:
    labels = {"zh-CN": body["key"], "en": body["key"]}
    r = await client.post(f"/v1/fields/{module}", json={"labels": labels, **body}, headers=admin.headers)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("module", ["interactions", "tasks", "feedback"])
async def test_records_carry_validated_custom_values(
    client: httpx.AsyncClient,
    world: Any,
    team: Any,
    clock: Any,
    events: EventCollector,
    expect_problem: Any,
    module: str,
) -> None:
    mood, vip = key(), key()
    await define(client, team.admin, module, key=mood, type="choice", options=CHOICES)
    await define(client, team.admin, module, key=vip, type="boolean")
    customer = await world.customer(team.rep)
    now = clock.now()
    base: dict[str, Any] = {
        "interactions": {
            "channel": "note",
            "customer_id": customer.id,
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "content": "客户来电",
        },
        "tasks": {"title": "回访", "due_at": (now + timedelta(days=1)).isoformat(), "customer_id": customer.id},
        "feedback": {"kind": "request", "title": "需要发票", "description": "请开专票", "customer_id": customer.id},
    }[module]
    # A bad value and an unknown key: one 422 naming each, nothing stored.
    r = await client.post(f"/v1/{module}", json={**base, "custom": {mood: "warm", "nope": 1}}, headers=team.rep.headers)
    assert {e["field"] for e in expect_problem(r, 422)["errors"]} == {f"custom.{mood}", "custom.nope"}
    r = await client.post(f"/v1/{module}", json={**base, "custom": {mood: "hot"}}, headers=team.rep.headers)
    assert r.status_code == 201, r.text
    record = r.json()
    assert record["custom"] == {mood: "hot"}
    singular = {"interactions": "interaction", "tasks": "task", "feedback": "feedback"}[module]
    created = {"interactions": "crm.interaction.logged", "tasks": "crm.task.created", "feedback": "crm.feedback.opened"}
    [first] = await events.wait_for(type=created[module], subject=record["id"])
    if module != "interactions":  # crm.interaction.logged carries no snapshot; its record's updates do
        assert first.event["data"][singular]["custom"] == {mood: "hot"}
    url = f"/v1/{module}/{record['id']}"
    r = await client.patch(url, json={"custom": {vip: "yes"}}, headers={**team.rep.headers, "If-Match": '"1"'})
    assert expect_problem(r, 422)["errors"][0]["field"] == f"custom.{vip}"
    r = await client.patch(
        url, json={"custom": {vip: True, mood: None}}, headers={**team.rep.headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    assert r.json()["custom"] == {vip: True}
    updated = {
        "interactions": "crm.interaction.updated",
        "tasks": "crm.task.updated",
        "feedback": "crm.feedback.updated",
    }
    [change] = await events.wait_for(type=updated[module], subject=record["id"])
    assert change.event["data"][singular]["custom"] == {vip: True}
    assert {c["field"] for c in change.event["data"]["changes"]} == {f"custom.{mood}", f"custom.{vip}"}
    defined = await events.wait_for(type="crm.custom_field.defined", subject=f"{module}.{mood}")
    assert defined[0].topic == "crm.interactions.v1"


async def test_interaction_lists_filter_on_filterable_fields_through_their_indexes(
    client: httpx.AsyncClient, interactions_app: Any, world: Any, team: Any, log: Any, expect_problem: Any
) -> None:
    """``custom.<key>=<value>`` (a number also a range) on ``GET /v1/interactions`` and a customer's
    history for a field flagged filterable; its indexes exist exactly while it is flagged."""
    mood, vip, size = key(), key(), key()
    await define(client, team.admin, "interactions", key=mood, type="choice", options=CHOICES, filterable=True)
    await define(client, team.admin, "interactions", key=vip, type="boolean")
    await define(client, team.admin, "interactions", key=size, type="number", filterable=True)
    collection = interactions_app.state.services.interactions.repo.interactions

    async def indexed(k: str) -> list[list[str]]:
        return [list(ix["key"]) async for ix in await collection.list_indexes() if f"custom.{k}" in ix["key"]]

    # The value alone, and behind each of the five list prefixes with the default sort.
    assert len(await indexed(mood)) == 6 and not await indexed(vip)
    customer = await world.customer(team.rep)
    made = [
        (await log(team.rep, customer, custom={mood: m, size: n}))["id"]
        for m, n in (("hot", 1), ("hot", 5), ("cold", 9))
    ]
    await log(team.rep, customer)  # no values: matches no filter

    async def listed(url: str, **params: str) -> list[str]:
        r = await client.get(url, params=params, headers=team.rep.headers)
        assert r.status_code == 200, r.text
        return sorted(i["id"] for i in r.json()["items"])

    history = f"/v1/customers/{customer.id}/interactions"
    assert await listed(history, **{f"custom.{mood}": "hot"}) == sorted(made[:2])
    assert await listed("/v1/interactions", customer_id=customer.id, **{f"custom.{mood}": "hot"}) == sorted(made[:2])
    assert await listed(history, **{f"custom.{mood}": "hot", f"custom.{size}": "2.."}) == [made[1]]
    assert await listed(history, **{f"custom.{size}": "..9"}) == sorted(made)
    # Another team's rep does not see them, whatever the filter.
    r = await client.get("/v1/interactions", params={f"custom.{mood}": "hot"}, headers=team.stranger.headers)
    assert r.status_code == 200 and not {i["id"] for i in r.json()["items"]} & set(made), r.text
    # Not filterable, unknown, a value the field cannot hold, twice: 422 naming custom.<key>.
    for params, reason in (
        ([(f"custom.{vip}", "true")], "not filterable"),
        ([("custom.nope", "x")], "no such custom field"),
        ([(f"custom.{mood}", "warm")], "not an option"),
        ([(f"custom.{mood}", "hot"), (f"custom.{mood}", "cold")], "give one value"),
    ):
        for url in ("/v1/interactions", history):
            r = await client.get(url, params=params, headers=team.rep.headers)
            error = expect_problem(r, 422)["errors"][0]
            assert error["field"] == params[0][0] and reason in error["reason"] and error["location"] == "query"
    # Flag cleared: the indexes go and the filter is refused.
    r = await client.patch(
        f"/v1/fields/interactions/{mood}", json={"filterable": False}, headers={**team.admin.headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    assert not await indexed(mood)
    r = await client.get(history, params={f"custom.{mood}": "hot"}, headers=team.rep.headers)
    assert expect_problem(r, 422)["errors"][0]["field"] == f"custom.{mood}"


@pytest.mark.parametrize("module", ["tasks", "feedback"])
async def test_task_and_feedback_lists_filter_on_filterable_fields(
    client: httpx.AsyncClient,
    interactions_app: Any,
    world: Any,
    team: Any,
    clock: Any,
    expect_problem: Any,
    module: str,
) -> None:
    """``custom.<key>=<value>`` on ``GET /v1/tasks`` and ``GET /v1/feedback``, with the field's
    indexes made with the flag and dropped with it."""
    mood, vip = key(), key()
    await define(client, team.admin, module, key=mood, type="choice", options=CHOICES, filterable=True)
    await define(client, team.admin, module, key=vip, type="boolean")
    repo = interactions_app.state.services.interactions.repo
    collection = repo.tasks if module == "tasks" else repo.feedback

    async def indexed(k: str) -> int:
        return len([ix async for ix in await collection.list_indexes() if f"custom.{k}" in ix["key"]])

    assert await indexed(mood) == (5 if module == "tasks" else 8) and not await indexed(vip)
    customer = await world.customer(team.rep)
    base: dict[str, Any] = {
        "tasks": {"title": "回访", "due_at": (clock.now() + timedelta(days=1)).isoformat(), "customer_id": customer.id},
        "feedback": {"kind": "request", "title": "需要发票", "description": "请开专票", "customer_id": customer.id},
    }[module]
    made = {}
    for value in ("hot", "cold", None):
        body = {**base, "custom": {mood: value} if value else {}}
        r = await client.post(f"/v1/{module}", json=body, headers=team.rep.headers)
        assert r.status_code == 201, r.text
        made[value] = r.json()["id"]
    r = await client.get(
        f"/v1/{module}", params={"customer_id": customer.id, f"custom.{mood}": "hot"}, headers=team.rep.headers
    )
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [made["hot"]]
    for params, reason in (
        ({f"custom.{vip}": "true"}, "not filterable"),
        ({f"custom.{mood}": "warm"}, "not an option"),
        ({"custom.nope": "x"}, "no such custom field"),
    ):
        r = await client.get(f"/v1/{module}", params=params, headers=team.rep.headers)
        error = expect_problem(r, 422)["errors"][0]
        assert error["field"] == next(iter(params)) and reason in error["reason"] and error["location"] == "query"
    r = await client.delete(f"/v1/fields/{module}/{mood}", headers=team.admin.headers)
    assert r.status_code == 200, r.text
    assert not await indexed(mood)


def record_body(module: str, customer: Any, clock: Any, **custom: Any) -> dict[str, Any]:
    now = clock.now()
    base: dict[str, Any] = {
        "interactions": {
            "channel": "note",
            "customer_id": customer.id,
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "content": "客户来电",
        },
        "tasks": {"title": "回访", "due_at": (now + timedelta(days=1)).isoformat(), "customer_id": customer.id},
        "feedback": {"kind": "request", "title": "需要发票", "description": "请开专票", "customer_id": customer.id},
    }[module]
    return {**base, "custom": custom}


@pytest.mark.parametrize("module", ["interactions", "tasks", "feedback"])
async def test_date_and_money_filters_match_through_the_copies(
    client: httpx.AsyncClient,
    interactions_app: Any,
    world: Any,
    team: Any,
    clock: Any,
    expect_problem: Any,
    module: str,
) -> None:
    """``custom.<key>=2026-01-01..2026-03-31`` on a filterable date and ``custom.<key>=1000..5000 CNY``
    on a filterable money field, on each list: matched on the records' copies (``s.cfq_<key>``),
    written by every create and change, and backfilled for records stored before the flag."""
    due, budget = key(), key()
    await define(client, team.admin, module, key=due, type="date")
    await define(client, team.admin, module, key=budget, type="money", validation={"currencies": ["CNY", "USD"]})
    customer = await world.customer(team.rep)
    values = {
        "jan": ("2026-01-15", {"amount": "1000", "currency": "CNY"}),
        "mar": ("2026-03-31", {"amount": "4999.99", "currency": "CNY"}),
        "apr": ("2026-04-01", {"amount": "5000.01", "currency": "CNY"}),
        "usd": ("2025-12-31", {"amount": "2000", "currency": "USD"}),
    }
    made: dict[str, str] = {}
    for name, (day, money) in values.items():
        r = await client.post(
            f"/v1/{module}",
            json=record_body(module, customer, clock, **{due: day, budget: money}),
            headers=team.rep.headers,
        )
        assert r.status_code == 201, r.text
        made[name] = r.json()["id"]
    # Stored before the flags: the flags backfill their copies.
    for field in (due, budget):
        r = await client.patch(
            f"/v1/fields/{module}/{field}", json={"filterable": True}, headers={**team.admin.headers, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
    r = await client.post(f"/v1/{module}", json=record_body(module, customer, clock), headers=team.rep.headers)
    assert r.status_code == 201, r.text
    made["none"] = r.json()["id"]  # no values: matches no filter

    async def listed(**params: str) -> set[str]:
        r = await client.get(f"/v1/{module}", params={"customer_id": customer.id, **params}, headers=team.rep.headers)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    def ids(*names: str) -> set[str]:
        return {made[n] for n in names}

    assert await listed(**{f"custom.{due}": "2026-01-01..2026-03-31"}) == ids("jan", "mar")
    assert await listed(**{f"custom.{due}": "..2026-01-15"}) == ids("jan", "usd")
    assert await listed(**{f"custom.{due}": "2026-04-01"}) == ids("apr")
    assert await listed(**{f"custom.{budget}": "1000..5000 CNY"}) == ids("jan", "mar")
    assert await listed(**{f"custom.{budget}": "5000.01.. CNY"}) == ids("apr")
    assert await listed(**{f"custom.{budget}": "..5000 USD"}) == ids("usd")
    assert await listed(**{f"custom.{budget}": "1000 cny"}) == ids("jan")
    both = {f"custom.{due}": "2026-01-01..", f"custom.{budget}": "..5000 CNY"}
    assert await listed(**both) == ids("jan", "mar")
    # A change of value moves the copy with it.
    url = f"/v1/{module}/{made['apr']}"
    current = await client.get(url, headers=team.rep.headers)
    r = await client.patch(
        url,
        json={"custom": {due: "2026-02-01", budget: {"amount": "3000", "currency": "CNY"}}},
        headers={**team.rep.headers, "If-Match": current.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    assert await listed(**{f"custom.{due}": "2026-01-01..2026-03-31"}) == ids("jan", "mar", "apr")
    assert await listed(**{f"custom.{budget}": "1000..5000 CNY"}) == ids("jan", "mar", "apr")
    # A date or amount the field cannot hold, a currency it does not allow: 422 naming the filter.
    for name, text in (
        (due, "2026-02-30..2026-03-01"),
        (due, "last week"),
        (budget, "1000..5000"),
        (budget, "1000..5000 EUR"),
        (budget, "abc..5000 CNY"),
    ):
        r = await client.get(f"/v1/{module}", params={f"custom.{name}": text}, headers=team.rep.headers)
        error = expect_problem(r, 422)["errors"][0]
        assert error["field"] == f"custom.{name}" and error["location"] == "query", error
    # The filter's indexes are on the copy; archiving the field drops them.
    repo = interactions_app.state.services.interactions.repo
    collection = getattr(repo, module)
    indexed = [list(ix["key"]) async for ix in await collection.list_indexes()]
    assert any(f"s.cfq_{due}" in fields for fields in indexed), indexed
    for field in (due, budget):
        r = await client.delete(f"/v1/fields/{module}/{field}", headers=team.admin.headers)
        assert r.status_code == 200, r.text
    indexed = [list(ix["key"]) async for ix in await collection.list_indexes()]
    assert not any(f"s.cfq_{due}" in fields or f"s.cfq_{budget}" in fields for fields in indexed), indexed
