"""The directory service in-process, once per test session, against the session's Kafka and MongoDB.

``api`` gives each test its own small organisation (a root department with a unique
id) and its own client address, so tests never see each other's users, departments
or failed sign-ins.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_directory.main import create_app
from crm_directory.settings import DirectorySettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, EventCollector, auth, collecting, database, unique

TOPIC = "crm.directory.v1"
PASSWORD = "correct horse battery"  # meets the policy; each test's users get it unless told otherwise


def directory_settings_for(backend: Backend, **overrides: Any) -> DirectorySettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": backend.kafka_bootstrap,
        "kafka_enable_idempotence": backend.kafka_enable_idempotence,
        "mongo_url": backend.mongo_url,
        "mongo_database": f"crm_directory_{uuid.uuid4().hex[:8]}",
        # Each app its own consumer groups (the role definitions' copy every service keeps): apps
        # sharing a group rebalance whenever one starts or stops, and a stop mid-rebalance waits.
        "consumer_group_suffix": f".test-{uuid.uuid4().hex[:8]}",
        "jwt_secret": TEST_JWT_SECRET,
        "log_format": "console",
        "log_level": "WARNING",
        # Cheap argon2 for the suite; the production defaults are tested in the unit tests.
        "directory_argon2_time_cost": 1,
        "directory_argon2_memory_kib": 256,
        "directory_argon2_parallelism": 1,
        # Each test signs in from its own address (X-Forwarded-For), so the per-address
        # throttle of one test does not block another: the test client (httpx's ASGI
        # transport, peer 127.0.0.1) plays the trusted proxy.
        "trusted_proxies": ["127.0.0.1"],
        "directory_tree_lock_wait_seconds": 20,
    }
    values.update(overrides)
    return DirectorySettings(**values)


@pytest.fixture(scope="session")
def directory_settings(backend: Backend) -> DirectorySettings:
    return directory_settings_for(backend)


@pytest.fixture(scope="session")
async def directory_app(directory_settings: DirectorySettings) -> AsyncIterator[FastAPI]:
    app = create_app(directory_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def client(directory_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=directory_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://directory.test") as c:
        yield c


@pytest.fixture(scope="session")
async def directory_events(backend: Backend, directory_app: FastAPI) -> AsyncIterator[EventCollector]:
    async with collecting(backend.kafka_bootstrap, [TOPIC]) as collector:
        yield collector


@pytest.fixture(scope="session")
async def directory_db(backend: Backend, directory_settings: DirectorySettings) -> AsyncIterator[Any]:
    async with database(backend.mongo_url, directory_settings.mongo_database) as db_:
        yield db_


@dataclass
class Api:
    """A test's own organisation: a root department ``root`` (path ``/<root>``) and helpers."""

    client: httpx.AsyncClient
    root: str
    ip: str
    admin: dict[str, str]
    created_users: list[str] = field(default_factory=list)

    @property
    def root_path(self) -> str:
        return f"/{self.root}"

    async def department(self, name: str, parent: str | None = None, **extra: Any) -> dict[str, Any]:
        body = {"id": unique("d"), "name": name, "parent_id": parent or self.root, **extra}
        r = await self.client.post("/v1/departments", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def user(
        self,
        department: str | None = None,
        roles: list[str] | None = None,
        password: str | None = PASSWORD,
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "email": f"{unique('user')}@example.com",
            "name": extra.pop("name", "张三"),
            "roles": roles or ["rep"],
            "department_id": department or self.root,
            **extra,
        }
        if password is not None:
            body["password"] = password
        r = await self.client.post("/v1/users", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        self.created_users.append(r.json()["id"])
        return dict(r.json())

    def headers_for(self, user: dict[str, Any]) -> dict[str, str]:
        """A token as the directory would issue it for this user (roles, department path)."""
        return auth(user["id"], user["roles"], user["department_path"])

    async def sign_in(self, email: str, password: str = PASSWORD, ip: str | None = None) -> httpx.Response:
        return await self.client.post(
            "/v1/auth/token",
            json={"email": email, "password": password},
            headers={"X-Forwarded-For": ip or self.ip},
        )

    async def tokens(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = await self.sign_in(email, password)
        assert r.status_code == 200, r.text
        return dict(r.json())


def random_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


@pytest.fixture
async def api(client: httpx.AsyncClient) -> Api:
    root = unique("org")
    admin = auth(unique("admin"), ["admin"], f"/{root}")
    r = await client.post("/v1/departments", json={"id": root, "name": f"Org {root}"}, headers=admin)
    assert r.status_code == 201, r.text
    return Api(client=client, root=root, ip=random_ip(), admin=admin)
