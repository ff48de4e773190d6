"""Time-driven rules with a ManualClock (no sleeping), across two replicas: failed sign-ins are
slowed down, refresh tokens expire.

Two app instances share one database and one clock, as two replicas of the service
would share MongoDB: failures counted by one are seen by the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_directory.main import create_app
from crm_platform.clock import ManualClock
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, unique

from ..conftest import directory_settings_for, random_ip

PASSWORD = "correct horse battery"
WRONG = "not the password at all"


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    now = datetime.now(UTC)
    return ManualClock(now.replace(microsecond=now.microsecond // 1000 * 1000))


@pytest.fixture(scope="module")
async def replicas(backend: Backend, clock: ManualClock) -> AsyncIterator[list[httpx.AsyncClient]]:
    settings = directory_settings_for(backend)
    apps = [create_app(settings, clock=clock), create_app(settings, clock=clock)]
    clients = []
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        for i, app in enumerate(apps):
            clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://r{i}.test"))
        yield clients
        for c in clients:
            await c.aclose()


@pytest.fixture
async def person(replicas: list[httpx.AsyncClient]) -> dict[str, Any]:
    admin = auth(unique("admin"), ["admin"])
    client = replicas[0]
    root = unique("org")
    r = await client.post("/v1/departments", json={"id": root, "name": root}, headers=admin)
    assert r.status_code == 201, r.text
    body = {
        "email": f"{unique('p')}@example.com",
        "name": "孙八",
        "roles": ["rep"],
        "department_id": root,
        "password": PASSWORD,
    }
    r = await client.post("/v1/users", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return {**r.json(), "ip": random_ip()}


async def sign_in(client: httpx.AsyncClient, email: str, password: str, ip: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/token", json={"email": email, "password": password}, headers={"X-Forwarded-For": ip}
    )


async def fail(replicas: list[httpx.AsyncClient], email: str, ip: str, times: int) -> None:
    for i in range(times):
        r = await sign_in(replicas[i % 2], email, WRONG, ip)
        assert r.status_code == 401, (i, r.text)


async def test_five_failures_on_either_replica_block_the_email(replicas, person, clock):
    await fail(replicas, person["email"], person["ip"], 5)
    for client in replicas:
        r = await sign_in(client, person["email"], PASSWORD, person["ip"])
        assert r.status_code == 429, "even the right password waits"
        assert r.headers["retry-after"] == "30" and r.json()["retry_after"] == 30
        assert r.headers["content-type"] == "application/problem+json"
    clock.advance(timedelta(seconds=29))
    r = await sign_in(replicas[1], person["email"], PASSWORD, person["ip"])
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    clock.advance(timedelta(seconds=1))
    assert (await sign_in(replicas[1], person["email"], PASSWORD, person["ip"])).status_code == 200
    # The success reset the count: four more failures are allowed before the next block.
    await fail(replicas, person["email"], person["ip"], 4)
    assert (await sign_in(replicas[0], person["email"], PASSWORD, person["ip"])).status_code == 200


async def test_the_wait_doubles_with_each_further_failure_up_to_fifteen_minutes(replicas, person, clock):
    await fail(replicas, person["email"], person["ip"], 5)
    waits = []
    for _ in range(7):
        r = await sign_in(replicas[0], person["email"], WRONG, person["ip"])
        assert r.status_code == 429
        wait = int(r.headers["retry-after"])
        waits.append(wait)
        clock.advance(timedelta(seconds=wait))
        assert (await sign_in(replicas[1], person["email"], WRONG, person["ip"])).status_code == 401
    assert waits == [30, 60, 120, 240, 480, 900, 900]
    # Fifteen quiet minutes after the last block: forgotten.
    clock.advance(timedelta(seconds=900 + 900))
    assert (await sign_in(replicas[0], person["email"], PASSWORD, person["ip"])).status_code == 200


async def test_unknown_emails_are_throttled_like_known_ones(replicas, person):
    ghost = f"{unique('ghost')}@example.com"
    await fail(replicas, ghost, person["ip"], 5)
    r = await sign_in(replicas[0], ghost, WRONG, person["ip"])
    assert r.status_code == 429 and r.headers["retry-after"] == "30", "no hint that the account does not exist"


async def test_one_address_failing_on_many_accounts_is_blocked(replicas, person, clock):
    ip = random_ip()
    for _ in range(10):
        await fail(replicas, f"{unique('spray')}@example.com", ip, 2)  # 20 failures, never 5 on one email
    r = await sign_in(replicas[0], person["email"], PASSWORD, ip)
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    assert (await sign_in(replicas[0], person["email"], PASSWORD, random_ip())).status_code == 200
    clock.advance(timedelta(seconds=30))
    assert (await sign_in(replicas[0], person["email"], PASSWORD, ip)).status_code == 200


async def test_refresh_tokens_expire_after_their_lifetime(replicas, person, clock):
    r = await sign_in(replicas[0], person["email"], PASSWORD, person["ip"])
    tokens = r.json()
    clock.advance(timedelta(days=13, hours=23))
    r = await replicas[1].post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, "still alive a little before 14 days"
    rotated = r.json()["refresh_token"]
    clock.advance(timedelta(days=14, seconds=1))
    r = await replicas[0].post("/v1/auth/refresh", json={"refresh_token": rotated})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
