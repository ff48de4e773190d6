"""End to end: a role an administrator defines in the directory reaches another service through
Kafka and decides what its holders may call there, and which records they reach.

The directory and the customers service run in-process against the session's Kafka and MongoDB,
each with its own database and consumer groups; the customers service learns the role only from
the directory's ``crm.role.*`` events (its read copy, crm_platform.roles). A user who holds only
that role signs in through the directory and calls the customers API with the token it issued:
the route the role grants answers, one it does not grant is refused, and once the role is edited
to take the permission away the next call is refused too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_directory.main import create_app as create_directory_app
from crm_directory.settings import DirectorySettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, eventually, running, service_settings, unique

PASSWORD = "a long enough passphrase"
DENIED = "urn:crm:problem:permission-denied"


@pytest.fixture(scope="module")
async def directory(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    settings = DirectorySettings(
        **service_settings(backend, "directory"),  # type: ignore[arg-type]
        directory_argon2_time_cost=1,
        directory_argon2_memory_kib=256,
        directory_argon2_parallelism=1,
    )
    async with running(create_directory_app(settings), "http://directory.e2e") as client:
        yield client


@pytest.fixture(scope="module")
async def customers(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    settings = CustomersSettings(**service_settings(backend, "customers"))  # type: ignore[arg-type]
    async with running(create_customers_app(settings), "http://customers.e2e") as client:
        yield client


async def test_a_role_defined_in_the_directory_decides_what_its_holders_may_do_elsewhere(directory, customers):
    root = unique("org")
    admin = auth(unique("it-admin"), ["admin"], f"/{root}")
    assert (
        await directory.post("/v1/departments", json={"id": root, "name": "总部"}, headers=admin)
    ).status_code == 201
    role_id = unique("viewer")
    r = await directory.post(
        "/v1/roles",
        json={
            "id": role_id,
            "names": {"zh-CN": "只读客户", "en": "Customer viewer"},
            "permissions": ["account:self", "customers:view"],
            "scopes": {"customers": "own"},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text

    email = f"{unique('viewer')}@example.com"
    body = {"email": email, "name": "赵六", "roles": [role_id], "department_id": root, "password": PASSWORD}
    r = await directory.post("/v1/users", json=body, headers=admin)
    assert r.status_code == 201 and r.json()["roles"] == [role_id], r.text
    signed_in = await directory.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

    async def lists_with(status: int) -> bool:
        return (await customers.get("/v1/customers", headers=bearer)).status_code == status

    # The customers service learns the role from the directory's event (until then it grants nothing).
    await eventually(lambda: lists_with(200), timeout=30, message="the role reached the customers service")
    refused = await customers.post(
        "/v1/customers", json={"kind": "company", "name": f"示例贸易有限公司{unique('c')}"}, headers=bearer
    )
    assert refused.status_code == 403 and refused.json()["type"] == DENIED, refused.text
    assert refused.json()["permission"] == "customers:create"

    # The data scope travels the same way: "own" does not reach a colleague's customer, and once
    # the role's customers scope is "department", the colleague in the same department is reached.
    colleague = auth(unique("rep"), ["rep"], f"/{root}")
    created = await customers.post(
        "/v1/customers", json={"kind": "company", "name": f"同部门贸易有限公司{unique('c')}"}, headers=colleague
    )
    assert created.status_code == 201, created.text
    theirs = f"/v1/customers/{created.json()['id']}"
    assert (await customers.get(theirs, headers=bearer)).status_code == 404
    r = await directory.patch(
        f"/v1/roles/{role_id}", json={"scopes": {"customers": "department"}}, headers={**admin, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text

    async def reaches_theirs() -> bool:
        return (await customers.get(theirs, headers=bearer)).status_code == 200

    await eventually(reaches_theirs, timeout=30, message="the scope change reached the customers service")

    r = await directory.patch(
        f"/v1/roles/{role_id}", json={"permissions": ["account:self"]}, headers={**admin, "If-Match": '"2"'}
    )
    assert r.status_code == 200, r.text
    await eventually(lambda: lists_with(403), timeout=30, message="the edit reached the customers service")
    after = await customers.get("/v1/customers", headers=bearer)
    assert after.json()["type"] == DENIED and after.json()["permission"] == "customers:view"
