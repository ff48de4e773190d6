"""Browser journey of the lead assignment rules page (/leadrules, leads:rules) against the real
leads and directory services: a rule refused at its users input, then added, changed with If-Match
and deleted; no page for a rep."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from crm_console.testing import Stack, screenshot, sign_in
from crm_platform.testing.fixtures import unique


async def test_an_assignment_rule_added_changed_and_deleted(page: Any, stack: Stack) -> None:
    marker = unique("rr")
    manager, rep = await stack.new_user(roles=["manager"]), await stack.new_user()
    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Lead assignment").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Lead assignment rules")

    form = page.locator("#new-rule")
    await page.get_by_text("New rule").click()
    await form.get_by_label("Name *").fill(f"华东线索 {marker}")
    await expect(form.get_by_label("Department (id) *")).to_have_value("hq")
    await form.get_by_label("Condition").select_option("region")
    await form.get_by_label("Values (comma-separated)").fill(f"华东-{marker}")
    await form.get_by_label("Users (ids, comma-separated) *").fill(f"nobody-{marker}")
    await form.get_by_role("button", name="Add the rule").click()
    await expect(page.locator("#e-users")).to_be_visible()
    await expect(form.get_by_label("Name *")).to_have_value(f"华东线索 {marker}")

    await form.get_by_label("Users (ids, comma-separated) *").fill(rep.id)
    await form.get_by_role("button", name="Add the rule").click()
    await expect(page.locator("#done")).to_have_text("Rule added.")
    await expect(page.locator("#rules")).to_contain_text(f"Region is one of: 华东-{marker}")
    await screenshot(page, "leadrules-list")

    await page.get_by_role("link", name=f"华东线索 {marker}").click()
    await page.get_by_label("Most open leads per user").fill("5")
    await page.get_by_label("Method").select_option("least_loaded")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#done")).to_have_text("Rule saved.")
    row = page.locator("#rules tr", has_text=f"华东线索 {marker}")
    await expect(row).to_contain_text("Fewest open leads first")
    await expect(row).to_contain_text("5")

    await page.get_by_role("link", name=f"华东线索 {marker}").click()
    await page.get_by_role("button", name="Delete the rule").click()
    await expect(page.locator("#done")).to_have_text("Rule deleted.")
    await expect(page.get_by_role("link", name=f"华东线索 {marker}")).to_have_count(0)


async def test_no_assignment_rules_for_a_rep(page: Any, stack: Stack) -> None:
    rep = await stack.new_user()
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    answer = await page.goto("/leadrules")
    assert answer.status == 403
