"""Browser journey of the lead reports page (/leadreports) against the real leads and reporting
services: the funnel, the leads per source and per campaign for a rep's own leads, a period with
none, a period the service refuses shown at its field, and the page in Chinese."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique


def phone() -> str:
    return f"137{int(unique('')[-8:], 16) % 10**8:08d}"


async def lead_of(stack: Stack, token: str, company: str, source: str, qualified: bool = False) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.urls["leads"], headers=headers) as leads:
        answer = await leads.post("/v1/leads", json={"company_name": company, "phones": [phone()], "source": source})
        assert answer.status_code == 201, answer.text
        lead = answer.json()
        version = lead["version"]
        for status in ("contacted", "qualified") if qualified else ():
            moved = await leads.patch(
                f"/v1/leads/{lead['id']}", json={"status": status}, headers={"If-Match": f'"{version}"'}
            )
            assert moved.status_code == 200, moved.text
            version = moved.json()["version"]


async def test_the_lead_funnel_per_source_and_campaign_with_a_period(page: Any, stack: Stack, user: User) -> None:
    marker = unique("rep")
    token = await stack.token_for(user)
    await lead_of(stack, token, f"合肥仪表 {marker}", "referral", qualified=True)
    await lead_of(stack, token, f"芜湖电机 {marker}", "exhibition")

    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Lead reports").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Lead reports")

    async def counted() -> bool:
        await page.reload()
        return await page.locator("#step-lead .count").inner_text() == "2"

    # A rep's reports count the rep's own leads: these two (once the reports have the events).
    await eventually(counted, timeout=30, interval=0.5, message="the funnel counts the rep's two leads")
    await expect(page.locator("#step-qualified")).to_contain_text("50.0%")
    await expect(page.locator("#step-customer .count")).to_have_text("0")
    await expect(page.locator("#source-referral")).to_contain_text("Referral")
    await expect(page.locator("#source-exhibition")).to_contain_text("Exhibition")
    await expect(page.locator("#campaign-none")).to_contain_text("(no campaign)")
    await screenshot(page, "leadreports-page")

    # One source: the funnel narrows to it.
    await page.get_by_label("Source", exact=True).select_option("exhibition")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#step-lead .count")).to_have_text("1")
    await expect(page.locator("#step-qualified .count")).to_have_text("0")

    # A period with no lead of theirs, and one the service refuses (until before from) at its field.
    await page.goto("/leadreports?start=2020-01-01&end=2020-01-31")
    await expect(page.locator("#step-lead .count")).to_have_text("0")
    await expect(page.locator("#sources")).to_contain_text("No leads in this period.")
    await page.get_by_label("Entered from").fill("2026-03-10")
    await page.get_by_label("Entered until").fill("2026-03-01")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#e-end")).to_contain_text("before")
    await expect(page.locator("#funnel")).to_have_count(0)

    # The CSV comes from the reporting service through the console.
    async with page.expect_download() as download:
        await page.goto("/leadreports")
        await page.get_by_role("link", name="Download as CSV").first.click()
    assert (await download.value).suggested_filename == "lead-funnel.csv"


async def test_the_lead_reports_in_chinese(page: Any, stack: Stack) -> None:
    rep = await stack.new_user(language="zh-CN")
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto("/leadreports")
    await expect(page.get_by_role("heading", level=1)).to_have_text("线索报表")
    await expect(page.locator("#h-funnel")).to_have_text("转化漏斗")
    await expect(page.locator("#step-lead .count")).to_have_text("0")
