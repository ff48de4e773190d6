"""Data scopes from role definitions in the pipeline: a custom role's ``opportunities`` scope decides
which opportunities its holders see and list (department: their department exactly, not one below
nor a sibling; own: only their own), and its ``targets`` scope which targets they read."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import define_role

from ..conftest import User

VIEW = ["opportunities:view", "opportunities:create", "opportunities:edit", "targets:view"]


async def test_department_and_own_scopes_of_a_custom_role(
    client: httpx.AsyncClient, pipeline_app: FastAPI, new_opportunity: Any
) -> None:
    dept_role, own_role = unique("dept-sales"), unique("own-sales")
    await define_role(pipeline_app, dept_role, VIEW, {"opportunities": "department", "targets": "department"})
    await define_role(pipeline_app, own_role, VIEW, {"opportunities": "own"})

    root = f"/{unique('s')}"
    mine, child, sibling = f"{root}/east", f"{root}/east/team-1", f"{root}/west"
    colleague = await new_opportunity(User(mine))
    below = await new_opportunity(User(child))
    beside = await new_opportunity(User(sibling))
    viewer = User(mine, [dept_role], "viewer")
    loner = User(mine, [own_role], "loner")
    loners = await new_opportunity(loner)

    async def status(user: User, opportunity: dict[str, Any]) -> int:
        return (await client.get(f"/v1/opportunities/{opportunity['id']}", headers=user.headers)).status_code

    assert await status(viewer, colleague) == 200
    assert await status(viewer, loners) == 200  # the loner is in the viewer's department
    assert await status(viewer, below) == 404
    assert await status(viewer, beside) == 404
    assert await status(loner, loners) == 200
    assert await status(loner, colleague) == 404

    r = await client.get("/v1/opportunities", params={"limit": 200}, headers=viewer.headers)
    assert r.status_code == 200, r.text
    listed = {o["id"] for o in r.json()["items"]}
    assert listed == {colleague["id"], loners["id"]}
    r = await client.get("/v1/opportunities", params={"limit": 200}, headers=loner.headers)
    assert {o["id"] for o in r.json()["items"]} == {loners["id"]}

    # An "own" scope sees its own funnel only; a "department" one its department's, not a sibling's.
    r = await client.get("/v1/funnel", params={"rep": colleague["owner_id"]}, headers=loner.headers)
    assert r.status_code == 403, r.text
    r = await client.get("/v1/funnel", params={"department": mine}, headers=viewer.headers)
    assert r.status_code == 200, r.text
    r = await client.get("/v1/funnel", params={"department": sibling}, headers=viewer.headers)
    assert r.status_code == 403, r.text


async def test_a_department_scope_reads_its_departments_targets_only(
    client: httpx.AsyncClient, pipeline_app: FastAPI
) -> None:
    dept_role = unique("dept-targets")
    await define_role(pipeline_app, dept_role, ["targets:view"], {"targets": "department"})
    root = f"/{unique('s')}"
    east, child = f"{root}/east", f"{root}/east/team-1"
    admin = auth(unique("admin"), ["admin"], department_path="/")
    for path in (east, child):
        department = path.rsplit("/", 1)[-1]
        r = await client.put(
            f"/v1/targets/department/{department}/2026-11",
            json={"amount": "1000.00", "currency": "CNY", "department_path": path},
            headers=admin,
        )
        assert r.status_code in (200, 201), r.text
    viewer = auth(unique("viewer"), [dept_role], department_path=east)
    assert (await client.get("/v1/targets/department/east/2026-11", headers=viewer)).status_code == 200
    assert (await client.get("/v1/targets/department/team-1/2026-11", headers=viewer)).status_code == 404
