"""The console forwards the person's address to the services (X-Forwarded-For), as the console
itself believes it: through its own trusted proxies only. The directory's per-address sign-in limit
and the audit log's "from where" then name the person, not the console, wherever the services
trust the console's address (CRM_TRUSTED_PROXIES)."""

from __future__ import annotations

import re

import httpx
import pytest

from crm_console.main import create_app
from crm_console.settings import ConsoleSettings
from crm_console.testing import serving
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import service_settings


async def _forwarded_on_sign_in(backend: Backend, trusted: list[str], sent_forwarded: str) -> list[str | None]:
    seen: list[str | None] = []

    def directory(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-forwarded-for"))
        problem = {"type": "urn:crm:problem:unauthorized", "title": "Unauthorized", "status": 401}
        return httpx.Response(401, json=problem)

    settings = ConsoleSettings(**service_settings(backend, "console"), trusted_proxies=trusted)
    app = create_app(settings, upstream_transport=httpx.MockTransport(directory))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        form = await client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text
        await client.post(
            "/login",
            data={"email": "x@example.com", "password": "wrong", "next": "/", "csrf_token": csrf.group(1)},
            headers={"X-Forwarded-For": sent_forwarded},
        )
    return seen


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [(["127.0.0.1"], "203.0.113.9"), ([], "127.0.0.1")],
    ids=["behind-a-trusted-proxy", "direct-spoof-ignored"],
)
async def test_sign_in_forwards_the_persons_address(backend: Backend, trusted: list[str], expected: str) -> None:
    seen = await _forwarded_on_sign_in(backend, trusted, "203.0.113.9")
    assert seen and all(address == expected for address in seen), seen
