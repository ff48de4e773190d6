"""Checks that need no browser: CSRF, health, the error pages, catalogues and the menu registry."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
from pymongo.errors import ServerSelectionTimeoutError

from crm_console.i18n import Catalogue
from crm_console.main import _ensure_indexes_when_reachable, catalogue_for
from crm_console.registry import discover, may, menu_for, reaches_beyond_own
from crm_console.sessions import SessionUser
from crm_console.settings import UPSTREAMS
from crm_console.testing import Stack, User, signed_in
from crm_console.web import format_datetime
from crm_platform.permissions import Permission


async def test_a_form_without_the_csrf_token_is_refused(console_client: httpx.AsyncClient, user: User) -> None:
    csrf = await signed_in(console_client, user)
    refused = await console_client.post("/preferences", data={"language": "zh-CN"})
    assert refused.status_code == 403
    assert "Form expired" in refused.text
    wrong = await console_client.post("/preferences", data={"language": "zh-CN"}, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    # Sign-out is a POST too: without the token it does not happen.
    assert (await console_client.post("/logout")).status_code == 403
    assert (await console_client.get("/")).status_code == 200
    accepted = await console_client.post("/preferences", data={"language": "zh-CN", "csrf_token": csrf})
    assert accepted.status_code == 303
    header = await console_client.post("/preferences", data={"language": "en"}, headers={"X-CSRF-Token": csrf})
    assert header.status_code == 303


async def test_login_without_a_session_is_refused(console_client: httpx.AsyncClient, user: User) -> None:
    answer = await console_client.post("/login", data={"email": user.email, "password": user.password})
    assert answer.status_code == 403


async def test_pages_need_a_signed_in_user(console_client: httpx.AsyncClient) -> None:
    answer = await console_client.get("/customers?tier=A")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/customers%3Ftier%3DA"
    htmx = await console_client.get("/customers/rows", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"].startswith("/login")


async def test_an_unknown_record_is_a_not_found_page(console_client: httpx.AsyncClient, user: User) -> None:
    await signed_in(console_client, user)
    answer = await console_client.get("/customers/no-such-customer")
    assert answer.status_code == 404
    assert "Not found" in answer.text


async def test_health_and_readiness(console_client: httpx.AsyncClient, stack: Stack) -> None:
    assert (await console_client.get("/healthz")).status_code == 200
    ready = await console_client.get("/readyz")
    # Only the services in the harness (stack.urls) run: any other is named as missing.
    absent = [name for name in UPSTREAMS if name not in stack.urls]
    failing = ready.json().get("failing", [])
    assert not any(f.startswith(("store", *stack.urls)) for f in failing), failing
    if absent:
        assert ready.status_code == 503
        assert all(any(f.startswith(name) for f in failing) for name in absent), failing
    else:
        assert ready.status_code == 200, failing


def test_every_message_exists_in_both_languages() -> None:
    catalogue = catalogue_for(discover())
    assert catalogue.missing() == {}


def test_a_catalogue_may_only_define_its_own_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "messages.json"
    path.write_text('{"en": {"other.key": "x"}}')
    try:
        Catalogue().load("mine", path)
    except ValueError as exc:
        assert "must start with 'mine.'" in str(exc)
    else:
        raise AssertionError("a foreign key was accepted")


def test_the_menu_shows_what_the_roles_may_use() -> None:
    groups = discover()
    assert [e.href for e in menu_for(groups, ["rep"])][:2] == ["/", "/customers"]
    assert [e.href for e in menu_for(groups, ["integrator"])] == ["/"]


def test_the_menu_follows_the_permissions_the_directory_granted() -> None:
    """A custom role holding only customers:view (as the directory's token answer lists it) sees
    the customers menu and not the admin pages; the same user's built-in role names say nothing."""
    groups = discover()
    viewer = SessionUser(id="u", name="U", email="u@example.com", roles=["viewer"], permissions=["customers:view"])
    hrefs = [e.href for e in menu_for(groups, viewer)]
    assert "/customers" in hrefs and "/admin" not in hrefs and "/pipeline" not in hrefs
    assert may(viewer, Permission.customers_view) and not may(viewer, Permission.customers_create)
    # A role the directory narrowed: a "manager" whose definition grants only customers:view.
    narrowed = SessionUser(id="m", name="M", email="m@example.com", roles=["manager"], permissions=["customers:view"])
    assert not may(narrowed, Permission.customers_assign)
    # A session stored before the directory sent permissions: the built-in roles' defaults.
    old = SessionUser(id="a", name="A", email="a@example.com", roles=["admin"])
    assert "/admin" in [e.href for e in menu_for(groups, old)]
    assert reaches_beyond_own(old, "opportunities") and not reaches_beyond_own(viewer, "opportunities")
    scoped = SessionUser(
        id="s", name="S", email="s@example.com", roles=["lead"], permissions=[], scopes={"opportunities": "department"}
    )
    assert reaches_beyond_own(scoped, "opportunities") and not reaches_beyond_own(scoped, "users")


def test_times_are_shown_in_the_users_zone() -> None:
    assert format_datetime("2026-12-03T01:30:00Z", "Asia/Shanghai") == "2026-12-03 09:30"
    assert format_datetime("2026-12-03T01:30:00+00:00", "Europe/London") == "2026-12-03 01:30"
    assert format_datetime(None, "Asia/Shanghai") == ""
    assert format_datetime("2026-12-03T01:30:00Z", "Not/AZone") == "2026-12-03 01:30"  # unknown zone: UTC


async def test_metrics_count_pages_by_route_and_time_the_services(
    console_client: httpx.AsyncClient, user: User
) -> None:
    await signed_in(console_client, user)
    assert (await console_client.get("/customers/no-such-customer")).status_code == 404
    text = (await console_client.get("/metrics")).text
    # By the route's template, never the raw URL (one series per page, not per record).
    assert re.search(
        r'crm_http_requests_total\{method="GET",route="/customers/\{customer_id\}",status="404"\} \d', text
    )
    assert "no-such-customer" not in text
    assert re.search(r'crm_console_upstream_seconds_count\{method="GET",service="customers",status="404"\} \d', text)


async def test_session_indexes_are_built_once_the_store_answers() -> None:
    class Store:  # a session store whose database answers on the third try
        calls = 0

        async def ensure_indexes(self) -> None:
            Store.calls += 1
            if Store.calls < 3:
                raise ServerSelectionTimeoutError("store down")

    await asyncio.wait_for(_ensure_indexes_when_reachable(Store(), first_pause=0.01), timeout=5)  # type: ignore[arg-type]
    assert Store.calls == 3


async def test_a_custom_role_sees_the_menus_its_permissions_grant(
    console_client: httpx.AsyncClient, stack: Stack
) -> None:
    """Through the real directory: a role holding only customers:view signs in, sees the customers
    menu and no admin or pipeline entry, and the admin pages refuse it."""
    role_id = f"viewer-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        r = await directory.post(
            "/v1/roles",
            json={"id": role_id, "names": {"zh-CN": "只读", "en": "Viewer"}, "permissions": ["customers:view"]},
            headers=stack.admin_headers,
        )
        assert r.status_code == 201, r.text
    viewer = await stack.new_user(roles=[role_id])
    await signed_in(console_client, viewer)
    home = await console_client.get("/")
    assert home.status_code == 200, home.text
    assert 'href="/customers"' in home.text
    assert 'href="/admin"' not in home.text and 'href="/pipeline"' not in home.text
    assert (await console_client.get("/admin/users")).status_code == 403
