"""Browser journeys through the console: sign-in, token refresh, sign-out, language, customers list."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, sign_in
from crm_platform.testing.fixtures import unique


async def test_wrong_password_shows_the_error_and_keeps_the_email(page: Any, user: User) -> None:
    await sign_in(page, user, password="not the password at all")
    await expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
    await expect(page.get_by_label("Email")).to_have_value(user.email)


async def test_sign_in_lands_on_the_home_page_with_a_menu_for_the_role(signed_in_page: Any, user: User) -> None:
    page = signed_in_page
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {user.name}")
    menu = page.get_by_role("navigation", name="Main menu")
    await expect(menu.get_by_role("link", name="Customers")).to_be_visible()


async def test_signing_in_sends_the_person_back_where_they_were_going(page: Any, user: User) -> None:
    await page.goto("/customers?tier=A")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await sign_in_here(page, user)
    await expect(page).to_have_url(re.compile(r"/customers\?tier=A$"))


async def sign_in_here(page: Any, user: User) -> None:
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(user.password)
    await page.get_by_role("button", name="Sign in").click()


async def test_an_expired_access_token_is_refreshed_without_the_person_noticing(
    signed_in_page: Any, stack: Stack
) -> None:
    page = signed_in_page
    cookie = next(c for c in await page.context.cookies() if c["name"] == "crm_console_session")
    before = await stack.sessions.find_one({"_id": cookie["value"]})
    # Expired by the clock: refreshed before the call.
    await stack.sessions.update_one({"_id": cookie["value"]}, {"$set": {"access_expires_at": 0}})
    await page.goto("/customers")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Customers")
    after = await stack.sessions.find_one({"_id": cookie["value"]})
    assert after["refresh_token"] != before["refresh_token"]
    # Refused by the service (a token it does not accept): refreshed after the 401, and retried.
    await stack.sessions.update_one({"_id": cookie["value"]}, {"$set": {"access_token": "not-a-jwt"}})
    await page.goto("/customers")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Customers")
    again = await stack.sessions.find_one({"_id": cookie["value"]})
    assert again["access_token"] != "not-a-jwt"


async def test_sign_out_ends_the_session_and_revokes_the_refresh_token(signed_in_page: Any, stack: Stack) -> None:
    page = signed_in_page
    cookie = next(c for c in await page.context.cookies() if c["name"] == "crm_console_session")
    refresh_token = (await stack.sessions.find_one({"_id": cookie["value"]}))["refresh_token"]
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    assert await stack.sessions.find_one({"_id": cookie["value"]}) is None
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        answer = await directory.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert answer.status_code == 401
    await page.goto("/customers")
    await expect(page).to_have_url(re.compile(r"/login\?next="))


async def test_the_language_switches_between_chinese_and_english_and_is_remembered(
    signed_in_page: Any, stack: Stack, user: User
) -> None:
    page = signed_in_page
    await page.get_by_role("button", name="中文").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"欢迎，{user.name}")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await page.goto("/customers")
    await expect(page.get_by_role("heading", level=1)).to_have_text("客户")
    # Saved to the directory profile too, so the next sign-in starts in Chinese.
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        me = await directory.get("/v1/me", headers={"Authorization": f"Bearer {await stack.token_for(user)}"})
    assert me.json()["language"] == "zh-CN"
    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Customers")


async def test_customers_list_filters_and_loads_the_next_page(signed_in_page: Any, stack: Stack, user: User) -> None:
    page = signed_in_page
    token = await stack.token_for(user)
    marker = unique("mk")
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        for i in range(23):
            answer = await customers.post(
                "/v1/customers",
                json={"kind": "person", "name": f"客户{marker}{i:02d}", "tier": "A" if i % 2 == 0 else "B"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 201, answer.text
    await page.goto("/customers")
    await page.get_by_label("Name contains").fill(marker)
    await page.get_by_label("Tier").select_option("A")
    await page.get_by_label("Sort by").select_option("name")
    await page.get_by_role("button", name="Apply").click()
    rows = page.locator("#customer-rows tr:not(#load-more-row)")
    await expect(rows).to_have_count(12)  # 0, 2, … 22: twelve with tier A, all on the first page (20)
    await expect(page.locator("#load-more")).to_have_count(0)
    await expect(rows.first).to_contain_text(f"客户{marker}00")

    await page.get_by_label("Tier").select_option("")
    await page.get_by_role("button", name="Apply").click()
    await expect(rows).to_have_count(20)
    await page.locator("#load-more").click()
    await expect(rows).to_have_count(23)
    await expect(rows.last).to_contain_text(f"客户{marker}22")
    await expect(page.locator("#load-more")).to_have_count(0)

    await rows.first.get_by_role("link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"客户{marker}00")


async def test_a_field_the_service_refuses_is_marked_next_to_the_field(signed_in_page: Any) -> None:
    page = signed_in_page
    await page.goto("/customers")
    await page.get_by_label("Name contains").fill("x" * 101)  # the service takes 100 at most
    await page.get_by_role("button", name="Apply").click()
    field = page.get_by_label("Name contains")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#e-q")).to_contain_text("100")


async def test_the_time_zone_is_kept_in_the_profile_for_the_next_sign_in(
    signed_in_page: Any, browser: Any, stack: Stack, user: User
) -> None:
    page = signed_in_page
    await page.goto("/preferences")
    await page.get_by_label("Time zone").select_option("Europe/London")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_label("Time zone")).to_have_value("Europe/London")
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        me = await directory.get("/v1/me", headers={"Authorization": f"Bearer {await stack.token_for(user)}"})
    assert me.json()["time_zone"] == "Europe/London"
    # Another browser, a new sign-in: the zone comes from the profile, not from this session.
    context = await browser.new_context(base_url=stack.console_url, locale="en-US", timezone_id="Asia/Shanghai")
    try:
        other = await context.new_page()
        await sign_in(other, user)
        await other.wait_for_url("**/")
        await other.goto("/preferences")
        await expect(other.get_by_label("Time zone")).to_have_value("Europe/London")
        await expect(other.get_by_text("Times are shown in Europe/London")).to_be_visible()
    finally:
        await context.close()
