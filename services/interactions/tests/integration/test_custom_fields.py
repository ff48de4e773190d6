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
    mood, vip, size, due = key(), key(), key(), key()
    await define(client, team.admin, "interactions", key=mood, type="choice", options=CHOICES, filterable=True)
    await define(client, team.admin, "interactions", key=vip, type="boolean")
    await define(client, team.admin, "interactions", key=size, type="number", filterable=True)
    collection = interactions_app.state.services.interactions.repo.interactions

    async def indexed(k: str) -> list[list[str]]:
        return [list(ix["key"]) async for ix in await collection.list_indexes() if f"custom.{k}" in ix["key"]]

    # The value alone, and behind each of the four list prefixes with the default sort.
    assert len(await indexed(mood)) == 5 and not await indexed(vip)
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
    # A date cannot be flagged filterable (its filter would scan the embedded store): 422 naming the flag.
    r = await client.post(
        "/v1/fields/interactions",
        json={"key": due, "type": "date", "labels": {"zh-CN": "x", "en": "x"}, "filterable": True},
        headers=team.admin.headers,
    )
    assert "cannot filter on a date" in expect_problem(r, 422)["errors"][0]["reason"]
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

    assert await indexed(mood) == (5 if module == "tasks" else 7) and not await indexed(vip)
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
