"""Data scopes from role definitions: a custom role's ``customers`` scope decides which customers
its holders see, list and change (department: their department exactly, not one below nor a
sibling; own: only their own), its ``contacts`` scope which customers' contacts they may change,
and its permissions which actions (a custom role without customers:assign hands out nothing)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import define_role

VIEW_EDIT = ["customers:view", "customers:create", "customers:edit"]


async def create(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.post("/v1/customers", json={"kind": "company", "name": unique("Scoped")}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_department_and_own_scopes_of_a_custom_role(client: httpx.AsyncClient, customers_app: FastAPI) -> None:
    dept_role, own_role = unique("dept-viewer"), unique("own-viewer")
    await define_role(customers_app, dept_role, VIEW_EDIT, {"customers": "department", "contacts": "own"})
    await define_role(customers_app, own_role, VIEW_EDIT, {"customers": "own"})

    root = f"/{unique('s')}"
    mine, child, sibling = f"{root}/east", f"{root}/east/team-1", f"{root}/west"
    colleague = await create(client, auth(unique("rep"), department_path=mine))
    below = await create(client, auth(unique("rep"), department_path=child))
    beside = await create(client, auth(unique("rep"), department_path=sibling))

    viewer = auth(unique("viewer"), [dept_role], department_path=mine)
    own_customer = await create(client, viewer)
    loner = auth(unique("loner"), [own_role], department_path=mine)
    loners = await create(client, loner)

    async def status(headers: dict[str, str], customer: dict[str, Any]) -> int:
        return (await client.get(f"/v1/customers/{customer['id']}", headers=headers)).status_code

    assert await status(viewer, colleague) == 200  # the same department
    assert await status(viewer, own_customer) == 200
    assert await status(viewer, below) == 404  # a sub-department: not in a "department" scope
    assert await status(viewer, beside) == 404  # a sibling
    assert await status(loner, loners) == 200
    assert await status(loner, colleague) == 404  # "own": not even the same department's

    r = await client.get("/v1/customers", params={"limit": 500}, headers=viewer)
    assert r.status_code == 200, r.text
    listed = {c["id"] for c in r.json()["items"] if not c.get("in_pool")}
    assert {colleague["id"], own_customer["id"], loners["id"]} <= listed
    assert below["id"] not in listed and beside["id"] not in listed
    r = await client.get("/v1/customers", params={"limit": 500}, headers=loner)
    listed = {c["id"] for c in r.json()["items"] if not c.get("in_pool")}
    assert loners["id"] in listed and colleague["id"] not in listed and own_customer["id"] not in listed

    # Editing follows the customers scope; contacts follow the contacts scope ("own" here).
    r = await client.patch(
        f"/v1/customers/{colleague['id']}",
        json={"industry": "制造"},
        headers={**viewer, "If-Match": f'"{colleague["version"]}"'},
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/customers/{colleague['id']}/contacts", json={"name": "王五", "phones": ["13700001111"]}, headers=viewer
    )
    assert r.status_code == 403, r.text
    r = await client.post(
        f"/v1/customers/{own_customer['id']}/contacts", json={"name": "赵六", "phones": ["13700002222"]}, headers=viewer
    )
    assert r.status_code == 201, r.text

    # No customers:assign: creating a customer for a colleague is refused, scope or not.
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("ForOther"), "owner_id": "x", "department_path": mine},
        headers=viewer,
    )
    assert r.status_code == 403, r.text


async def test_a_department_scope_with_assign_hands_out_within_the_department_only(
    client: httpx.AsyncClient, customers_app: FastAPI
) -> None:
    lead_role = unique("team-lead")
    await define_role(customers_app, lead_role, [*VIEW_EDIT, "customers:assign"], {"customers": "department"})
    root = f"/{unique('s')}"
    mine, child = f"{root}/east", f"{root}/east/team-1"
    lead = auth(unique("lead"), [lead_role], department_path=mine)
    customer = await create(client, auth(unique("rep"), department_path=mine))
    ok = await client.post(
        f"/v1/customers/{customer['id']}/assign",
        json={"owner_id": unique("rep"), "department_path": mine},
        headers=lead,
    )
    assert ok.status_code == 200, ok.text
    refused = await client.post(
        f"/v1/customers/{customer['id']}/assign",
        json={"owner_id": unique("rep"), "department_path": child},
        headers=lead,
    )
    assert refused.status_code == 403, refused.text


async def test_the_pool_scope_decides_who_changes_customers_in_the_pool(
    client: httpx.AsyncClient, customers_app: FastAPI
) -> None:
    """Everyone sees the pool; changing a customer sitting in it needs a pool scope beyond own."""
    keeper_role, visitor_role = unique("pool-keeper"), unique("pool-visitor")
    await define_role(customers_app, keeper_role, VIEW_EDIT, {"customers": "own", "pool": "department"})
    await define_role(customers_app, visitor_role, VIEW_EDIT, {"customers": "own", "pool": "own"})
    root = f"/{unique('s')}"
    owner = auth(unique("rep"), department_path=root)
    customer = await create(client, owner)
    r = await client.post(f"/v1/customers/{customer['id']}/release", json={"reason": "无预算"}, headers=owner)
    assert r.status_code == 200, r.text
    version = r.json()["version"]

    keeper = auth(unique("keeper"), [keeper_role], department_path=root)
    visitor = auth(unique("visitor"), [visitor_role], department_path=root)
    for headers in (keeper, visitor):
        assert (await client.get(f"/v1/customers/{customer['id']}", headers=headers)).status_code == 200
    refused = await client.patch(
        f"/v1/customers/{customer['id']}", json={"industry": "零售"}, headers={**visitor, "If-Match": f'"{version}"'}
    )
    assert refused.status_code == 403, refused.text
    changed = await client.patch(
        f"/v1/customers/{customer['id']}", json={"industry": "零售"}, headers={**keeper, "If-Match": f'"{version}"'}
    )
    assert changed.status_code == 200, changed.text
