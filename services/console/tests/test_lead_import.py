"""Browser journey of the lead CSV import (/leadimport) against the real leads service: a file
checked line by line (entered, refused at its cell, a repeat inside the file, a duplicate of
someone's lead named by its owner), then imported, each new lead linked; a file the service
refuses whole shown at the file input; a rep (no leads:import) neither sees the button nor the page."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, screenshot, sign_in
from crm_platform.testing.fixtures import unique


def phone() -> str:
    return f"136{int(unique('')[-8:], 16) % 10**8:08d}"


async def test_a_lead_file_checked_line_by_line_then_imported(page: Any, stack: Stack) -> None:
    marker = unique("imp")
    manager, rep = await stack.new_user(roles=["manager"]), await stack.new_user()
    taken = phone()
    async with httpx.AsyncClient(base_url=stack.urls["leads"]) as leads:
        headers = {"Authorization": f"Bearer {await stack.token_for(rep)}"}
        body = {"company_name": f"已有线索 {marker}", "phones": [taken]}
        assert (await leads.post("/v1/leads", json=body, headers=headers)).status_code == 201
    good = phone()
    csv_text = (
        "公司名称,联系人,电话,邮箱\n"
        f"南京新材料 {marker},赵总,{good},\n"
        f"扬州电子 {marker},钱工,{phone()},not-an-email\n"
        f"南京新材料分公司 {marker},孙工,{good},\n"
        f"泰州化工 {marker},李工,{taken},\n"
    )

    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.goto("/leads")
    await page.get_by_role("button", name="Import leads").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Import leads")

    # A file without a company column is refused whole, at the file input.
    await page.get_by_label("CSV file").set_input_files(
        {"name": "bad.csv", "mimeType": "text/csv", "buffer": "联系人,电话\n赵总,13800000000\n".encode()}
    )
    await page.get_by_role("button", name="Check the file").click()
    await expect(page.locator("#e-file")).to_contain_text("company_name")

    await page.get_by_label("CSV file").set_input_files(
        {"name": "leads.csv", "mimeType": "text/csv", "buffer": csv_text.encode()}
    )
    await page.get_by_label("Source of every row").select_option("exhibition")
    await page.get_by_role("button", name="Check the file").click()
    await expect(page.locator("#import-summary")).to_have_text(
        "4 lines: 1 can be entered, 1 refused, 2 duplicates. Nothing has been written yet."
    )
    await expect(page.locator("#line-2")).to_contain_text("Will be entered")
    await expect(page.locator("#line-3")).to_contain_text("Refused")
    await expect(page.locator("#line-3")).to_contain_text("emails")
    await expect(page.locator("#line-4")).to_contain_text("The same as line 2")
    await expect(page.locator("#line-5")).to_contain_text(f"Already a lead of {rep.name}")
    await screenshot(page, "leadimport-dry-run")

    await page.get_by_role("button", name="Import 1 leads").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Imported")
    await expect(page.locator("#import-summary")).to_contain_text("1 leads entered")
    await expect(page.locator("#line-2")).to_contain_text("Entered")
    await page.locator("#line-2").get_by_role("link", name=f"南京新材料 {marker}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"南京新材料 {marker}")
    await expect(page.locator("#lead-facts")).to_contain_text("Exhibition")


async def test_a_rep_has_no_import(page: Any, stack: Stack) -> None:
    rep = await stack.new_user(language="zh-CN")
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto("/leads")
    await expect(page.locator("#import-leads")).to_have_count(0)
    answer = await page.goto("/leadimport")
    assert answer.status == 403
