"""Field-level permissions on interactions, tasks and feedback: a role that hides what was said
(an interaction's minutes, a task's notes, how feedback was resolved, a custom field) and makes
other content read-only (an interaction's summary, the customer's rating).

A hidden field is in nothing its holder receives: the record, the create and change answers,
both interaction lists, the task and feedback lists and the histories (a change to it is left
out, an entry that changed only it is not shown, a resolution is not repeated in the line).
Filtering on a hidden custom field is 403 ``field-hidden``; setting a hidden or read-only field
(create, patch, a feedback status move) is 403 ``field-read-only`` and writes nothing. Holders of
the built-in roles, which restrict nothing, see and set everything as before.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.testing.roles import role_event

from ..conftest import Team, User

PERMISSIONS = [
    "account:self",
    "interactions:view",
    "interactions:log",
    "tasks:view",
    "tasks:manage",
    "feedback:view",
    "feedback:manage",
]
SCOPES = {"interactions": "department", "tasks": "department", "feedback": "department"}
SECRET = "机密：对方底价 80 万"


def key() -> str:
    return f"f{uuid.uuid4().hex[:8]}"


async def _staff(app: FastAPI, team: Team, fields: dict[str, dict[str, str]]) -> User:
    """A member of the rep's department holding only a role with these field rules."""
    role = f"service-{uuid.uuid4().hex[:6]}"
    await app.state.kit.roles.apply(role_event(role, 1, permissions=PERMISSIONS, scopes=SCOPES, fields=fields))
    return User(team.rep.dept, [role], "staff")


async def _define(client: httpx.AsyncClient, team: Team, module: str, name: str) -> None:
    body = {"key": name, "type": "text", "labels": {"zh-CN": name, "en": name}, "filterable": True}
    r = await client.post(f"/v1/fields/{module}", json=body, headers=team.admin.headers)
    assert r.status_code == 201, r.text


async def test_an_interaction_s_hidden_fields_are_left_out_and_protected_ones_cannot_be_set(
    client: httpx.AsyncClient, interactions_app: FastAPI, world: Any, team: Team, clock: Any, expect_problem: Any
) -> None:
    budget = key()
    await _define(client, team, "interactions", budget)
    staff = await _staff(
        interactions_app,
        team,
        {"interactions": {"minutes": "hidden", f"custom.{budget}": "hidden", "summary": "read"}},
    )
    customer = await world.customer(staff)
    occurred = (clock.now() - timedelta(hours=2)).isoformat()
    meeting = {"channel": "meeting", "customer_id": customer.id, "occurred_at": occurred, "location": "杭州"}

    # Setting a hidden or read-only field is refused whole, naming each one.
    r = await client.post(
        "/v1/interactions",
        json={**meeting, "minutes": "纪要", "summary": "摘要", "custom": {budget: "50 万"}},
        headers=staff.headers,
    )
    problem = expect_problem(r, 403)
    assert problem["type"].endswith("field-read-only")
    assert [(e["field"], e["reason"]) for e in problem["errors"]] == [
        (f"custom.{budget}", "hidden from your role"),
        ("minutes", "hidden from your role"),
        ("summary", "read-only for your role"),
    ]
    r = await client.get("/v1/customers/" + customer.id + "/interactions", headers=team.manager.headers)
    assert r.status_code == 200 and r.json()["items"] == [], r.text  # nothing was written
    r = await client.post("/v1/interactions", json={**meeting, "minutes": ""}, headers=staff.headers)
    assert r.status_code == 201, r.text  # an empty value sets nothing
    own = r.json()
    assert "minutes" not in own and own["location"] == "杭州" and own["summary"] is None

    # The manager records what the staff member may not read.
    r = await client.post(
        "/v1/interactions",
        json={**meeting, "minutes": SECRET, "summary": "首次拜访", "custom": {budget: SECRET}},
        headers=team.manager.headers,
    )
    assert r.status_code == 201, r.text
    logged = r.json()
    assert logged["minutes"] == SECRET and logged["custom"] == {budget: SECRET}

    one = await client.get(f"/v1/interactions/{logged['id']}", headers=staff.headers)
    assert one.status_code == 200, one.text
    assert "minutes" not in one.json() and one.json()["summary"] == "首次拜访"  # read-only is shown
    assert budget not in (one.json()["custom"] or {}) and SECRET not in one.text
    for url, params in (
        ("/v1/interactions", {"customer_id": customer.id}),
        (f"/v1/customers/{customer.id}/interactions", {}),
    ):
        page = await client.get(url, params=params, headers=staff.headers)
        assert page.status_code == 200, page.text
        assert {i["id"] for i in page.json()["items"]} == {own["id"], logged["id"]}
        assert all("minutes" not in i for i in page.json()["items"]) and SECRET not in page.text
        full = await client.get(url, params=params, headers=team.manager.headers)
        assert SECRET in full.text and all("minutes" in i for i in full.json()["items"])

    # History: the change to the minutes is left out, an entry that changed only them is not shown.
    r = await client.patch(
        f"/v1/interactions/{logged['id']}",
        json={"minutes": "更新：" + SECRET, "location": "上海"},
        headers=team.manager.match(one.headers["ETag"]),
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/v1/interactions/{logged['id']}",
        json={"minutes": "再更新：" + SECRET},
        headers=team.manager.match(r.headers["ETag"]),
    )
    assert r.status_code == 200, r.text
    history = await client.get(f"/v1/interactions/{logged['id']}/history", headers=staff.headers)
    assert history.status_code == 200, history.text
    assert SECRET not in history.text
    updates = [e for e in history.json() if e["type"] == "crm.interaction.updated"]
    assert [(e["summary"], [c["field"] for c in e["changes"]]) for e in updates] == [
        ("interaction changed: location", ["location"])
    ]
    assert "minutes" not in [c["field"] for e in history.json() for c in e["changes"]]
    manager_history = await client.get(f"/v1/interactions/{logged['id']}/history", headers=team.manager.headers)
    assert SECRET in manager_history.text
    assert len([e for e in manager_history.json() if e["type"] == "crm.interaction.updated"]) == 2

    # A change of the staff member's own record: the read-only summary is refused, the rest goes.
    r = await client.patch(
        f"/v1/interactions/{own['id']}", json={"summary": "改摘要"}, headers=staff.match(f'"{own["version"]}"')
    )
    problem = expect_problem(r, 403)
    assert problem["type"].endswith("field-read-only") and [e["field"] for e in problem["errors"]] == ["summary"]
    r = await client.patch(
        f"/v1/interactions/{own['id']}", json={"location": "宁波"}, headers=staff.match(f'"{own["version"]}"')
    )
    assert r.status_code == 200 and r.json()["location"] == "宁波" and "minutes" not in r.json(), r.text

    # Filtering on the hidden custom field is refused, naming it; the manager filters as usual.
    for url in ("/v1/interactions", f"/v1/customers/{customer.id}/interactions"):
        r = await client.get(url, params={f"custom.{budget}": SECRET}, headers=staff.headers)
        problem = expect_problem(r, 403)
        assert problem["type"].endswith("field-hidden")
        assert [e["field"] for e in problem["errors"]] == [f"custom.{budget}"]
        r = await client.get(url, params={f"custom.{budget}": SECRET}, headers=team.manager.headers)
        assert r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [logged["id"]], r.text
    r = await client.get("/v1/interactions", params={"sort": f"-custom.{budget}"}, headers=staff.headers)
    assert expect_problem(r, 403)["errors"][0]["field"] == f"custom.{budget}"


async def test_a_task_s_hidden_notes_and_a_custom_field_are_left_out_and_cannot_be_set(
    client: httpx.AsyncClient, interactions_app: FastAPI, team: Team, clock: Any, expect_problem: Any
) -> None:
    level = key()
    await _define(client, team, "tasks", level)
    staff = await _staff(interactions_app, team, {"tasks": {"notes": "hidden", f"custom.{level}": "read"}})
    due = (clock.now() + timedelta(days=2)).isoformat()
    r = await client.post(
        "/v1/tasks", json={"title": "回访", "due_at": due, "notes": "x", "custom": {level: "高"}}, headers=staff.headers
    )
    problem = expect_problem(r, 403)
    assert problem["type"].endswith("field-read-only")
    assert [e["field"] for e in problem["errors"]] == [f"custom.{level}", "notes"]
    r = await client.post("/v1/tasks", json={"title": "回访", "due_at": due}, headers=staff.headers)
    assert r.status_code == 201, r.text
    task = r.json()
    assert "notes" not in task

    r = await client.patch(
        f"/v1/tasks/{task['id']}",
        json={"notes": SECRET, "custom": {level: "高"}},
        headers=team.manager.match(f'"{task["version"]}"'),
    )
    assert r.status_code == 200 and r.json()["notes"] == SECRET, r.text
    one = await client.get(f"/v1/tasks/{task['id']}", headers=staff.headers)
    assert one.status_code == 200, one.text
    assert "notes" not in one.json() and one.json()["custom"] == {level: "高"} and SECRET not in one.text
    page = await client.get("/v1/tasks", headers=staff.headers)
    assert page.status_code == 200, page.text
    assert [t["id"] for t in page.json()["items"]] == [task["id"]] and SECRET not in page.text
    assert "notes" not in page.json()["items"][0]
    history = await client.get(f"/v1/tasks/{task['id']}/history", headers=staff.headers)
    assert history.status_code == 200 and SECRET not in history.text, history.text
    assert [c["field"] for e in history.json() if e["type"] == "crm.task.updated" for c in e["changes"]] == [
        f"custom.{level}"
    ]
    assert SECRET in (await client.get(f"/v1/tasks/{task['id']}/history", headers=team.manager.headers)).text

    for body in ({"notes": "改"}, {"custom": {level: "低"}}):
        r = await client.patch(f"/v1/tasks/{task['id']}", json=body, headers=staff.match(one.headers["ETag"]))
        assert expect_problem(r, 403)["type"].endswith("field-read-only"), body
    r = await client.patch(
        f"/v1/tasks/{task['id']}", json={"title": "回访客户"}, headers=staff.match(one.headers["ETag"])
    )
    assert r.status_code == 200 and r.json()["title"] == "回访客户" and "notes" not in r.json(), r.text
    r = await client.get("/v1/tasks", params={f"custom.{level}": "高"}, headers=staff.headers)
    assert r.status_code == 200, r.text  # read-only is visible: it can be filtered on


async def test_a_hidden_resolution_and_a_read_only_rating_on_feedback(
    client: httpx.AsyncClient, interactions_app: FastAPI, world: Any, team: Team, expect_problem: Any
) -> None:
    staff = await _staff(interactions_app, team, {"feedback": {"resolution": "hidden", "satisfaction": "read"}})
    customer = await world.customer(staff)
    body = {"kind": "complaint", "title": "发票有误", "description": "金额不符", "customer_id": customer.id}
    r = await client.post("/v1/feedback", json=body, headers=staff.headers)
    assert r.status_code == 201, r.text
    opened = r.json()
    assert "resolution" not in opened and opened["satisfaction"] is None
    url = f"/v1/feedback/{opened['id']}"
    r = await client.post(f"{url}/transitions", json={"status": "in_progress"}, headers=staff.headers)
    assert r.status_code == 200, r.text

    # Resolving sets the resolution and the rating: refused, naming both, and the status stays.
    r = await client.post(
        f"{url}/transitions",
        json={"status": "resolved", "resolution": "退款", "satisfaction": 4},
        headers=staff.headers,
    )
    problem = expect_problem(r, 403)
    assert problem["type"].endswith("field-read-only")
    assert [e["field"] for e in problem["errors"]] == ["resolution", "satisfaction"]
    assert (await client.get(url, headers=staff.headers)).json()["status"] == "in_progress"

    r = await client.post(
        f"{url}/transitions",
        json={"status": "resolved", "resolution": SECRET, "satisfaction": 4},
        headers=team.manager.headers,
    )
    assert r.status_code == 200 and r.json()["resolution"] == SECRET, r.text
    one = await client.get(url, headers=staff.headers)
    assert one.status_code == 200, one.text
    assert "resolution" not in one.json() and one.json()["satisfaction"] == 4 and SECRET not in one.text
    page = await client.get("/v1/feedback", params={"customer_id": customer.id}, headers=staff.headers)
    assert page.status_code == 200 and [f["id"] for f in page.json()["items"]] == [opened["id"]], page.text
    assert "resolution" not in page.json()["items"][0] and SECRET not in page.text
    history = await client.get(f"{url}/history", headers=staff.headers)
    assert history.status_code == 200 and SECRET not in history.text, history.text
    [resolved] = [e for e in history.json() if e["type"] == "crm.feedback.resolved"]
    assert resolved["summary"] == "resolved"
    assert [c["field"] for c in resolved["changes"]] == ["status", "satisfaction"]
    full = await client.get(f"{url}/history", headers=team.manager.headers)
    assert f"resolved: {SECRET}" in [e["summary"] for e in full.json()]

    r = await client.post(f"{url}/transitions", json={"status": "closed", "satisfaction": 5}, headers=staff.headers)
    assert expect_problem(r, 403)["errors"][0]["field"] == "satisfaction"
    r = await client.post(f"{url}/transitions", json={"status": "closed"}, headers=staff.headers)
    assert r.status_code == 200 and r.json()["status"] == "closed" and "resolution" not in r.json(), r.text
