"""Roles defined by administrators: the built-in ones seeded from the platform's defaults, custom
ones created, edited and deleted through /v1/roles with ETags, history and events, refused input
named field by field, users holding several roles, and the guards (a held role is not deleted,
nobody is locked out of managing roles).

Role definitions reach every service of the session through the shared topic, so these tests
never change what a built-in role grants (that would change it for every other test's services):
built-ins are edited in their description only, and permissions change on custom roles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_directory.main import create_app
from crm_platform.auth import Role
from crm_platform.permissions import BUILTIN_SCOPES, ROLE_PERMISSIONS, SCOPE_MODULES
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, unique

from ..conftest import Api, directory_settings_for

NAMES = {"zh-CN": "大客户经理", "en": "Key account manager"}


def role_body(**extra: Any) -> dict[str, Any]:
    return {
        "id": unique("ka"),
        "names": NAMES,
        "permissions": ["customers:view", "customers:edit"],
        "scopes": {"customers": "subtree"},
        **extra,
    }


async def create_role(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    r = await client.post("/v1/roles", json=role_body(**extra), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_the_built_in_roles_are_seeded_from_the_platform_defaults(api: Api) -> None:
    rep = await api.user()
    r = await api.client.get("/v1/roles", headers=api.headers_for(rep))  # users:view: everyone reads roles
    assert r.status_code == 200, r.text
    by_id = {role["id"]: role for role in r.json()}
    for role in Role:
        seeded = by_id[role.value]
        assert seeded["builtin"] is True and seeded["status"] == "active"
        assert set(seeded["permissions"]) == {p.value for p in ROLE_PERMISSIONS[role]}
        assert seeded["scopes"] == {m: BUILTIN_SCOPES[role] for m in SCOPE_MODULES}
        assert seeded["names"]["zh-CN"] and seeded["names"]["en"]
    assert [role["id"] for role in r.json()][:4] == sorted(r.value for r in Role), "built-ins first"


async def test_a_role_is_created_edited_and_deleted_with_history_and_events(api: Api, directory_events: Any) -> None:
    created = await create_role(api.client, api.admin, description="大客户")
    role_id = created["id"]
    assert created["version"] == 1 and created["builtin"] is False
    assert created["permissions"] == ["customers:edit", "customers:view"]
    assert created["scopes"] == {"customers": "subtree"}
    got = await api.client.get(f"/v1/roles/{role_id}", headers=api.admin)
    assert got.status_code == 200 and got.headers["ETag"] == '"1"'

    patch = {"permissions": ["customers:view"], "scopes": {"customers": "department", "opportunities": "all"}}
    r = await api.client.patch(f"/v1/roles/{role_id}", json=patch, headers=api.admin)
    assert r.status_code == 428, r.text
    r = await api.client.patch(f"/v1/roles/{role_id}", json=patch, headers={**api.admin, "If-Match": '"7"'})
    assert r.status_code == 412, r.text
    r = await api.client.patch(f"/v1/roles/{role_id}", json=patch, headers={**api.admin, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["permissions"] == ["customers:view"]
    assert r.headers["ETag"] == '"2"'

    r = await api.client.delete(f"/v1/roles/{role_id}", headers={**api.admin, "If-Match": '"2"'})
    assert r.status_code == 204, r.text
    gone = (await api.client.get(f"/v1/roles/{role_id}", headers=api.admin)).json()
    assert gone["status"] == "deleted" and gone["version"] == 3
    listed = {role["id"] for role in (await api.client.get("/v1/roles", headers=api.admin)).json()}
    assert role_id not in listed
    with_deleted = await api.client.get("/v1/roles", params={"include_deleted": "true"}, headers=api.admin)
    assert role_id in {role["id"] for role in with_deleted.json()}
    again = await api.client.post("/v1/roles", json=role_body(id=role_id), headers=api.admin)
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "id", again.text
    r = await api.client.patch(
        f"/v1/roles/{role_id}", json={"description": "x"}, headers={**api.admin, "If-Match": '"3"'}
    )
    assert r.status_code == 404, r.text

    history = (await api.client.get(f"/v1/roles/{role_id}/history", headers=api.admin)).json()
    assert [h["type"] for h in history] == ["crm.role.created", "crm.role.updated", "crm.role.deleted"]
    assert {c["field"] for c in history[1]["changes"]} == {"permissions", "scopes"}
    assert history[1]["changes"][0]["old"] == ["customers:edit", "customers:view"]

    records = await directory_events.wait_for(3, subject=role_id)
    events = [r.event for r in records]
    assert [e["type"] for e in events] == ["crm.role.created", "crm.role.updated", "crm.role.deleted"]
    assert [e["aggregateversion"] for e in events] == [1, 2, 3]
    # Each carries the whole definition, so a read copy needs nothing else.
    assert events[0]["data"]["role"]["names"] == NAMES and events[0]["data"]["role"]["description"] == "大客户"
    assert events[1]["data"]["role"]["scopes"] == {"customers": "department", "opportunities": "all"}
    assert events[2]["data"]["role"]["status"] == "deleted"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"permissions": ["customers:view", "customers:fly"]}, "permissions[1]"),
        ({"scopes": {"planets": "all"}}, "scopes.planets"),
        ({"scopes": {"customers": "galaxy"}}, "scopes.customers"),
        ({"id": "Key Account"}, "id"),
        ({"names": {"zh-CN": "大客户"}}, "names.en"),
        ({"fields": {"customers": {"phones": "invisible"}}}, "fields.customers.phones"),
        ({"fields": {"customers": {"owner_id": "hidden"}}}, "fields.customers.owner_id"),
        ({"fields": {"planets": {"amount": "hidden"}}}, "fields.planets"),
        ({"fields": {"tasks": {"due_at": "hidden"}}}, "fields.tasks.due_at"),
        ({"fields": {"interactions": {"author_id": "read"}}}, "fields.interactions.author_id"),
    ],
)
async def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    api: Api, body: dict[str, Any], field: str
) -> None:
    sent = role_body(**body)
    r = await api.client.post("/v1/roles", json=sent, headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]], r.text
    if "id" not in body:
        assert (await api.client.get(f"/v1/roles/{sent['id']}", headers=api.admin)).status_code == 404


async def test_field_permissions_are_defined_edited_and_carried_by_the_events(api: Api, directory_events: Any) -> None:
    fields = {
        "contacts": {"phones": "hidden"},
        "customers": {"phones": "read", "custom.budget": "hidden"},
        "interactions": {"minutes": "hidden", "summary": "read", "custom.mood": "hidden"},
        "tasks": {"notes": "hidden"},
        "feedback": {"resolution": "hidden", "satisfaction": "read"},
    }
    created = await create_role(api.client, api.admin, fields=fields)
    assert created["fields"] == fields
    assert (await create_role(api.client, api.admin))["fields"] == {}  # none given: nothing restricted
    r = await api.client.patch(
        f"/v1/roles/{created['id']}",
        json={"fields": {"contacts": {"phones": "read"}, "customers": {}}},
        headers={**api.admin, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {"contacts": {"phones": "read"}}  # an empty module restricts nothing
    history = (await api.client.get(f"/v1/roles/{created['id']}/history", headers=api.admin)).json()
    assert history[1]["changes"] == [{"field": "fields", "old": fields, "new": {"contacts": {"phones": "read"}}}]
    records = await directory_events.wait_for(2, subject=created["id"])
    assert [r.event["data"]["role"]["fields"] for r in records] == [fields, {"contacts": {"phones": "read"}}]


async def test_a_patch_with_an_unknown_permission_changes_nothing(api: Api) -> None:
    role = await create_role(api.client, api.admin)
    r = await api.client.patch(
        f"/v1/roles/{role['id']}", json={"permissions": ["roles:rule"]}, headers={**api.admin, "If-Match": '"1"'}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "permissions[0]", r.text
    assert (await api.client.get(f"/v1/roles/{role['id']}", headers=api.admin)).json()["version"] == 1


async def test_only_roles_manage_defines_roles(api: Api) -> None:
    manager = await api.user(roles=["manager"])
    r = await api.client.post("/v1/roles", json=role_body(), headers=api.headers_for(manager))
    assert r.status_code == 403 and r.json()["permission"] == "roles:manage", r.text


async def test_users_hold_several_roles_and_unknown_ones_are_refused(api: Api) -> None:
    custom = await create_role(api.client, api.admin)
    user = await api.user(roles=["rep", custom["id"]])
    assert user["roles"] == sorted(["rep", custom["id"]])
    r = await api.client.post(
        "/v1/users",
        json={
            "email": f"{unique('u')}@example.com",
            "name": "李四",
            "roles": ["rep", "no-such-role"],
            "department_id": api.root,
        },
        headers=api.admin,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "roles[1]", r.text
    r = await api.client.patch(
        f"/v1/users/{user['id']}", json={"roles": ["Not A Slug"]}, headers={**api.admin, "If-Match": '"1"'}
    )
    assert r.status_code == 422, r.text
    r = await api.client.patch(
        f"/v1/users/{user['id']}", json={"roles": ["ghost-role"]}, headers={**api.admin, "If-Match": '"1"'}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "roles[0]", r.text
    assert (await api.client.get(f"/v1/users/{user['id']}", headers=api.admin)).json()["version"] == 1


async def test_a_held_role_is_not_deleted_and_a_built_in_never(api: Api) -> None:
    custom = await create_role(api.client, api.admin)
    holders = [await api.user(roles=["rep", custom["id"]]) for _ in range(2)]
    r = await api.client.post(f"/v1/users/{holders[1]['id']}/deactivate", headers=api.admin)
    assert r.status_code == 200, r.text

    r = await api.client.delete(f"/v1/roles/{custom['id']}", headers=api.admin)
    assert r.status_code == 409 and r.json()["users"] == 2 and "2 user(s)" in r.json()["detail"], r.text

    for holder in holders:
        current = (await api.client.get(f"/v1/users/{holder['id']}", headers=api.admin)).json()
        r = await api.client.patch(
            f"/v1/users/{holder['id']}",
            json={"roles": ["rep"]},
            headers={**api.admin, "If-Match": f'"{current["version"]}"'},
        )
        assert r.status_code == 200, r.text
    assert (await api.client.delete(f"/v1/roles/{custom['id']}", headers=api.admin)).status_code == 204

    r = await api.client.delete("/v1/roles/rep", headers=api.admin)
    assert r.status_code == 409 and "built-in" in r.json()["detail"], r.text


async def test_a_built_in_role_is_editable(api: Api) -> None:
    current = (await api.client.get("/v1/roles/integrator", headers=api.admin)).json()
    description = f"ERP 对接账号 {unique('d')}"
    r = await api.client.patch(
        "/v1/roles/integrator",
        json={"description": description},
        headers={**api.admin, "If-Match": f'"{current["version"]}"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["description"] == description and r.json()["permissions"] == current["permissions"]


# --- the lock-out guard: a directory of its own, so that who holds roles:manage is known -----------


@pytest.fixture(scope="module")
async def lone(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(directory_settings_for(backend))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lone.test") as c:
            yield c


async def _patch(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    version = (await client.get(url, headers=headers)).json()["version"]
    return await client.patch(url, json=body, headers={**headers, "If-Match": f'"{version}"'})


async def test_nobody_is_locked_out_of_managing_roles(lone: httpx.AsyncClient) -> None:
    admin = auth("system-it", ["admin"], "/lone")
    assert (await lone.post("/v1/departments", json={"id": "lone", "name": "Lone"}, headers=admin)).status_code == 201

    async def user(roles: list[str]) -> str:
        body = {"email": f"{unique('u')}@example.com", "name": "王五", "roles": roles, "department_id": "lone"}
        r = await lone.post("/v1/users", json=body, headers=admin)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    first = await user(["admin"])  # the only user who may manage roles
    r = await _patch(lone, "/v1/roles/admin", {"permissions": ["account:self", "users:manage"]}, admin)
    assert r.status_code == 409 and "roles:manage" in r.json()["detail"], r.text
    assert (await _patch(lone, f"/v1/users/{first}", {"roles": ["rep"]}, admin)).status_code == 409
    assert (await lone.post(f"/v1/users/{first}/deactivate", headers=admin)).status_code == 409
    assert set((await lone.get("/v1/roles/admin", headers=admin)).json()["permissions"]) >= {"roles:manage"}

    security = (
        await lone.post(
            "/v1/roles", json=role_body(id=unique("sec"), permissions=["roles:manage", "users:view"]), headers=admin
        )
    ).json()["id"]
    second = await user(["rep", security])
    # Two holders: either may lose it, one at a time.
    assert (await _patch(lone, f"/v1/users/{first}", {"roles": ["rep"]}, admin)).status_code == 200
    r = await _patch(lone, f"/v1/roles/{security}", {"permissions": ["users:view"]}, admin)
    assert r.status_code == 409, r.text
    assert (await lone.post(f"/v1/users/{second}/deactivate", headers=admin)).status_code == 409
    assert (await _patch(lone, f"/v1/users/{first}", {"roles": ["admin"]}, admin)).status_code == 200
    r = await _patch(lone, f"/v1/roles/{security}", {"permissions": ["users:view"]}, admin)
    assert r.status_code == 200, r.text


async def test_a_start_adds_new_defaults_to_built_in_roles_and_keeps_administrators_changes(backend: Backend) -> None:
    """Built-in definitions stored by an older version (before ``defaults_seen``, before
    ``fields:manage`` and the export-approval permissions existed, without a scope for a module
    that came later) gain what this version grants them by default, at the next start, with a
    ``crm.role.updated`` by ``system:upgrade``; a permission an administrator took away stays
    away; a second start changes nothing. The directory runs without its relay here (the events
    stay in the outbox): an upgraded built-in must not reach the session's other services."""
    from crm_directory.application.directory import Directory
    from crm_directory.domain.roles import ADDED_AFTER_FIRST_SEED
    from crm_platform.clock import SystemClock
    from crm_platform.testing.fixtures import database

    settings = directory_settings_for(backend)
    async with database(backend.mongo_url, settings.mongo_database) as db:
        directory = Directory(db, SystemClock(), settings, "/crm/directory")
        await directory.ensure_indexes()
        await directory.roles.seed()
        later = sorted(ADDED_AFTER_FIRST_SEED)  # fields:manage, the export-approval pair, leads
        roles = db["roles"]
        # As an older version left them: admin untouched; rep edited by an administrator, who
        # took customers:export away; no definition has recorded the defaults it has seen.
        admin_old = sorted(set((await roles.find_one({"_id": "admin"}))["permissions"]) - set(later))
        rep_perms = (await roles.find_one({"_id": "rep"}))["permissions"]
        rep_old = [p for p in rep_perms if p not in (*later, "customers:export")]
        rep_scopes = dict((await roles.find_one({"_id": "rep"}))["scopes"])
        dropped_module = sorted(rep_scopes)[-1]
        del rep_scopes[dropped_module]
        await roles.update_one(
            {"_id": "admin"}, {"$set": {"permissions": admin_old, "outbox": []}, "$unset": {"defaults_seen": ""}}
        )
        await roles.update_one(
            {"_id": "rep"},
            {
                "$set": {"permissions": rep_old, "scopes": rep_scopes, "updated_by": "admin-1", "outbox": []},
                "$unset": {"defaults_seen": ""},
            },
        )
        for role_id in ("manager", "integrator"):
            await roles.update_one({"_id": role_id}, {"$set": {"outbox": []}, "$unset": {"defaults_seen": ""}})
        versions = {doc["_id"]: doc["version"] async for doc in roles.find({})}

        await directory.roles.seed()  # the next start

        admin = await roles.find_one({"_id": "admin"})
        assert set(admin["permissions"]) == {p.value for p in ROLE_PERMISSIONS[Role.admin]}
        assert admin["version"] == versions["admin"] + 1 and admin["updated_by"] == "system:upgrade"
        [entry] = admin["outbox"]
        event = entry["envelope"]
        assert entry["topic"] == "crm.directory.v1" and event["type"] == "crm.role.updated"
        assert event["actor"] == "system:upgrade"
        assert event["data"]["changes"] == [{"field": "permissions", "old": admin_old, "new": admin["permissions"]}]
        rep = await roles.find_one({"_id": "rep"})
        assert "customers:export" not in rep["permissions"], "an administrator's removal stays"
        assert set(rep["permissions"]) == set(rep_old) | ({p.value for p in ROLE_PERMISSIONS[Role.rep]} & set(later))
        assert rep["scopes"][dropped_module] == BUILTIN_SCOPES[Role.rep]
        assert {c["field"] for c in rep["outbox"][0]["envelope"]["data"]["changes"]} >= {"scopes"}
        for role_id in ("manager", "integrator"):  # recorded what they have seen; no grant changed, no event
            doc = await roles.find_one({"_id": role_id})
            assert doc["defaults_seen"] == sorted(p.value for p in ROLE_PERMISSIONS[Role(role_id)])
            assert doc["outbox"] == [] and doc["updated_by"] == "system:seed"
            if not {p.value for p in ROLE_PERMISSIONS[Role(role_id)]} & set(later):
                assert set(doc["permissions"]) == {p.value for p in ROLE_PERMISSIONS[Role(role_id)]}

        versions = {doc["_id"]: doc["version"] async for doc in roles.find({})}
        await directory.roles.seed()  # and the one after: nothing left to do
        assert {doc["_id"]: doc["version"] async for doc in roles.find({})} == versions
