"""Browser journey of the lead scoring page (/leadscoring, leads:scoring) against the real leads
service: a rule added in an empty row and saved with If-Match (the lead page then gives its
reason), a value out of bounds refused at its cell, a training on too little history told with the
counts, and no page for a rep."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, screenshot, sign_in
from crm_platform.testing.fixtures import unique


def phone() -> str:
    return f"135{int(unique('')[-8:], 16) % 10**8:08d}"


async def test_scoring_rules_edited_and_training_refused_on_too_little_history(page: Any, stack: Stack) -> None:
    marker = unique("rule")
    admin = await stack.new_user(roles=["admin"])
    await sign_in(page, admin)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Lead scoring").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Lead scoring")

    # The first empty row (the page lists the rules, then three empty rows).
    row = await page.locator("#rules tbody tr").count() - 3
    await page.locator(f"[name='rules[{row}].field']").select_option("region")
    await page.locator(f"[name='rules[{row}].op']").select_option("in")
    await page.locator(f"[name='rules[{row}].value']").fill(f"{marker}, 华东-{marker}")
    await page.locator(f"[name='rules[{row}].points']").fill("20")
    await page.locator(f"[name='rules[{row}].label']").fill(f"Target region {marker}")
    await page.get_by_role("button", name="Save the rules").click()
    await expect(page.locator("#done")).to_have_text("Rules saved: leads are being re-scored.")
    await expect(page.locator(f"[name='rules[{row}].value']")).to_have_value(f"{marker}, 华东-{marker}")

    # Points out of bounds: refused at the cell, nothing stored.
    await page.locator(f"[name='rules[{row}].points']").fill("500")
    await page.get_by_role("button", name="Save the rules").click()
    await expect(page.locator(f"[name='rules[{row}].points']")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(f"[name='rules[{row}].points']")).to_have_value("500")
    await page.goto("/leadscoring")
    await expect(page.locator(f"[name='rules[{row}].points']")).to_have_value("20")

    # Training needs history: the 409 says how much there is and how much is needed.
    await page.get_by_role("button", name="Train the model").click()
    await expect(page.locator("#problem")).to_contain_text("Too little history to train")
    await expect(page.locator("#problem")).to_contain_text("of each are needed")
    await screenshot(page, "leadscoring-page")

    # The rule gives a lead its reason.
    async with httpx.AsyncClient(base_url=stack.urls["leads"]) as leads:
        headers = {"Authorization": f"Bearer {await stack.token_for(admin)}"}
        body = {"company_name": f"嘉兴纺织 {marker}", "phones": [phone()], "region": f"华东-{marker}"}
        answer = await leads.post("/v1/leads", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    await page.goto(f"/leads/{answer.json()['id']}")
    await expect(page.locator("#score-rules")).to_contain_text(f"Target region {marker}: +20")


async def test_no_scoring_page_for_a_rep(page: Any, stack: Stack) -> None:
    rep = await stack.new_user()
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await expect(
        page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Lead scoring")
    ).to_have_count(0)
    answer = await page.goto("/leadscoring")
    assert answer.status == 403
