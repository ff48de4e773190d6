"""Every route of every service against every role, from each app's own OpenAPI document.

The roles are the four built-in ones, a custom role as an administrator would define it (every
other permission, handed to each service's read copy of the role definitions as the directory's
``crm.role.created`` event), and a role id no service knows (which must be refused everywhere).

For each route the permission table (crm_platform.permissions) must have a decision; a role it
denies gets 403 problem+json ``permission-denied`` (never a 2xx, never a 5xx), a role it allows
is never stopped by the permission layer (the handler may still answer 404, 409, 422, 428 ... for
the made-up ids and the empty bodies sent here), and no route but the public ones answers a
caller without a token.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.auth import Principal, Role
from crm_platform.contracts import directory as ev
from crm_platform.errors import PROBLEM_JSON
from crm_platform.events import EventEnvelope
from crm_platform.permissions import PUBLIC, ROLE_PERMISSIONS, ROUTES, Permission, granted, rule_for
from crm_platform.testing.fixtures import auth

DENIED = "urn:crm:problem:permission-denied"
METHODS = ("get", "post", "put", "patch", "delete")
SERVICES = [
    "customers",
    "directory",
    "pipeline",
    "interactions",
    "pool",
    "notifications",
    "reporting",
    "audit",
    "leads",
    "sales",
]
#: A role an administrator defined: every other permission (so each service has routes it allows and
#: routes it refuses), with data scopes of its own.
CUSTOM = f"matrix-custom-{uuid.uuid4().hex[:6]}"
CUSTOM_PERMISSIONS = sorted(p.value for p in Permission)[::2]
UNKNOWN = "matrix-undefined-role"


def custom_role_created() -> EventEnvelope:
    now = datetime.now(UTC)
    role = ev.RoleSnapshot(
        role_id=CUSTOM,
        names={"zh-CN": "矩阵角色", "en": "Matrix role"},
        permissions=CUSTOM_PERMISSIONS,
        scopes={"customers": "department", "opportunities": "subtree"},
        builtin=False,
        created_at=now,
        updated_at=now,
    )
    return ev.ROLE_CREATED.build(
        source="/crm/directory",
        subject=CUSTOM,
        data=ev.RoleCreated(role=role),
        aggregate_version=1,
        time=now,
        actor="matrix",
    )


def _value(name: str, schema: dict[str, Any]) -> Any:
    """A value that passes the parameter's own validation (so the permission layer is what answers)."""
    if "enum" in schema:
        return schema["enum"][0]
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _value(name, option)
    if name == "period":
        return "2026-11"
    kind = schema.get("type")
    if kind == "integer":
        return 1
    if kind == "boolean":
        return "true"
    if schema.get("format") == "date":
        return "2026-11-01"
    return f"matrix-{uuid.uuid4().hex[:8]}"


def request_for(path: str, operation: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The URL, query and body arguments of a minimal, well-formed call."""
    url, query = path, {}
    for param in operation.get("parameters", []):
        value = _value(param["name"], param.get("schema", {}))
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", str(value))
        elif param["in"] == "query" and param.get("required"):
            query[param["name"]] = value
    content = operation.get("requestBody", {}).get("content", {})
    body: dict[str, Any] = {}
    if "application/json" in content:
        body = {"json": {}}
    elif content:
        body = {"content": b"", "headers": {"Content-Type": next(iter(content))}}
    return url, query, body


def test_every_route_of_every_service_has_a_decision() -> None:
    """The table names no route twice under different spellings and no permission nobody holds."""
    every_granted = set().union(*ROLE_PERMISSIONS.values())
    used = {rule for routes in ROUTES.values() for rule in routes.values() if rule != PUBLIC}
    assert used <= every_granted
    assert set(Permission) == every_granted, "a permission no role holds is dead weight"
    assert set(ROUTES) == set(SERVICES)


def test_the_integrator_reaches_its_webhooks_and_no_customer_data() -> None:
    integrator = granted([Role.integrator])
    assert integrator == {Permission.webhooks_manage, Permission.account_self}
    for permission in integrator:
        assert not permission.value.startswith(("customers:", "pool:", "opportunities:", "reports:"))


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_against_every_role(service: str, service_apps: dict[str, FastAPI]) -> None:
    app = service_apps[service]
    definitions = app.state.kit.roles
    await definitions.apply(custom_role_created())  # as its consumer would (idempotent: by version)
    paths = app.openapi()["paths"]
    failures: list[str] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}.test") as client:
        for path, item in paths.items():
            for method in METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                rule = rule_for(service, method, path)
                where = f"{method.upper()} {path}"
                if rule is None:
                    failures.append(f"{where}: no entry in crm_platform.permissions.ROUTES[{service!r}]")
                    continue
                url, query, body = request_for(path, operation)

                anonymous = await client.request(method, url, params=query, **body)
                if rule == PUBLIC:
                    if anonymous.status_code in (401, 403) or anonymous.status_code >= 500:
                        failures.append(f"{where} is public but answered {anonymous.status_code} without a token")
                    continue
                if anonymous.status_code != 401:
                    failures.append(f"{where} without a token: {anonymous.status_code}, expected 401")

                for role in [*(r.value for r in Role), CUSTOM, UNKNOWN]:
                    headers = {**body.get("headers", {}), **auth(f"matrix-{role}", [role])}
                    r = await client.request(
                        method, url, params=query, headers=headers, json=body.get("json"), content=body.get("content")
                    )
                    allowed = Permission(rule) in granted([role], definitions)
                    if role == UNKNOWN:
                        assert not allowed
                    if role == CUSTOM:
                        assert allowed == (rule in CUSTOM_PERMISSIONS)
                    problem = r.json() if r.headers.get("content-type", "").startswith(PROBLEM_JSON) else {}
                    if r.status_code >= 500:
                        failures.append(f"{where} as {role}: {r.status_code} {r.text[:200]}")
                    elif allowed and problem.get("type") == DENIED:
                        failures.append(f"{where} as {role}: refused by the permission layer, the table allows it")
                    elif not allowed and not (r.status_code == 403 and problem.get("type") == DENIED):
                        failures.append(f"{where} as {role}: {r.status_code}, expected 403 permission-denied")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_resolves_the_custom_roles_data_scopes(
    service: str, service_apps: dict[str, FastAPI]
) -> None:
    """The principal a request gets in each service carries the custom role's scopes from that
    service's own read copy of the definitions (module by module; "own" where it names none),
    and a role id nobody defined gives no scope at all."""
    app = service_apps[service]
    definitions = app.state.kit.roles
    await definitions.apply(custom_role_created())
    custom = definitions.resolve(Principal(user_id="matrix-custom", roles=frozenset({CUSTOM}), department_path="/hq"))
    assert custom.scope("customers") == "department" and custom.scope("opportunities") == "subtree"
    assert custom.scope("tasks") == "own"
    assert custom.reaches_path("/hq", "customers") and not custom.reaches_path("/hq/east", "customers")
    assert custom.reaches_path("/hq/east", "opportunities")
    unknown = definitions.resolve(Principal(user_id="matrix-unknown", roles=frozenset({UNKNOWN})))
    assert unknown.scope("customers") is None and unknown.permissions == frozenset()
