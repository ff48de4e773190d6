"""The console's test harness, for every page group's tests.

Session-wide (started once): the directory and the customers service, each a real HTTP server
(uvicorn in this process, on a free port, on the session's broker and store), the console
pointing at them, and one headless Chromium. Per test: a fresh browser context.

Fixtures:
- ``stack``: a :class:`Stack` (``console_url``, ``urls`` per service, ``admin_headers``, ``sessions``
  (the console's sessions collection), ``new_user(...)`` → a :class:`User` who can sign in).
- ``user``: a fresh rep (password :data:`PASSWORD`), per test.
- ``page``: a Playwright page in a fresh context; ``signed_in_page``: the same, ``user`` signed in
  through the login form.
- ``console_client``: an ``httpx.AsyncClient`` on the console (no browser), for non-browser checks.

A page group that needs another service adds it to :data:`SERVICES` below (one line) and its own
journeys in ``test_<group>.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_audit.main import create_app as audit_app
from crm_audit.settings import AuditSettings
from crm_console.main import create_app as console_app
from crm_console.settings import ConsoleSettings
from crm_console.testing import CHROMIUM, CHROMIUM_ARGS, Stack, User, chromium_installed, serving, sign_in
from crm_customers.main import create_app as customers_app
from crm_customers.settings import CustomersSettings
from crm_directory.main import create_app as directory_app
from crm_directory.settings import DirectorySettings
from crm_interactions.main import create_app as interactions_app
from crm_interactions.settings import InteractionsSettings
from crm_leads.main import create_app as leads_app
from crm_leads.settings import LeadsSettings
from crm_notifications.main import create_app as notifications_app
from crm_notifications.settings import NotificationSettings
from crm_pipeline.main import create_app as pipeline_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import service_settings
from crm_pool.main import create_app as pool_app
from crm_pool.settings import PoolSettings
from crm_reporting.main import create_app as reporting_app
from crm_reporting.settings import ReportingSettings
from crm_sales.main import create_app as sales_app
from crm_sales.settings import SalesSettings

# The services the console's journeys use: name → (app factory, settings class, extra settings).
SERVICES: dict[str, tuple[Callable[..., FastAPI], type[Any], dict[str, Any]]] = {
    "directory": (
        directory_app,
        DirectorySettings,
        {"directory_argon2_time_cost": 1, "directory_argon2_memory_kib": 256, "directory_argon2_parallelism": 1},
    ),
    "customers": (customers_app, CustomersSettings, {}),
    "pipeline": (pipeline_app, PipelineSettings, {}),
    "interactions": (interactions_app, InteractionsSettings, {"scheduler_enabled": False}),
    "pool": (pool_app, PoolSettings, {"scheduler_enabled": False}),
    "reporting": (reporting_app, ReportingSettings, {}),
    "notifications": (
        notifications_app,
        NotificationSettings,
        {
            "email_enabled": False,
            "webhook_allow_private": True,
            "webhook_retry_initial_seconds": 0.2,
            "webhook_retry_period_seconds": 1.0,
        },
    ),
    "audit": (audit_app, AuditSettings, {"audit_purge_enabled": False}),
    "leads": (leads_app, LeadsSettings, {}),
    "sales": (sales_app, SalesSettings, {}),
}


@pytest.fixture(scope="session")
async def stack(backend: Backend) -> AsyncIterator[Stack]:
    from pymongo import AsyncMongoClient

    async with AsyncExitStack() as started:
        urls: dict[str, str] = {}
        for name, (create, settings_type, extra) in SERVICES.items():
            app = create(settings_type(**service_settings(backend, name), **extra))
            urls[name] = await started.enter_async_context(serving(app))
        console_settings = ConsoleSettings(
            **service_settings(backend, "console"),
            **{f"console_{name}_url": url for name, url in urls.items()},
        )
        console_url = await started.enter_async_context(serving(console_app(console_settings)))
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
        started.push_async_callback(client.close)
        stack = Stack(console_url, urls, client[console_settings.mongo_database]["sessions"])
        async with httpx.AsyncClient(base_url=urls["directory"]) as directory:
            answer = await directory.post(
                "/v1/departments", json={"id": "hq", "name": "总部"}, headers=stack.admin_headers
            )
            assert answer.status_code in (201, 409), answer.text
        yield stack


@pytest.fixture
async def user(stack: Stack) -> User:
    return await stack.new_user()


@pytest.fixture
async def console_client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.console_url, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not chromium_installed():
        pytest.skip(f"no Chromium at {CHROMIUM} (./dev test installs Debian's chromium)")
    from playwright.async_api import async_playwright

    # launch() gives Chromium a fresh, temporary user-data dir of its own (it refuses --user-data-dir).
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Any, stack: Stack) -> AsyncIterator[Any]:
    context = await browser.new_context(base_url=stack.console_url, locale="en-US", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def signed_in_page(page: Any, user: User) -> Any:
    await sign_in(page, user)
    await page.wait_for_url("**/")
    return page
