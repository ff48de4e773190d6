"""Inbox journeys: notifications from real events (a customer assigned to the person), mark one
and all read with the header badge following, the badge polling on its own, email preferences."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot
from crm_platform.testing.fixtures import eventually, unique


async def assign_new_customer(stack: Stack, user: User) -> str:
    """An administrator creates a customer and gives it to ``user``: the notifications service
    turns the owner change into a "customer assigned" notification for them."""
    name = f"通知客户 {unique('c')}"
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as client:
        created = await client.post("/v1/customers", json={"kind": "company", "name": name})
        assert created.status_code == 201, created.text
        body = {"owner_id": user.id, "department_id": "hq", "department_path": "/hq"}
        assigned = await client.post(f"/v1/customers/{created.json()['id']}/assign", json=body)
        assert assigned.status_code == 200, assigned.text
    return name


async def unread_reaches(stack: Stack, user: User, count: int) -> None:
    token = await stack.token_for(user)
    async with httpx.AsyncClient(
        base_url=stack.urls["notifications"], headers={"Authorization": f"Bearer {token}"}
    ) as client:

        async def probe() -> bool:
            answer = await client.get("/v1/notifications/unread-count")
            return answer.status_code == 200 and answer.json()["unread"] == count

        await eventually(probe, timeout=30, message=f"{count} unread notifications")


async def test_notifications_are_read_one_by_one_and_all_at_once_with_the_badge_following(
    signed_in_page: Any, stack: Stack, user: User
) -> None:
    page = signed_in_page
    first = await assign_new_customer(stack, user)
    second = await assign_new_customer(stack, user)
    await unread_reaches(stack, user, 2)

    await page.clock.install()
    await page.goto("/inbox")
    await expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    await expect(page.locator("#inbox-summary")).to_have_text("Unread: 2")
    await expect(page.locator("#unread-count")).to_have_text("2 unread")
    first_row = page.locator("li.notification", has_text=first)
    await expect(first_row).to_be_visible()
    await expect(page.locator("li.notification", has_text=second)).to_be_visible()
    await expect(first_row).to_contain_text("Customer assigned to you")
    await screenshot(page, "inbox-list")

    await first_row.get_by_role("button", name="Mark as read").click()
    await expect(first_row.get_by_role("button", name="Mark as read")).to_have_count(0)
    await expect(first_row).to_contain_text("Read ")
    await expect(page.locator("#unread-count")).to_have_text("1 unread")  # refreshed at once, not at the next poll

    # A new notification arrives while the page is open: the badge's next poll (every 15 s) shows it.
    third = await assign_new_customer(stack, user)
    await unread_reaches(stack, user, 2)
    await page.clock.fast_forward(16_000)
    await expect(page.locator("#unread-count")).to_have_text("2 unread")

    await page.get_by_role("link", name="Unread only").click()
    await expect(page.locator("li.notification", has_text=third)).to_be_visible()
    await expect(page.locator("li.notification", has_text=first)).to_have_count(0)

    await page.get_by_role("button", name="Mark all as read").click()
    await expect(page.locator("#inbox-summary")).to_have_text("Unread: 0")
    await expect(page.locator("#unread-count")).to_have_count(0)
    await expect(page.locator("#no-notifications")).to_be_visible()  # the unread view is empty now
    await page.get_by_role("link", name="All", exact=True).click()
    await expect(page.locator("li.notification")).to_have_count(3)
    await expect(page.get_by_role("button", name="Mark as read")).to_have_count(0)


async def test_email_preferences_are_chosen_per_kind_and_kept(signed_in_page: Any, stack: Stack, user: User) -> None:
    page = signed_in_page
    await page.goto("/inbox")
    await page.get_by_role("link", name="Email settings").click()
    await expect(page.get_by_role("heading", name="Notification settings")).to_be_visible()
    assigned = page.get_by_label("Email for: Customer assigned to you")
    overdue = page.get_by_label("Email for: Task overdue")
    was_assigned, was_overdue = await assigned.is_checked(), await overdue.is_checked()
    await screenshot(page, "inbox-preferences")

    await assigned.set_checked(not was_assigned)
    await overdue.set_checked(not was_overdue)
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Your settings are saved.")
    await page.reload()
    await expect(assigned).to_be_checked(checked=not was_assigned)
    await expect(overdue).to_be_checked(checked=not was_overdue)

    token = await stack.token_for(user)
    async with httpx.AsyncClient(base_url=stack.urls["notifications"]) as client:
        answer = await client.get("/v1/me/notification-preferences", headers={"Authorization": f"Bearer {token}"})
    assert answer.json()["email"]["customer_assigned"] is (not was_assigned)
    assert answer.json()["email"]["task_overdue"] is (not was_overdue)


async def test_the_inbox_in_chinese(page: Any, stack: Stack) -> None:
    from crm_console.testing import sign_in

    person = await stack.new_user(language="zh-CN")
    await assign_new_customer(stack, person)
    await unread_reaches(stack, person, 1)
    await sign_in(page, person)
    await page.wait_for_url("**/")
    await page.goto("/inbox")
    await expect(page.get_by_role("heading", name="消息通知")).to_be_visible()
    await expect(page.locator("li.notification").first).to_contain_text("客户分配给您")
    await expect(page.get_by_role("button", name="全部标为已读")).to_be_visible()
    await screenshot(page, "inbox-list-zh")
