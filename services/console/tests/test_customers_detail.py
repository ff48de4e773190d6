"""Browser journeys of one customer's page (客户 360), against the real customers, pipeline,
interactions, reporting and directory services.

Data is seeded through the services' APIs as the signed-in user; the other services learn of a
new customer from its events, so seeding waits until each has it (a deadline, never a sleep).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import unique


class Seed:
    """The services' APIs as one user (to prepare what a journey starts from)."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.stack = stack
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.stack.urls[service], headers=self.headers) as client:
            return await client.request(method, path, **kwargs)

    async def ok(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        answer = await self.call(service, method, path, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer.json()

    async def customer(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"kind": "company", "name": name, **fields}
        created: dict[str, Any] = await self.ok("customers", "POST", "/v1/customers", json=body)
        return created

    async def known_to(self, service: str, path: str, timeout: float = 30.0) -> None:
        """Wait until ``service`` answers 200 for ``path`` (it has received the customer's events)."""
        await until(lambda: self._answers(service, path), timeout, f"{service} {path}")

    async def _answers(self, service: str, path: str) -> bool:
        return (await self.call(service, "GET", path)).status_code == 200


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def seed_for(stack: Stack, user: User) -> Seed:
    return Seed(stack, await stack.token_for(user))


async def test_the_360_view_shows_everything_about_a_customer_and_manages_contacts(
    stack: Stack, signed_in_page: Any, user: User
) -> None:
    page = signed_in_page
    seed = await seed_for(stack, user)
    name = unique("星河科技有限公司")
    customer = await seed.customer(name, industry="制造业", tier="B", phones=["+8613800138000"])
    cid = customer["id"]
    await seed.ok(
        "customers", "POST", f"/v1/customers/{cid}/contacts", json={"name": "王经理", "role": "decision_maker"}
    )
    changed = await seed.call("customers", "GET", f"/v1/customers/{cid}")
    await seed.ok(
        "customers",
        "PATCH",
        f"/v1/customers/{cid}",
        json={"industry": "软件"},
        headers={"If-Match": changed.headers["ETag"]},
    )
    await seed.known_to("pipeline", f"/v1/opportunities?customer_id={cid}")
    await until(lambda: _opportunity(seed, cid, "ERP 升级项目"), 30, "the opportunity")
    await seed.known_to("interactions", f"/v1/customers/{cid}/interactions")
    now = "2026-12-01T10:00:00+08:00"
    await seed.ok(
        "interactions",
        "POST",
        "/v1/interactions",
        json={"customer_id": cid, "channel": "visit", "occurred_at": now, "summary": "上门演示，客户很感兴趣"},
    )
    await seed.ok(
        "interactions",
        "POST",
        "/v1/tasks",
        json={"customer_id": cid, "title": "发送报价单", "due_at": "2030-01-05T09:00:00+08:00"},
    )
    await seed.ok(
        "interactions",
        "POST",
        "/v1/feedback",
        json={"customer_id": cid, "kind": "complaint", "title": "交付延迟", "description": "上次交付晚了两天"},
    )
    await seed.known_to("reporting", f"/v1/customers/{cid}/timeline")

    await page.goto(f"/customers/{cid}")
    await expect(page.locator("#customer-name")).to_have_text(name)
    await expect(page.locator("#p-industry")).to_have_text("软件")
    await expect(page.locator("#contact-list")).to_contain_text("王经理")
    await expect(page.locator("#contact-list")).to_contain_text("Decision maker")
    await expect(page.locator("#opportunities")).to_contain_text("ERP 升级项目")
    await expect(page.locator("#followups")).to_contain_text("上门演示，客户很感兴趣")
    await expect(page.locator("#tasks")).to_contain_text("发送报价单")
    await expect(page.locator("#feedback")).to_contain_text("交付延迟")
    industry_row = page.locator("#history-table tr", has_text="Industry").first
    await expect(industry_row).to_contain_text("制造业")
    await expect(industry_row).to_contain_text("软件")
    await expect(industry_row.locator(".cd-old")).to_have_text("制造业")
    await expect(industry_row.locator(".cd-new")).to_have_text("软件")
    # The timeline comes from reporting's projections: wait for the follow-up to reach it.
    for _ in range(60):
        if await page.locator("#timeline").get_by_text("Follow-up", exact=True).count():
            break
        await asyncio.sleep(0.5)
        await page.reload()
    await expect(page.locator("#timeline-list")).to_contain_text("Customer created")
    await expect(page.locator("#timeline-list")).to_contain_text("Follow-up")
    await screenshot(page, "customers_detail-360")

    # Add a contact, change their role, remove them.
    await page.locator("#add-contact summary").click()
    form = page.locator("#add-contact form")
    await form.get_by_label("Contact name").fill("李工")
    await form.get_by_label("Role").select_option("handler")
    await form.get_by_label("Job title").fill("IT 主管")
    await form.get_by_role("button", name="Save the contact").click()
    await expect(page.locator("#notice")).to_contain_text("Contact added.")
    card = page.locator("#contact-list li", has_text="李工")
    await expect(card).to_contain_text("Handler")
    await card.get_by_role("link", name="Edit contact 李工").click()
    await page.get_by_label("Role").select_option("influencer")
    await page.get_by_role("button", name="Save the contact").click()
    await expect(page.locator("#notice")).to_contain_text("Contact saved.")
    await expect(page.locator("#contact-list li", has_text="李工")).to_contain_text("Influencer")
    card = page.locator("#contact-list li", has_text="李工")
    await card.get_by_text("Remove", exact=True).click()
    await card.get_by_role("button", name="Remove 李工").click()
    await expect(page.locator("#notice")).to_contain_text("Contact removed.")
    await expect(page.locator("#contact-list")).not_to_contain_text("李工")
    await expect(page.locator("#contact-list")).to_contain_text("王经理")


async def _opportunity(seed: Seed, customer_id: str, name: str) -> bool:
    answer = await seed.call("pipeline", "POST", "/v1/opportunities", json={"name": name, "customer_id": customer_id})
    return answer.status_code == 201


async def test_editing_shows_field_errors_and_explains_a_conflicting_change(
    stack: Stack, signed_in_page: Any, user: User
) -> None:
    page = signed_in_page
    seed = await seed_for(stack, user)
    customer = await seed.customer(unique("远航贸易"), industry="贸易")
    cid = customer["id"]

    await page.goto(f"/customers/{cid}")
    await page.get_by_role("button", name="Edit").click()
    await page.get_by_label("Unified social credit code").fill("91110000XXXXXXXXX1")
    await page.get_by_role("button", name="Save").click()
    uscc = page.get_by_label("Unified social credit code")
    await expect(uscc).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#e-uscc")).not_to_be_empty()
    await expect(page.get_by_role("alert")).to_contain_text("Please correct the fields marked below.")
    await uscc.fill("")

    # Someone else changes the customer between this page's load and its save.
    current = await seed.call("customers", "GET", f"/v1/customers/{cid}")
    await seed.ok(
        "customers",
        "PATCH",
        f"/v1/customers/{cid}",
        json={"industry": "物流"},
        headers={"If-Match": current.headers["ETag"]},
    )
    await page.get_by_label("Industry").fill("零售")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("Someone changed this customer since you opened it")
    await expect(page.get_by_label("Industry")).to_have_value("零售")  # what was typed is kept
    await screenshot(page, "customers_detail-edit-conflict")
    await page.get_by_role("button", name="Reload the current version").click()
    await expect(page.get_by_label("Industry")).to_have_value("物流")
    await page.get_by_label("Industry").fill("零售")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#notice")).to_contain_text("Profile saved.")
    await expect(page.locator("#p-industry")).to_have_text("零售")
    row = page.locator("#history-table tr", has_text="零售").first
    await expect(row.locator(".cd-old")).to_have_text("物流")


async def test_lock_copy_delete_restore_and_merge_with_refusals_shown(stack: Stack, browser: Any, user: User) -> None:
    seed = await seed_for(stack, user)
    name = unique("青松建材")
    cid = (await seed.customer(name))["id"]
    context = await browser.new_context(base_url=stack.console_url, locale="en-US", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    try:
        page = await context.new_page()
        await sign_in(page, user)
        await page.wait_for_url("**/")
        await page.goto(f"/customers/{cid}")

        # Lock: the page says so, and an edit is refused with the reason.
        await page.locator("#lock-menu summary").click()
        await page.get_by_label("Reason (optional)").first.fill("合同审核中")
        await page.get_by_role("button", name="Lock this customer").click()
        await expect(page.locator("#notice")).to_contain_text("Locked")
        await expect(page.locator("#lock-banner")).to_contain_text("合同审核中")
        await page.get_by_role("button", name="Edit").click()
        await page.get_by_label("Industry").fill("建材")
        await page.get_by_role("button", name="Save").click()
        await expect(page.get_by_role("alert")).to_contain_text("This customer is locked")
        await page.goto(f"/customers/{cid}")
        await page.get_by_role("button", name="Unlock").click()
        await expect(page.locator("#notice")).to_contain_text("Unlocked.")

        # A rep may not delete: the service's refusal is shown on the page.
        await page.locator("#delete-menu summary").click()
        await page.get_by_role("button", name="Move to the recycle bin").click()
        await expect(page.get_by_role("alert")).to_contain_text("Not allowed")
        await expect(page.get_by_role("alert")).to_contain_text("deleting customers needs a wider scope")

        # Copy: a new customer with the same profile, opened at once.
        await page.get_by_role("button", name="Copy").click()
        await page.get_by_label("Name of the new customer").fill(name)
        await page.get_by_role("button", name="Create the copy").click()
        await expect(page.locator("#e-name")).not_to_be_empty()  # a duplicate name is refused at the field
        copy_name = unique("青松建材分公司")
        await page.get_by_label("Name of the new customer").fill(copy_name)
        await page.get_by_role("button", name="Create the copy").click()
        await expect(page.locator("#customer-name")).to_have_text(copy_name)
        await expect(page.locator("#notice")).to_contain_text("Copy created")
    finally:
        await context.close()

    # A manager deletes (to the recycle bin), restores, and merges a duplicate in.
    manager = await stack.new_user(roles=["manager"])
    boss = await seed_for(stack, manager)
    dup_name = unique("青松建材 重复")
    duplicate = await boss.customer(dup_name)
    context = await browser.new_context(base_url=stack.console_url, locale="en-US", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    try:
        page = await context.new_page()
        await sign_in(page, manager)
        await page.wait_for_url("**/")
        await page.goto(f"/customers/{cid}")
        await page.locator("#delete-menu summary").click()
        await page.locator("#delete-reason").fill("测试删除")
        await page.get_by_role("button", name="Move to the recycle bin").click()
        await expect(page.locator("#deleted-banner")).to_contain_text("测试删除")
        await screenshot(page, "customers_detail-recycle-bin")
        await page.get_by_role("button", name="Restore from the recycle bin").click()
        await expect(page.locator("#notice")).to_contain_text("Restored")

        # Merge refused: the duplicate is locked.
        await boss.ok("customers", "POST", f"/v1/customers/{duplicate['id']}/lock", json={"reason": "核对中"})
        await page.get_by_role("button", name="Merge a duplicate").click()
        await page.get_by_label("Search by name").fill(dup_name)
        await page.get_by_role("button", name="Search").click()
        await page.get_by_label(re.compile(re.escape(dup_name))).check()
        await page.get_by_role("button", name="Next: confirm").click()
        await expect(page.locator("#merge-duplicate")).to_have_text(dup_name)
        await screenshot(page, "customers_detail-merge-confirm")
        await page.get_by_role("button", name=f"Merge {dup_name} into {name}").click()
        await expect(page.get_by_role("alert")).to_contain_text("locked")

        await boss.ok("customers", "POST", f"/v1/customers/{duplicate['id']}/unlock")
        await page.get_by_role("button", name="Merge a duplicate").click()
        await page.get_by_label("Search by name").fill(dup_name)
        await page.get_by_role("button", name="Search").click()
        await page.get_by_label(re.compile(re.escape(dup_name))).check()
        await page.get_by_role("button", name="Next: confirm").click()
        await page.get_by_role("button", name=f"Merge {dup_name} into {name}").click()
        await expect(page.locator("#notice")).to_contain_text("Duplicate merged into this customer.")
        merged = await boss.call("customers", "GET", f"/v1/customers/{duplicate['id']}")
        assert merged.json().get("merged_into") == cid
    finally:
        await context.close()


async def test_previous_and_next_walk_the_list_it_came_from(stack: Stack, signed_in_page: Any, user: User) -> None:
    page = signed_in_page
    seed = await seed_for(stack, user)
    prefix = unique("邻居")
    first, second, third = [(await seed.customer(f"{prefix} {letter}"))["id"] for letter in "ABC"]
    source = urlencode({"q": prefix, "sort": "name"})

    await page.goto(f"/customers/{second}?{urlencode({'from': source})}")
    await expect(page.locator("#customer-name")).to_have_text(f"{prefix} B")
    await expect(page.locator("#back-to-list")).to_have_attribute("href", f"/customers?{source}")
    await page.locator("#next-record").click()
    await expect(page.locator("#customer-name")).to_have_text(f"{prefix} C")
    await expect(page.locator("#next-record")).to_have_count(0)  # the end of the list
    await page.locator("#previous-record").click()
    await page.locator("#previous-record").click()
    await expect(page.locator("#customer-name")).to_have_text(f"{prefix} A")
    await expect(page.locator("#previous-record")).to_have_count(0)
    assert first in page.url and f"from={urlencode({'': source})[1:]}" in page.url
    assert third


async def test_log_a_follow_up_in_two_clicks_and_create_a_task(stack: Stack, signed_in_page: Any, user: User) -> None:
    page = signed_in_page
    seed = await seed_for(stack, user)
    cid = (await seed.customer(unique("晨光文具")))["id"]
    await seed.known_to("interactions", f"/v1/customers/{cid}/interactions")

    await page.goto(f"/customers/{cid}")
    await page.get_by_role("button", name="Call").click()  # click 1: the form opens with the channel chosen
    await expect(page.locator("#log-form")).to_contain_text("New follow-up: Call")
    await page.get_by_role("button", name="Save the follow-up").click()  # click 2
    await expect(page.locator("#notice")).to_contain_text("Follow-up saved.")
    await expect(page.locator("#followup-list li")).to_have_count(1)
    await expect(page.locator("#followup-list")).to_contain_text("Call")

    await page.get_by_role("button", name="Visit").click()
    await page.get_by_label("What happened (optional)").fill("拜访采购部，确认需求")
    await screenshot(page, "customers_detail-quick-log")
    await page.get_by_role("button", name="Save the follow-up").click()
    await expect(page.locator("#followup-list")).to_contain_text("拜访采购部，确认需求")

    # A note needs its text: the refusal is shown at the field.
    await page.get_by_role("button", name="Note").click()
    await page.get_by_role("button", name="Save the follow-up").click()
    await expect(page.locator("#log-e-summary")).not_to_be_empty()

    await page.goto(f"/customers/{cid}")
    await page.get_by_role("button", name="New task").click()
    await page.get_by_label("Task", exact=True).fill("寄送样品")
    await page.get_by_role("button", name="Create the task").click()
    await expect(page.locator("#notice")).to_contain_text("Task created.")
    await expect(page.locator("#task-list")).to_contain_text("寄送样品")


async def test_the_page_in_chinese(stack: Stack, page: Any) -> None:
    user = await stack.new_user(language="zh-CN")
    seed = await seed_for(stack, user)
    cid = (await seed.customer(unique("华夏物流"), industry="物流", tier="A"))["id"]
    await seed.ok("customers", "POST", f"/v1/customers/{cid}/contacts", json={"name": "赵总", "role": "decision_maker"})
    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.goto(f"/customers/{cid}")
    await expect(page.locator("#contact-list")).to_contain_text("决策人")
    await expect(page.get_by_role("heading", name="变更历史")).to_be_visible()
    await expect(page.get_by_role("button", name="电话")).to_be_visible()
    await screenshot(page, "customers_detail-360-zh")
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await expect(page.get_by_role("button", name="编辑")).to_be_visible()
    await screenshot(page, "customers_detail-360-phone")


def test_forms_turn_typed_text_into_api_bodies() -> None:
    from starlette.datastructures import FormData

    from crm_console.pages.customers.query import ListQuery, api_list_params
    from crm_console.pages.customers_detail import forms

    patch = forms.profile_patch(
        {"name": " 甲 ", "phones": "+8613800138000，+8613900139000\n", "tier": "", "address.city": "杭州"}, "company"
    )
    assert patch["name"] == "甲" and patch["tier"] is None and patch["uscc"] is None
    assert patch["phones"] == ["+8613800138000", "+8613900139000"]
    assert patch["address"] == {"province": None, "city": "杭州", "district": None, "street": None}
    assert forms.aware("2026-12-03T09:30", "Asia/Shanghai") == "2026-12-03T09:30:00+08:00"
    note = forms.interaction_body("c1", FormData([("channel", "note"), ("summary", "记一笔")]), "Asia/Shanghai")
    assert note["content"] == "记一笔" and "summary" not in note
    call = forms.interaction_body("c1", FormData([("channel", "phone"), ("duration_minutes", "5")]), "UTC")
    assert call["direction"] == "out" and call["duration_seconds"] == 300 and call["contact_ids"] == []
    assert api_list_params("q=abc&tier=A&cursor=xyz&sort=name&junk=1") == {"q": "abc", "tier": "A", "sort": "name"}
    assert api_list_params("district=西湖区&email=a@b.cn&followed_up_from=x") == {
        "district": "西湖区",
        "email": "a@b.cn",
        "followed_up_from": "x",
    }
    # What a row links with (the list's API spelling) is what the customer page passes on, whole.
    listed = ListQuery.parse("q=甲&tier=A&created_from=2026-12-01&s1=name&d1=desc&cursor=c", "Asia/Shanghai")
    assert api_list_params(listed.from_query()) == listed.api_filters()
