"""Browser journeys of the leads and campaigns pages against the real leads, customers and
directory services: a new lead and a duplicate refused at the field naming whose it is, claiming
from the lead pool (and losing a race), moving a lead on to qualified (a disqualification without
a reason refused at its field) and converting it with an opportunity until it links the customer it
became, and a campaign planned with costs (running total) and a target
segment whose link lists exactly the segment's customers."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique


def phone() -> str:
    return f"139{int(unique('')[-8:], 16) % 10**8:08d}"


async def pool_lead(stack: Stack, token: str, company: str) -> str:
    async with httpx.AsyncClient(base_url=stack.urls["leads"]) as leads:
        body = {"company_name": company, "phones": [phone()], "in_pool": True, "source": "exhibition"}
        answer = await leads.post("/v1/leads", json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def test_a_new_lead_and_a_duplicate_refused_at_the_field_with_its_owner(page: Any, user: User) -> None:
    marker = unique("lead")
    number = phone()
    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Leads", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Leads")
    await page.get_by_role("button", name="New lead").click()
    await page.get_by_label("Company *").fill(f"上海示例贸易 {marker} 有限公司")
    await page.get_by_label("Contact").fill("王经理")
    await page.get_by_label("Phones").fill(number)
    await page.get_by_label("Source").select_option("exhibition")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#done")).to_have_text("Lead entered.")
    await expect(page.locator("#lead-status")).to_have_text("New")
    await expect(page.locator("#lead-owner")).to_have_text(user.name)

    # The same phone again, under another company: 409 at the phones, naming whose lead it is.
    await page.goto("/leads/new")
    await page.get_by_label("Company *").fill(f"另一家公司 {marker}")
    await page.get_by_label("Phones").fill(number)
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#form-problem")).to_contain_text("Already entered")
    await expect(page.locator("#e-phones")).to_have_text(f"Already a lead of {user.name}: first entered owns.")
    await expect(page.get_by_label("Company *")).to_have_value(f"另一家公司 {marker}")
    # A bad email is refused at its field (422).
    await page.get_by_label("Phones").fill("")
    await page.get_by_label("Emails").fill("not-an-email")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#e-emails")).to_be_visible()
    await screenshot(page, "leads-duplicate")

    # The list shows it, filtered by status and source.
    await page.goto("/leads?status=new&source=exhibition")
    await expect(page.locator("#leads").get_by_role("link", name=f"上海示例贸易 {marker} 有限公司")).to_be_visible()


async def test_claiming_from_the_lead_pool_losing_a_race_and_qualifying(page: Any, stack: Stack, user: User) -> None:
    entrant, rival = await stack.new_user(), await stack.new_user()
    marker = unique("pool")
    mine, contested = f"东方精工 {marker}", f"华南机械 {marker}"
    token = await stack.token_for(entrant)
    await pool_lead(stack, token, mine)
    contested_id = await pool_lead(stack, token, contested)

    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Lead pool").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Lead pool")
    await expect(page.get_by_role("button", name=f"Claim {contested}")).to_be_visible()

    # Someone else claims it while the pool is on the screen.
    async with httpx.AsyncClient(base_url=stack.urls["leads"]) as leads:
        headers = {"Authorization": f"Bearer {await stack.token_for(rival)}"}
        assert (await leads.post(f"/v1/leads/{contested_id}/claim", headers=headers)).status_code == 200
    await page.get_by_role("button", name=f"Claim {contested}").click()
    await expect(page.locator("#claim-outcome")).to_have_text(
        "Someone claimed it first: this lead is no longer in the pool."
    )
    await screenshot(page, "leads-pool-race")

    await page.get_by_role("button", name=f"Claim {mine}").click()
    await expect(page.locator("#done")).to_have_text("Claimed: this lead is yours now.")
    await expect(page.locator("#lead-owner")).to_have_text(user.name)

    await page.get_by_role("button", name="Mark contacted").click()
    await expect(page.locator("#lead-status")).to_have_text("Contacted")
    # Disqualifying needs a reason: refused at the field.
    await page.get_by_role("button", name="Disqualify").click()
    await expect(page.locator("#e-reason-dq")).to_be_visible()
    await page.get_by_role("button", name="Mark qualified").click()
    await expect(page.locator("#lead-status")).to_have_text("Qualified")
    await expect(page.locator("#history")).to_contain_text("status")
    await screenshot(page, "leads-detail")

    # Converting: the form is prefilled from the lead; with an opportunity, the customers and
    # pipeline services make customer, contact and opportunity from the events, and the lead links them.
    convert = page.locator("#convert-form")
    await convert.get_by_label("Contact", exact=True).fill("王经理")
    await convert.get_by_label("Also create an opportunity").check()
    await convert.get_by_label("Amount").fill("125000.00")
    await convert.get_by_role("button", name="Convert").click()
    await expect(page.locator("#done")).to_have_text("Conversion requested: the customer is being created.")
    await expect(page.locator("#convert-form")).to_have_count(0)

    async def converted() -> bool:
        await page.reload()
        return await page.locator("#lead-status").inner_text() == "Converted"

    await eventually(converted, timeout=60, interval=0.5, message="the lead reads Converted")
    await expect(page.locator("#to-customer")).to_be_visible()
    await expect(page.locator("#to-opportunity")).to_be_visible()
    await screenshot(page, "leads-converted")
    await page.locator("#to-customer").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(mine)


async def test_a_campaign_with_costs_and_a_segment_listing_its_customers(page: Any, stack: Stack) -> None:
    manager = await stack.new_user(roles=["manager"])
    marker = unique("seg")
    vip = f"VIP-{marker}"
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        headers = {"Authorization": f"Bearer {await stack.token_for(manager)}"}
        for name, tier in ((f"嘉定精密 {marker}", "A"), (f"松江模具 {marker}", "B")):
            body = {"kind": "company", "name": name, "tags": [vip], "tier": tier}
            assert (await customers.post("/v1/customers", json=body, headers=headers)).status_code == 201

    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Campaigns").click()
    await page.get_by_role("button", name="New campaign").click()
    await page.get_by_label("Name *").fill(f"2026 春季展会 {marker}")
    await page.get_by_label("Channel").select_option("exhibition")
    await page.get_by_label("Budget").fill("120000.005")
    await page.get_by_label("Starts").fill("2026-03-01")
    await page.get_by_label("Ends").fill("2026-03-03")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#e-budget\\.amount")).to_contain_text("2 digits")
    await page.get_by_label("Budget").fill("120000")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#done")).to_have_text("Campaign planned.")
    await expect(page.locator("#campaign-budget")).to_have_text("120000.00 CNY")

    costs = page.locator("#cost-form")
    for amount, day in (("3000.00", "2026-03-01"), ("1500.50", "2026-03-02")):
        await costs.get_by_label("Amount (CNY)").fill(amount)
        await costs.get_by_label("Day").fill(day)
        await costs.get_by_label("Note").fill("展位")
        await costs.get_by_role("button", name="Add the cost").click()
        await expect(page.locator("#done")).to_have_text("Cost recorded.")
    await expect(page.locator("#cost-total")).to_have_text("4500.50 CNY")
    await expect(page.locator("#costs tbody tr").last).to_contain_text("4500.50 CNY")

    segment = page.locator("#segment-form")
    await segment.get_by_label("Tags, all of (comma-separated)").fill(vip)
    await segment.get_by_label("Tier").select_option("A")
    await segment.get_by_role("button", name="Save the segment").click()
    await expect(page.locator("#done")).to_have_text("Segment saved.")
    await expect(segment.get_by_label("Tags, all of (comma-separated)")).to_have_value(vip)
    await screenshot(page, "campaigns-detail")

    await page.get_by_role("link", name="Show the segment's customers").click()
    await expect(page).to_have_url(re.compile(r"/customers\?tags_all=VIP"))
    await expect(page.get_by_role("link", name=f"嘉定精密 {marker}")).to_be_visible()
    await expect(page.get_by_role("link", name=f"松江模具 {marker}")).to_have_count(0)


async def test_the_pages_in_chinese_and_buttons_only_for_who_may(page: Any, stack: Stack) -> None:
    rep = await stack.new_user(language="zh-CN")
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    menu = page.get_by_role("navigation", name=re.compile("."))
    await menu.get_by_role("link", name="线索", exact=True).first.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("线索")
    await expect(page.get_by_role("button", name="新建线索")).to_be_visible()
    await page.goto("/campaigns")
    await expect(page.get_by_role("heading", level=1)).to_have_text("市场活动")
    # A rep sees campaigns but may not plan one: no button.
    await expect(page.locator("#new-campaign")).to_have_count(0)
