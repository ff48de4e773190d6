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
