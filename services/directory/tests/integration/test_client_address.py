"""Sign-in throttling counts the client's real address: X-Forwarded-For is believed only from a
proxy named in CRM_TRUSTED_PROXIES, so a fresh X-Forwarded-For per attempt escapes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from crm_directory.main import create_app
from crm_directory.settings import DirectorySettings
from crm_platform.serving import uvicorn_config
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import eventually, unique

from ..conftest import directory_settings_for, random_ip

WRONG = "not the password at all"
PER_ADDRESS = 20  # CRM_DIRECTORY_SIGNIN_MAX_FAILURES_PER_IP's default


async def attempt(client: httpx.AsyncClient, forwarded_for: str) -> httpx.Response:
    # A new email every time: only the per-address limit can stop these.
    body = {"email": f"{unique('spray')}@example.com", "password": WRONG}
    return await client.post("/v1/auth/token", json=body, headers={"X-Forwarded-For": forwarded_for})


@pytest.fixture(scope="module")
async def unproxied(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    """The directory as ``python -m crm_directory`` serves it (uvicorn, our config), default
    settings (no trusted proxy), reached from 127.0.0.1: the peer uvicorn used to trust."""
    settings = directory_settings_for(backend, trusted_proxies=[], http_host="127.0.0.1", http_port=0)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), timeout=30, message="uvicorn started")
    assert not task.done(), task.exception()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def test_without_trusted_proxies_a_spoofed_forwarded_for_changes_nothing(unproxied: httpx.AsyncClient) -> None:
    for i in range(PER_ADDRESS):
        r = await attempt(unproxied, random_ip())
        assert r.status_code == 401, (i, r.text)
    blocked = await attempt(unproxied, random_ip())
    assert blocked.status_code == 429, blocked.text
    assert blocked.headers["content-type"].startswith("application/problem+json")


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(client: httpx.AsyncClient) -> None:
    # The session's directory trusts 127.0.0.1, the test client's peer address: the proxy.
    for i in range(PER_ADDRESS + 5):
        assert (await attempt(client, random_ip())).status_code == 401, i  # every client its own count

    # The proxy appends the address it saw; what the client put before it is not believed.
    real = random_ip()
    for i in range(PER_ADDRESS):
        r = await attempt(client, f"{random_ip()}, {real}")
        assert r.status_code == 401, (i, r.text)
    assert (await attempt(client, f"{random_ip()}, {real}")).status_code == 429
    assert (await attempt(client, real)).status_code == 429


def test_the_old_switch_without_named_proxies_stops_the_service(backend: Backend) -> None:
    with pytest.raises(ValueError, match="CRM_TRUSTED_PROXIES"):
        directory_settings_for(backend, trusted_proxies=[], directory_trust_forwarded_for=True)
    kept = directory_settings_for(backend, trusted_proxies=["10.0.0.0/8"], directory_trust_forwarded_for=True)
    assert isinstance(kept, DirectorySettings) and kept.trusted_proxies == ["10.0.0.0/8"]
