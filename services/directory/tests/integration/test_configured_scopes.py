"""Data scopes from role definitions in the directory: a custom role's ``users`` scope decides
whose full records its holders read and list (department: their department exactly, not one below
nor a sibling), and the sign-in answer lists what the user's roles grant (permissions and the
widest scope per module) for the console's menus."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from crm_platform.testing.fixtures import eventually, unique

from ..conftest import Api


async def defined(app: FastAPI, role_id: str) -> None:
    """Wait until the directory's own read copy of the roles (its RoleBook) has the role."""
    await eventually(lambda: app.state.kit.roles.definition(role_id), timeout=30, message=f"role {role_id}")


async def create_role(api: Api, permissions: list[str], scopes: dict[str, str]) -> str:
    body: dict[str, Any] = {
        "id": unique("scoped"),
        "names": {"zh-CN": "范围角色", "en": "Scoped role"},
        "permissions": permissions,
        "scopes": scopes,
    }
    r = await api.client.post("/v1/roles", json=body, headers=api.admin)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_a_department_users_scope_reads_its_department_only(api: Api, directory_app: FastAPI) -> None:
    role = await create_role(api, ["account:self", "users:view"], {"users": "department"})
    east = await api.department("东区")
    team = await api.department("一组", east["id"])
    west = await api.department("西区")
    colleague = await api.user(east["id"])
    below = await api.user(team["id"])
    beside = await api.user(west["id"])
    viewer = await api.user(east["id"], roles=[role])
    await defined(directory_app, role)
    headers = api.headers_for(viewer)

    r = await api.client.get("/v1/users", params={"limit": 500}, headers=headers)
    assert r.status_code == 200, r.text
    listed = {u["id"] for u in r.json()["items"]}
    assert {colleague["id"], viewer["id"]} <= listed
    assert below["id"] not in listed and beside["id"] not in listed
    assert (await api.client.get(f"/v1/users/{colleague['id']}", headers=headers)).json()["view"] == "full"
    for other in (below, beside):  # a public card only
        assert (await api.client.get(f"/v1/users/{other['id']}", headers=headers)).json()["view"] != "full"

    # The sign-in answer: the permissions and scopes the roles give, by the directory's definitions.
    tokens = await api.tokens(viewer["email"])
    assert tokens["permissions"] == ["account:self", "users:view"]
    assert tokens["scopes"]["users"] == "department" and tokens["scopes"]["customers"] == "own"


async def test_the_sign_in_answer_lists_a_custom_roles_permissions(api: Api) -> None:
    role = await create_role(api, ["customers:view"], {"customers": "subtree"})
    viewer = await api.user(roles=[role])
    tokens = await api.tokens(viewer["email"])
    assert tokens["permissions"] == ["customers:view"]
    assert tokens["scopes"]["customers"] == "subtree"
    rep = await api.user()
    tokens = await api.tokens(rep["email"])
    assert "customers:assign" not in tokens["permissions"] and "customers:view" in tokens["permissions"]
    assert set(tokens["scopes"].values()) == {"own"}
