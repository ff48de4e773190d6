"""Browser journey of the pool page group: the public pool's list and filters, claiming (and losing a
race, told who won by name), and my customers with the days before each returns to the pool, against
the real customers, pool and directory services."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique


async def pool_customer(stack: Stack, token: str, name: str) -> str:
    """A customer its first owner released into the pool."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        created = await customers.post(
            "/v1/customers", json={"kind": "company", "name": name, "industry": "制造业"}, headers=headers
        )
        assert created.status_code == 201, created.text
        customer_id = str(created.json()["id"])
        released = await customers.post(
            f"/v1/customers/{customer_id}/release", json={"reason": "无暇跟进"}, headers=headers
        )
        assert released.status_code == 200, released.text
    return customer_id


async def test_claiming_from_the_pool_says_who_won_a_race_and_my_customers_count_down(
    page: Any, stack: Stack, user: User
) -> None:
    async with httpx.AsyncClient(base_url=stack.urls["pool"]) as pool:
        rule = {"name": "总部 30 天未跟进回收", "department_path": "/hq", "no_interaction_days": 30, "warn_days": 3}
        answer = await pool.post("/v1/pool/rules", json=rule, headers=stack.admin_headers)
        assert answer.status_code in (201, 409), answer.text
    releaser = await stack.new_user()
    rival = await stack.new_user(name=f"张三 {unique('z')}")
    marker = unique("pool")
    mine = f"东方精工 {marker}"
    contested = f"华南机械 {marker}"
    await pool_customer(stack, await stack.token_for(releaser), mine)
    contested_id = await pool_customer(stack, await stack.token_for(releaser), contested)
    contested_zh = f"西部重工 {marker}"
    contested_zh_id = await pool_customer(stack, await stack.token_for(releaser), contested_zh)

    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Public pool").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Public pool")
    await page.get_by_label("Name contains").fill(marker)
    await page.get_by_label("Industry").fill("制造业")
    await page.get_by_role("button", name="Apply").click()
    rows = page.locator("#pool-rows tr:not(#load-more-row)")
    await expect(rows).to_have_count(3)
    await screenshot(page, "pool-list")

    # Someone else claims one while this list is on the screen.
    await claim_as(stack, rival, contested_id)

    await page.get_by_role("button", name=f"Claim {mine}").click()
    await expect(rows.filter(has_text=mine)).to_contain_text("Claimed: this customer is yours now.")
    await page.get_by_role("button", name=f"Claim {contested}").click()
    await expect(rows.filter(has_text=contested)).to_contain_text(f"Already claimed by {rival.name}.")
    await screenshot(page, "pool-claim-race")

    # My customers: once the pool service has learnt of the claim from the customers' events.
    counted_by_pool: dict[str, Any] = {}

    async def counted() -> bool:
        async with httpx.AsyncClient(base_url=stack.urls["pool"]) as pool:
            answer = await pool.get(
                "/v1/pool/my-customers", headers={"Authorization": f"Bearer {await stack.token_for(user)}"}
            )
        found = [item for item in answer.json()["items"] if item["name"] == mine]
        counted_by_pool.update(found[0] if found else {})
        return bool(found)

    await eventually(counted, timeout=30, interval=0.5, message="the pool counts the claimed customer down")
    await page.goto("/pool")
    await page.get_by_role("link", name="My customers and their countdown").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My customers")
    row = page.locator("#my-customers tbody tr", has_text=mine)
    # The rule the pool applies: this test's 30-day rule, or another rule for /hq that a journey
    # earlier in the session saved (the admin's 7-day one); the page says what the pool says.
    days, rule_name = counted_by_pool["days_left"], counted_by_pool["rule_name"]
    assert rule_name and days is not None and days <= 30
    await expect(row.locator(".days-left")).to_have_text(re.compile(rf"\b({days}|{days + 1}|{days - 1}) days?\b"))
    await expect(row).to_contain_text(rule_name)
    await screenshot(page, "pool-my-customers")

    # In Chinese, the race's answer names the winner the same way.
    await page.get_by_role("button", name="中文").click()
    await page.goto(f"/pool?q={marker}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("公海")
    await claim_as(stack, rival, contested_zh_id)
    await page.get_by_role("button", name=f"领取 {contested_zh}").click()
    await expect(rows.filter(has_text=contested_zh)).to_contain_text(f"已被 {rival.name} 领取。")
    await screenshot(page, "pool-claim-race-zh")


async def claim_as(stack: Stack, person: User, customer_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        won = await customers.post(
            f"/v1/customers/{customer_id}/claim",
            headers={"Authorization": f"Bearer {await stack.token_for(person)}"},
        )
    assert won.status_code == 200, won.text
