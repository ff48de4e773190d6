"""Browser journeys of the customers page group: the list (filters, four sort keys, load more, tag
chips), saved views, CSV export and import, and "new customer" with its duplicate warning."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import unique


async def _seed(stack: Stack, user: User, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    token = await stack.token_for(user)
    created = []
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        for body in bodies:
            answer = await customers.post("/v1/customers", json=body, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 201, answer.text
            created.append(answer.json())
    return created


async def test_the_list_filters_on_tags_sorts_on_several_keys_and_loads_more(
    signed_in_page: Any, stack: Stack, user: User
) -> None:
    page = signed_in_page
    marker = unique("ls")
    tag = f"展会{marker[-4:]}"
    await _seed(
        stack,
        user,
        [
            {
                "kind": "person",
                "name": f"客户{marker}{i:02d}",
                "tier": "ABC"[i % 3],
                "tags": [tag, "重点"] if i % 2 == 0 else [tag],
            }
            for i in range(24)
        ]
        + [{"kind": "person", "name": f"客户{marker}无标签", "tier": "A"}],
    )
    await page.goto("/customers")
    await page.get_by_role("link", name="New customer").wait_for()
    await page.get_by_label("Name contains").fill(marker)
    await page.get_by_text("More filters").click()
    await page.get_by_label("Tags (any of)").fill(tag)
    await page.get_by_label("Sort by").select_option("tier")
    await page.get_by_label("Direction 1").select_option("desc")
    await page.get_by_label("Then by (2)").select_option("name")
    await page.get_by_role("button", name="Apply").click()

    rows = page.locator("#customer-rows tr:not(#load-more-row)")
    await expect(rows).to_have_count(20)  # 24 tagged; the untagged one is filtered out
    # Tier descending (C first), then name ascending: 02, 05, 08, ... are tier C.
    await expect(rows.first).to_contain_text(f"客户{marker}02")
    await expect(rows.nth(1)).to_contain_text(f"客户{marker}05")
    await expect(rows.first.locator(".chip")).to_have_text([tag, "重点"])
    await expect(rows.first.locator("td").nth(5)).to_have_text(user.name)
    await screenshot(page, "customers-list")

    await page.locator("#load-more").click()
    await expect(rows).to_have_count(24)
    await expect(rows.last).to_contain_text(f"客户{marker}21")  # the last tier A one by name
    await expect(page.locator("#load-more")).to_have_count(0)

    # Each row opens the customer page with the list's query, for its previous/next record.
    href = await rows.first.get_by_role("link", name=f"客户{marker}02").get_attribute("href")
    assert href is not None
    listed = parse_qs(parse_qs(urlsplit(href).query)["from"][0])
    assert listed["sort"] == ["-tier,name"] and listed["tags_any"] == [tag] and listed["q"] == [marker]

    # A chip filters the list on its tag.
    await rows.first.get_by_role("link", name="重点").click()
    await expect(page.get_by_label("Tags (any of)")).to_have_value("重点")


async def test_a_saved_view_keeps_the_filters_and_sort_and_can_be_deleted(
    signed_in_page: Any, stack: Stack, user: User
) -> None:
    page = signed_in_page
    marker = unique("sv")
    await _seed(stack, user, [{"kind": "person", "name": f"视图{marker}{i}", "tier": "B"} for i in range(3)])
    await page.goto("/customers")
    await page.get_by_label("Name contains").fill(marker)
    await page.get_by_label("Tier").select_option("B")
    await page.get_by_label("Sort by").select_option("name")
    await page.get_by_label("Direction 1").select_option("desc")
    await page.get_by_role("button", name="Apply").click()
    await page.get_by_label("Save these filters as").fill(f"我的B类 {marker}")
    await page.get_by_role("button", name="Save view").click()
    await expect(page.locator("#view-saved")).to_have_text("View saved.")
    view_link = page.locator("#saved-views").get_by_role("link", name=f"我的B类 {marker}")
    await expect(view_link).to_be_visible()

    # The same name again is refused, at the field.
    await page.get_by_label("Save these filters as").fill(f"我的B类 {marker}")
    await page.get_by_role("button", name="Save view").click()
    await expect(page.get_by_label("Save these filters as")).to_have_attribute("aria-invalid", "true")

    await page.goto("/customers")
    await expect(page.get_by_label("Name contains")).to_have_value("")
    await page.locator("#saved-views").get_by_role("link", name=f"我的B类 {marker}").click()
    await expect(page.get_by_label("Name contains")).to_have_value(marker)
    await expect(page.get_by_label("Tier")).to_have_value("B")
    await expect(page.get_by_label("Sort by")).to_have_value("name")
    await expect(page.get_by_label("Direction 1")).to_have_value("desc")
    rows = page.locator("#customer-rows tr:not(#load-more-row)")
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_contain_text(f"视图{marker}2")
    await screenshot(page, "customers-saved-view")

    await page.get_by_role("button", name=f"Delete the view 我的B类 {marker}").click()
    await expect(page.locator("#saved-views").get_by_role("link", name=f"我的B类 {marker}")).to_have_count(0)


async def test_export_downloads_the_filtered_list_and_import_checks_then_imports(
    signed_in_page: Any, stack: Stack, user: User
) -> None:
    page = signed_in_page
    marker = unique("io")
    await _seed(stack, user, [{"kind": "company", "name": f"导出{marker}{i}有限公司", "tier": "A"} for i in range(2)])
    await page.goto(f"/customers?q={marker}")
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Export CSV").click()
    download = await info.value
    exported = (await download.path()).read_text(encoding="utf-8-sig")
    assert f"导出{marker}0有限公司" in exported and f"导出{marker}1有限公司" in exported

    csv_text = "\n".join(
        [
            "名称,电话,标签,等级",
            f"新客户{marker}甲有限公司,13900000001,重点;展会,A",
            f"导出{marker}0有限公司,,,B",  # exists already, owned by this user
            f"新客户{marker}乙有限公司,not-a-phone,,B",
            f"新客户{marker}丙有限公司,,,Z",
            f"新客户{marker}甲有限公司,,,C",  # repeats line 2
        ]
    )
    await page.goto("/customers")
    await page.get_by_role("link", name="Import CSV").click()
    await page.get_by_label("CSV file").set_input_files(
        files=[{"name": "customers.csv", "mimeType": "text/csv", "buffer": csv_text.encode("utf-8")}]
    )
    await page.get_by_role("button", name="Check the file").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Import check")
    table = page.locator("#import-rows")
    await expect(table.locator("tr[data-line='2']")).to_contain_text("Will be created")
    await expect(table.locator("tr[data-line='3']")).to_contain_text("Duplicate")
    await expect(table.locator("tr[data-line='3']")).to_contain_text(f"Already exists, owned by {user.name}")
    await expect(table.locator("tr[data-line='4']")).to_contain_text("Error")
    await expect(table.locator("tr[data-line='4']")).to_contain_text("phones")
    await expect(table.locator("tr[data-line='5']")).to_contain_text("tier")
    await expect(table.locator("tr[data-line='6']")).to_contain_text("Repeats line 2")
    await expect(page.locator("#import-summary")).to_contain_text("Nothing has been written yet")
    await screenshot(page, "customers-import-check")

    await page.get_by_role("button", name="Import 1 customers").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Import result")
    await expect(table.locator("tr[data-line='2']")).to_contain_text("Created")
    await expect(page.locator("#import-summary")).to_contain_text("1 of 5 rows imported")
    await screenshot(page, "customers-import-result")
    await page.goto(f"/customers?q=新客户{marker}")
    await expect(page.locator("#customer-rows tr")).to_have_count(1)
    await expect(page.locator("#customer-rows tr").first.locator(".chip")).to_have_text(["重点", "展会"])


async def test_new_customer_warns_of_duplicates_while_typing_and_marks_refused_fields(page: Any, stack: Stack) -> None:
    owner = await stack.new_user(name=f"张三{unique('o')[-4:]}")
    marker = unique("nc")
    await _seed(stack, owner, [{"kind": "company", "name": f"杭州{marker}科技有限公司", "phones": ["13812345678"]}])
    me = await stack.new_user()
    await sign_in(page, me)
    await page.wait_for_url("**/")
    await page.goto("/customers")
    await page.get_by_role("link", name="New customer").click()
    await page.get_by_label("Name", exact=True).press_sequentially(f"杭州{marker}科技有限公司", delay=5)
    warning = page.locator("#duplicate-warning")
    await expect(warning).to_contain_text(f"already owned by {owner.name}")
    await expect(warning).to_contain_text("Already in the CRM")
    await screenshot(page, "customers-new-duplicate")

    await page.get_by_label("Name", exact=True).fill(f"宁波{marker}新材料有限公司")
    await page.get_by_label("Phone numbers").fill("138 1234 5678")
    await page.get_by_label("Phone numbers").press("End")
    await expect(warning).to_contain_text(f"already owned by {owner.name}")  # the same phone
    await page.get_by_label("Phone numbers").fill("12")
    await page.get_by_label("USCC (unified social credit code)").fill("91330000000000000X")
    await page.get_by_role("button", name="Create customer").click()
    await expect(page.get_by_label("Phone numbers")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("USCC (unified social credit code)")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Name", exact=True)).to_have_value(f"宁波{marker}新材料有限公司")
    await screenshot(page, "customers-new-errors")

    await page.get_by_label("Phone numbers").fill("13987654321")
    await page.get_by_label("USCC (unified social credit code)").fill("")
    await page.get_by_label("Tags").fill("重点，展会")
    await page.get_by_role("button", name="Create customer").click()
    await expect(page).to_have_url(re.compile(r"/customers/[^/?]+\?created=1$"))
    customer_id = urlsplit(page.url).path.rsplit("/", 1)[-1]
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        answer = await customers.get(
            f"/v1/customers/{customer_id}", headers={"Authorization": f"Bearer {await stack.token_for(me)}"}
        )
    assert answer.json()["tags"] == ["重点", "展会"] and answer.json()["phones"] == ["+8613987654321"]


async def test_managers_see_the_recycle_bin_and_the_list_speaks_chinese(page: Any, stack: Stack) -> None:
    manager = await stack.new_user(roles=["manager"], language="zh-CN")
    marker = unique("rb")
    [gone] = await _seed(stack, manager, [{"kind": "person", "name": f"已删{marker}"}])
    token = await stack.token_for(manager)
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        answer = await customers.delete(
            f"/v1/customers/{gone['id']}", headers={"Authorization": f"Bearer {token}", "If-Match": '"1"'}
        )
        assert answer.status_code == 200, answer.text
    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.goto("/customers")
    await expect(page.get_by_role("heading", level=1)).to_have_text("客户")
    await page.get_by_text("更多筛选").click()
    await page.get_by_label("名称包含").fill(marker)
    await page.get_by_label("显示").select_option("1")
    await page.get_by_role("button", name="筛选", exact=True).click()
    await expect(page.locator("#bin-note")).to_contain_text("回收站")
    await expect(page.locator("#customer-rows tr")).to_have_count(1)
    await expect(page.locator("#customer-rows tr").first).to_contain_text(f"已删{marker}")
    await screenshot(page, "customers-list-zh")
    # On a phone the filters stack and the table scrolls sideways inside its own box.
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator("#customer-rows tr").first).to_be_visible()
    await screenshot(page, "customers-list-phone")
