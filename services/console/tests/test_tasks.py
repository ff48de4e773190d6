"""Browser journey of the tasks page group: my follow-ups today / overdue / this week from the real
interactions service; completing and rescheduling a task show in the list at once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the console's default zone, in which "today" is counted


async def seed_task(stack: Stack, token: str, title: str, due: datetime) -> None:
    async with httpx.AsyncClient(base_url=stack.urls["interactions"]) as interactions:
        answer = await interactions.post(
            "/v1/tasks",
            json={"title": title, "due_at": due.isoformat(), "notes": "带上报价单"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 201, answer.text


async def test_my_tasks_today_overdue_and_this_week_complete_and_reschedule(
    page: Any, stack: Stack, user: User
) -> None:
    token = await stack.token_for(user)
    now = datetime.now(SHANGHAI)
    later_today = min(now + timedelta(hours=1), now.replace(hour=23, minute=59, second=0, microsecond=0))
    call = f"回电话给张总 {unique('t')}"
    visit = f"拜访客户 {unique('t')}"
    late = f"发送合同 {unique('t')}"
    await seed_task(stack, token, call, later_today)
    await seed_task(stack, token, visit, later_today)
    # The service takes no due time in the past: this one is due in a moment, and overdue after.
    await seed_task(stack, token, late, datetime.now(SHANGHAI) + timedelta(seconds=2))

    async def overdue_now() -> bool:
        async with httpx.AsyncClient(base_url=stack.urls["interactions"]) as interactions:
            answer = await interactions.get(
                "/v1/tasks", params={"view": "overdue"}, headers={"Authorization": f"Bearer {token}"}
            )
        return any(task["title"] == late for task in answer.json()["items"])

    await eventually(overdue_now, timeout=20, interval=0.5, message="the task is overdue")

    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Tasks").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My follow-ups")
    listed = page.locator("#task-list")
    await expect(listed.locator("li.task", has_text=call)).to_have_count(1)
    await expect(listed.locator("li.task", has_text=visit)).to_have_count(1)
    await screenshot(page, "tasks-today")

    # Done: gone from the list at once, and said so.
    await page.get_by_role("button", name=f"Mark “{call}” done").click()
    await expect(page.locator("#task-status")).to_have_text(f"“{call}” is done.")
    await expect(listed.locator("li.task", has_text=call)).to_have_count(0)
    await expect(listed.locator("li.task", has_text=visit)).to_have_count(1)

    # Rescheduled to the day after tomorrow: no longer today's.
    new_due = (now + timedelta(days=2)).replace(hour=10, minute=30)
    row = listed.locator("li.task", has_text=visit)
    await row.get_by_text("Reschedule", exact=True).click()
    await row.get_by_label("New due date and time").fill(new_due.strftime("%Y-%m-%dT%H:%M"))
    await row.get_by_role("button", name="Save new date").click()
    await expect(page.locator("#task-status")).to_have_text(f"“{visit}” is now due {new_due:%Y-%m-%d %H:%M}.")
    await expect(listed.locator("li.task", has_text=visit)).to_have_count(0)

    # Overdue: yesterday's task, marked as such.
    await page.get_by_role("link", name="Overdue").click()
    overdue = page.locator("#task-list li.task", has_text=late)
    await expect(overdue).to_contain_text("Overdue")
    await screenshot(page, "tasks-overdue")
    if new_due.isocalendar()[:2] == now.isocalendar()[:2]:  # the same ISO week
        await page.get_by_role("link", name="This week").click()
        await expect(page.locator("#task-list")).to_contain_text(visit)


async def test_a_task_names_its_customer(page: Any, stack: Stack, user: User) -> None:
    token = await stack.token_for(user)
    name = f"待办客户 {unique('c')}"
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        created = await customers.post(
            "/v1/customers", json={"kind": "company", "name": name}, headers={"Authorization": f"Bearer {token}"}
        )
    assert created.status_code == 201, created.text
    customer_id = created.json()["id"]
    title = f"回访 {unique('t')}"
    now = datetime.now(SHANGHAI)
    if (now + timedelta(minutes=2)).isocalendar()[:2] != now.isocalendar()[:2]:
        # The week's last two minutes in Shanghai: start in the next one (the due must be in the week asked for).
        await asyncio.sleep(121)
        now = datetime.now(SHANGHAI)
    # Due soon, and in this ISO week ("today" only unless it is the day's last minutes: ask for the week).
    due = now + timedelta(minutes=30)
    if due.isocalendar()[:2] != now.isocalendar()[:2]:
        due = now + timedelta(minutes=1)
    body = {"title": title, "due_at": due.isoformat(), "customer_id": customer_id}

    async def task_created() -> bool:  # once the interactions service has heard of the customer
        async with httpx.AsyncClient(base_url=stack.urls["interactions"]) as interactions:
            answer = await interactions.post("/v1/tasks", json=body, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code in (201, 422), answer.text
        return answer.status_code == 201

    await eventually(task_created, timeout=30, interval=0.3, message="task created")

    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.goto("/tasks?view=week")
    link = page.locator("li.task", has_text=title).locator(".task-customer")
    await expect(link).to_have_text(name)
    await expect(link).to_have_attribute("href", f"/customers/{customer_id}")
