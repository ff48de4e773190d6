"""End to end: a user created in the directory signs in with email and password and, with the
access token the directory issued, creates a customer in the customers service.

Both services run in-process against the session's Kafka and MongoDB, each with its own
database and the same JWT secret, as they would be deployed; neither calls the other.
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
from crm_platform.testing.fixtures import auth, service_settings, unique

PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
async def directory(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    settings = DirectorySettings(
        **service_settings(backend, "directory"),  # type: ignore[arg-type]
        directory_argon2_time_cost=1,
        directory_argon2_memory_kib=256,
        directory_argon2_parallelism=1,
    )
    app = create_directory_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://directory.e2e") as c:
            yield c


@pytest.fixture(scope="module")
async def customers(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = create_customers_app(CustomersSettings(**service_settings(backend, "customers")))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://customers.e2e") as c:
            yield c


async def test_a_directory_user_signs_in_and_creates_a_customer(directory, customers):
    admin = auth(unique("it-admin"), ["admin"], "/hq")
    for body in ({"id": "hq", "name": "总部"}, {"id": "east", "name": "华东区", "parent_id": "hq"}):
        r = await directory.post("/v1/departments", json=body, headers=admin)
        assert r.status_code == 201, r.text
    team = (
        await directory.post(
            "/v1/departments", json={"id": "sh-team-1", "name": "上海一组", "parent_id": "east"}, headers=admin
        )
    ).json()
    assert team["path"] == "/hq/east/sh-team-1"
    email = f"{unique('zhou')}@example.com"
    r = await directory.post(
        "/v1/users",
        json={
            "email": email,
            "name": "周九",
            "roles": ["rep"],
            "department_id": "sh-team-1",
            "password": PASSWORD,
            "language": "zh-CN",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    user = r.json()

    signed_in = await directory.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

    created = await customers.post(
        "/v1/customers",
        json={"kind": "company", "name": f"上海示例贸易有限公司{unique('c')}", "phones": ["138 0013 8000"]},
        headers=bearer,
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["owner_id"] == user["id"]
    assert customer["department_id"] == "sh-team-1"
    assert customer["department_path"] == user["department_path"] == "/hq/east/sh-team-1"
    assert customer["created_by"] == user["id"]
    mine = await customers.get("/v1/customers", headers=bearer)
    assert [c["id"] for c in mine.json()["items"]] == [customer["id"]]

    # The manager of 华东区, signed in through the directory too, sees it (a prefix of the path).
    manager_email = f"{unique('wu')}@example.com"
    body = {"email": manager_email, "name": "吴十", "roles": ["manager"], "department_id": "east", "password": PASSWORD}
    assert (await directory.post("/v1/users", json=body, headers=admin)).status_code == 201
    manager_token = (
        await directory.post("/v1/auth/token", json={"email": manager_email, "password": PASSWORD})
    ).json()["access_token"]
    seen = await customers.get(f"/v1/customers/{customer['id']}", headers={"Authorization": f"Bearer {manager_token}"})
    assert seen.status_code == 200 and seen.json()["owner_id"] == user["id"]
