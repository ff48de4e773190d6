"""Data scopes from role definitions in the interactions service: a custom role's ``interactions``
scope decides whose interactions its holders list, its ``tasks`` scope whose tasks (scope=team),
department meaning their department exactly (not one below, not a sibling) and own only their own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.testing.fixtures import unique
from crm_platform.testing.roles import define_role

from ..conftest import User

PERMISSIONS = ["interactions:view", "interactions:log", "tasks:view", "tasks:manage"]


async def test_department_and_own_scopes_of_a_custom_role(
    client: httpx.AsyncClient, interactions_app: FastAPI, world: Any, log: Any, clock: Any
) -> None:
    dept_role, own_role = unique("dept-follow"), unique("own-follow")
    await define_role(interactions_app, dept_role, PERMISSIONS, {"interactions": "department", "tasks": "department"})
    await define_role(interactions_app, own_role, PERMISSIONS, {"interactions": "own", "tasks": "own"})

    root = f"/{unique('s')}"
    mine, child, sibling = f"{root}/east", f"{root}/east/team-1", f"{root}/west"
    colleague, below, beside = User(mine), User(child), User(sibling)
    viewer, loner = User(mine, [dept_role], "viewer"), User(mine, [own_role], "loner")

    logged: dict[str, str] = {}
    tasks: dict[str, str] = {}
    due = (clock.now() + timedelta(days=2)).isoformat()
    for name, user in (("colleague", colleague), ("below", below), ("beside", beside), ("loner", loner)):
        customer = await world.customer(user)
        logged[name] = (await log(user, customer))["id"]
        r = await client.post("/v1/tasks", json={"title": unique("跟进"), "due_at": due}, headers=user.headers)
        assert r.status_code == 201, r.text
        tasks[name] = r.json()["id"]

    async def interactions_of(user: User) -> set[str]:
        r = await client.get("/v1/interactions", params={"limit": 200}, headers=user.headers)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    assert await interactions_of(viewer) == {logged["colleague"], logged["loner"]}
    assert await interactions_of(loner) == {logged["loner"]}
    r = await client.get(f"/v1/interactions/{logged['colleague']}", headers=viewer.headers)
    assert r.status_code == 200, r.text
    for name in ("below", "beside"):
        r = await client.get(f"/v1/interactions/{logged[name]}", headers=viewer.headers)
        assert r.status_code == 404, (name, r.text)

    r = await client.get("/v1/tasks", params={"scope": "team", "limit": 200}, headers=viewer.headers)
    assert r.status_code == 200, r.text
    assert {t["id"] for t in r.json()["items"]} == {tasks["colleague"], tasks["loner"]}
    r = await client.get("/v1/tasks", params={"scope": "team"}, headers=loner.headers)
    assert r.status_code == 403, r.text
    r = await client.get("/v1/tasks", params={"scope": "all"}, headers=viewer.headers)
    assert r.status_code == 403, r.text
    r = await client.get(f"/v1/tasks/{tasks['below']}", headers=viewer.headers)
    assert r.status_code == 404, r.text
    r = await client.get(f"/v1/tasks/{tasks['colleague']}", headers=loner.headers)
    assert r.status_code == 404, r.text
