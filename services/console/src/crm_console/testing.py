"""Helpers of the console's browser-test harness (fixtures: services/console/tests/conftest.py).

Kept in the package, as crm_platform.testing is, because pytest's importlib mode cannot import a
test directory's own modules; Playwright is imported by the fixtures only.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from crm_platform.devstack.processes import LOOPBACK, free_port
from crm_platform.testing.fixtures import auth, eventually, unique

PASSWORD = "a long enough passphrase"
CHROMIUM = os.environ.get("CRM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_installed() -> bool:
    return os.path.exists(CHROMIUM)


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` as a real HTTP server on a free loopback port (lifespan included); yields its URL."""
    port = free_port()
    # No proxy headers from uvicorn (its default believes them from 127.0.0.1): as the services
    # serve (crm_platform.serving), forwarded addresses count only from CRM_TRUSTED_PROXIES.
    config = uvicorn.Config(app, host=LOOPBACK, port=port, log_config=None, access_log=False, proxy_headers=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it did not start
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class User:
    id: str
    email: str
    name: str
    password: str = PASSWORD


@dataclass
class Stack:
    console_url: str
    urls: dict[str, str]
    sessions: Any  # the console's sessions collection (pymongo async)
    admin_headers: dict[str, str] = field(default_factory=lambda: auth(unique("it-admin"), ["admin"], "/hq"))

    async def new_user(self, roles: list[str] | None = None, language: str = "en", name: str | None = None) -> User:
        email = f"{unique('u')}@example.com"
        name = name or f"测试用户 {unique('n')}"
        body: dict[str, Any] = {
            "email": email,
            "name": name,
            "roles": roles or ["rep"],
            "department_id": "hq",
            "password": PASSWORD,
            "language": language,
        }
        async with httpx.AsyncClient(base_url=self.urls["directory"]) as client:
            answer = await client.post("/v1/users", json=body, headers=self.admin_headers)
        assert answer.status_code == 201, answer.text
        return User(id=answer.json()["id"], email=email, name=name)

    async def token_for(self, user: User) -> str:
        async with httpx.AsyncClient(base_url=self.urls["directory"]) as client:
            answer = await client.post("/v1/auth/token", json={"email": user.email, "password": user.password})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


async def signed_in(client: httpx.AsyncClient, user: User) -> str:
    """Sign ``client`` (the console's base URL) in through the login form, as a browser would; the
    signed-in session's CSRF token (the one the pages put in ``hx-headers``)."""
    form = await client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, form.text
    answer = await client.post(
        "/login", data={"email": user.email, "password": user.password, "next": "/", "csrf_token": csrf.group(1)}
    )
    assert answer.status_code == 303, answer.text
    home = await client.get("/")
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', home.text)
    assert token, home.text
    return token.group(1)


@asynccontextmanager
async def console_as(stack: Stack, user: User) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An HTTP client signed in to the console as ``user`` (redirects not followed), and its CSRF token."""
    async with httpx.AsyncClient(base_url=stack.console_url, follow_redirects=False) as client:
        yield client, await signed_in(client, user)


async def api(stack: Stack, user: User, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to a service's API (``stack.urls[service]``) with ``user``'s bearer token."""
    headers = {"Authorization": f"Bearer {await stack.token_for(user)}", **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(base_url=stack.urls[service]) as client:
        return await client.request(method, path, headers=headers, **kwargs)


async def customer_known_to_sales(stack: Stack, owner: User, name: str = "客户") -> str:
    """A company customer of ``owner`` (named ``name`` and a unique tail), once the sales service's
    read copy holds it. The probe is a ticket without a subject: refused at the customer until the
    copy knows it, then at the subject only, so nothing is written either way."""
    made = await api(stack, owner, "customers", "POST", "/v1/customers", json={"kind": "company", "name": unique(name)})
    assert made.status_code == 201, made.text
    customer_id = str(made.json()["id"])

    async def known() -> bool:
        answer = await api(stack, owner, "sales", "POST", "/v1/tickets", json={"customer_id": customer_id})
        assert answer.status_code == 422, answer.text
        return "customer_id" not in {e["field"] for e in answer.json()["errors"]}

    await eventually(known, timeout=60, interval=0.3, message="customer in the sales service's copy")
    return customer_id


def at_field(page: str, name: str) -> str:
    """The error a rendered form shows at input ``name`` (``<small id="e-NAME">``), unescaped."""
    found = re.search(rf'<small id="e-{re.escape(name)}" class="field-error">([^<]*)</small>', page)
    assert found, f"no error at {name}"
    return html.unescape(found.group(1))


async def sign_in(page: Any, user: User, password: str | None = None) -> None:
    """Through the login form, as a person would."""
    await page.goto("/login")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(password or user.password)
    await page.get_by_role("button", name="Sign in").click()


#: Where the README's screenshots of the console live (docs/console/<group>-<name>.png).
SCREENSHOTS = Path(__file__).resolve().parents[4] / "docs" / "console"


async def screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot as docs/console/<name>.png when CRM_CONSOLE_SCREENSHOTS=1.

    The journeys call this at their main pages; a normal test run writes nothing, and
    `CRM_CONSOLE_SCREENSHOTS=1 .venv/bin/python -m pytest services/console/tests` refreshes the
    committed pictures (name them "<group>-<what>", e.g. "pipeline-kanban").
    """
    if os.environ.get("CRM_CONSOLE_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
