"""Browser journeys of the pipeline page group: the kanban (keyboard "Move to…" menu and drag and
drop, stage requirements filled in place, won/lost reasons, snap-back on cancel) and targets and
forecast, against the real pipeline, customers and directory services."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique


async def seed_customer(stack: Stack, token: str, name: str) -> str:
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        answer = await customers.post(
            "/v1/customers", json={"kind": "company", "name": name}, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def seed_opportunity(stack: Stack, token: str, customer_id: str, name: str, **fields: Any) -> dict[str, Any]:
    """Created once the pipeline service has the customer (it learns it from the customers' events)."""
    body = {"customer_id": customer_id, "name": name, **fields}
    async with httpx.AsyncClient(base_url=stack.urls["pipeline"]) as pipeline:

        async def create() -> dict[str, Any] | None:
            answer = await pipeline.post("/v1/opportunities", json=body, headers={"Authorization": f"Bearer {token}"})
            if answer.status_code == 201:
                created: dict[str, Any] = answer.json()
                return created
            assert answer.status_code in (404, 409, 422), answer.text  # the customer is not known yet
            return None

        found: dict[str, Any] = await eventually(create, timeout=60, interval=0.3, message="opportunity created")
        return found


def column(page: Any, stage_id: str) -> Any:
    return page.locator(f'#board section.column[data-stage-id="{stage_id}"]')


def card(page: Any, name: str) -> Any:
    return page.locator("#board li.card", has=page.locator(".card-name", has_text=name))


async def drag(page: Any, source: Any, target: Any) -> None:
    """A person's drag: press on the card, move in steps (SortableJS starts after a few pixels), drop."""
    start = await source.bounding_box()
    end = await target.bounding_box()
    await page.mouse.move(start["x"] + 20, start["y"] + 10)
    await page.mouse.down()
    await page.mouse.move(start["x"] + 30, start["y"] + 20, steps=5)
    await page.mouse.move(end["x"] + end["width"] / 2, end["y"] + 30, steps=15)
    await page.mouse.up()


async def move_with_keyboard(page: Any, name: str, stage: str) -> None:
    """Tab to the card's "Move to…" menu, open it with Enter, choose the stage with Enter."""
    await card(page, name).locator("summary").focus()
    await page.keyboard.press("Enter")
    await expect(card(page, name).locator("details.move")).to_have_attribute("open", "")
    button = card(page, name).get_by_role("button", name=stage, exact=True)
    await button.focus()
    await page.keyboard.press("Enter")


async def test_the_kanban_moves_cards_by_keyboard_fills_requirements_in_place_and_asks_won_lost_reasons(
    page: Any, stack: Stack, user: User
) -> None:
    token = await stack.token_for(user)
    customer = await seed_customer(stack, token, f"看板客户 {unique('k')}")
    deal = f"ERP 项目 {unique('d')}"
    other = f"CRM 项目 {unique('d')}"
    await seed_opportunity(stack, token, customer, deal, stage_id="needs_confirmed")
    await seed_opportunity(stack, token, customer, other, amount="80000.00")
    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Pipeline").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Pipeline")
    await expect(column(page, "needs_confirmed").locator(".count")).to_have_text("Deals: 1")
    await expect(column(page, "initial_contact").locator(".weighted")).to_have_text("weighted 8,000.00 CNY")
    await screenshot(page, "pipeline-kanban")

    # Proposal needs a requirements document: the dialog asks for it, and the move is retried.
    await move_with_keyboard(page, deal, "Proposal")
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading")).to_have_text("Proposal needs more first")
    await expect(dialog.locator("#missing-list")).to_contain_text("Attach a requirements document")
    await screenshot(page, "pipeline-requirements-dialog")
    await dialog.get_by_label("Document name").fill("需求说明书 v1")
    await dialog.get_by_label("Link (https://…)").fill("https://docs.example.com/req-v1.pdf")
    await dialog.get_by_role("button", name="Save and move").click()
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(column(page, "proposal").locator("li.card")).to_contain_text(deal)
    await expect(page.locator("#board-status")).to_have_text(f"“{deal}” moved to Proposal.")

    # Negotiation needs the quoted amount: a bad value is refused at the field, then it goes through.
    await move_with_keyboard(page, deal, "Negotiation")
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Quoted amount").fill("a lot")
    await dialog.get_by_role("button", name="Save and move").click()
    await expect(page.get_by_role("dialog").locator("#e-field_quotation_amount")).to_be_visible()
    await expect(page.get_by_role("dialog").get_by_label("Quoted amount")).to_have_attribute("aria-invalid", "true")
    await page.get_by_role("dialog").get_by_label("Quoted amount").fill("120000")
    await page.get_by_role("dialog").get_by_role("button", name="Save and move").click()
    await expect(column(page, "negotiation").locator("li.card")).to_contain_text(deal)

    # Won asks for the reason; signing also needs the amount, filled in the same dialog.
    await move_with_keyboard(page, deal, "Contract signed")
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading")).to_have_text(f"Mark “{deal}” as won")
    await dialog.get_by_label("Why did we win?").fill("方案最贴合需求")
    await dialog.get_by_role("button", name="Confirm").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading")).to_have_text("Contract signed needs more first")
    await expect(dialog.get_by_label("Why did we win?")).to_have_value("方案最贴合需求")
    await dialog.get_by_label("Amount").fill("118000.00")
    await dialog.get_by_role("button", name="Save and move").click()
    await expect(column(page, "won").locator("li.card")).to_contain_text(deal)
    # Focus comes back to the moved card's menu once the new board has settled (not before: a
    # keystroke aimed at another card in between would open this one's menu instead).
    await expect(card(page, deal).locator("summary")).to_be_focused()

    # A refused move that the person cancels leaves the card where it was.
    await move_with_keyboard(page, other, "Negotiation")
    await expect(page.get_by_role("dialog").locator("#missing-list")).to_be_visible()
    await page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(page.locator("#board-status")).to_have_text("Move cancelled: the card stays where it was.")
    await expect(column(page, "initial_contact").locator("li.card")).to_contain_text(other)

    # Lost asks for the reason and the competitor.
    await move_with_keyboard(page, other, "Lost")
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Why was it lost?").fill("预算被砍")
    await dialog.get_by_label("Competitor who won (optional)").fill("竞品甲")
    await dialog.get_by_role("button", name="Confirm").click()
    await expect(column(page, "lost").locator("li.card")).to_contain_text(other)

    # On a phone the columns scroll sideways, one at a time.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.locator("#board .columns").evaluate("columns => { columns.scrollLeft = 0; }")
    await expect(column(page, "initial_contact")).to_be_in_viewport()
    await screenshot(page, "pipeline-kanban-phone")


async def test_dragging_a_card_moves_it_and_a_refused_drag_snaps_back_on_cancel(
    page: Any, stack: Stack, user: User
) -> None:
    token = await stack.token_for(user)
    customer = await seed_customer(stack, token, f"拖拽客户 {unique('k')}")
    deal = f"拖拽商机 {unique('d')}"
    created = await seed_opportunity(stack, token, customer, deal, amount="50000.00")
    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.goto("/pipeline")
    await drag(page, card(page, deal), column(page, "needs_confirmed").locator("ul.cards"))
    await expect(column(page, "needs_confirmed").locator("li.card")).to_contain_text(deal)
    await expect(page.locator("#board-status")).to_have_text(f"“{deal}” moved to Needs confirmed.")
    # Proposal needs a document: the dialog opens; cancelling it puts the card back.
    await drag(page, card(page, deal), column(page, "proposal").locator("ul.cards"))
    await expect(page.get_by_role("dialog").locator("#missing-list")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(page.locator("#board-status")).to_have_text("Move cancelled: the card stays where it was.")
    await expect(column(page, "needs_confirmed").locator("li.card")).to_contain_text(deal)
    await expect(column(page, "proposal").locator("li.card", has_text=deal)).to_have_count(0)

    # Someone else changes the deal while the board is open: the move (sent with If-Match) says so.
    async with httpx.AsyncClient(base_url=stack.urls["pipeline"]) as pipeline:
        path = f"/v1/opportunities/{created['id']}"
        headers = {"Authorization": f"Bearer {token}"}
        current = await pipeline.get(path, headers=headers)
        changed = await pipeline.patch(
            path, json={"notes": "客户要求下周再谈"}, headers={**headers, "If-Match": current.headers["ETag"]}
        )
        assert changed.status_code == 200, changed.text
    await move_with_keyboard(page, deal, "Initial contact")
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("alert")).to_contain_text("Someone changed this opportunity")
    await dialog.get_by_role("button", name="Close").click()
    # The reloaded board carries the deal's new version, and the move goes through.
    await expect(card(page, deal)).to_have_attribute("data-version", str(changed.json()["version"]))
    await move_with_keyboard(page, deal, "Initial contact")
    await expect(column(page, "initial_contact").locator("li.card")).to_contain_text(deal)


async def test_the_forecast_shows_target_won_and_weighted_pipeline_and_managers_set_targets(
    page: Any, stack: Stack
) -> None:
    department = unique("sales").lower()
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        answer = await directory.post(
            "/v1/departments",
            json={"id": department, "name": "华东销售部", "parent_id": "hq"},
            headers=stack.admin_headers,
        )
        assert answer.status_code == 201, answer.text
    manager = await stack.new_user(roles=["manager"], name=f"王经理 {unique('m')}")
    rep = await stack.new_user(name=f"李销售 {unique('r')}")
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        for person in (manager, rep):
            found = await directory.get(f"/v1/users/{person.id}", headers=stack.admin_headers)
            answer = await directory.patch(
                f"/v1/users/{person.id}",
                json={"department_id": department},
                headers={**stack.admin_headers, "If-Match": found.headers["ETag"]},
            )
            assert answer.status_code == 200, answer.text
    token = await stack.token_for(rep)
    customer = await seed_customer(stack, token, f"预测客户 {unique('k')}")
    period = date.today().strftime("%Y-%m")
    close = date.today().isoformat()
    await seed_opportunity(
        stack, token, customer, f"预测商机 {unique('d')}", amount="200000.00", expected_close_date=close
    )

    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.goto("/pipeline")
    await page.get_by_role("link", name="Targets and forecast").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Targets and forecast")
    await expect(page.locator("#f-period")).to_have_value(period)
    rep_row = page.locator("#forecast-table tr", has_text=rep.name)
    await expect(rep_row.locator(".target")).to_have_text("No target")
    await expect(rep_row.locator(".weighted")).to_contain_text("20,000.00")  # 10% of 200000 in initial contact

    # Saved once the pipeline service's read copy of the directory knows the rep's department
    # (until then the form says so at the "For" field).
    form = page.locator("#target-form")

    async def saved() -> bool:
        await form.get_by_label("For").select_option(label=rep.name)
        await form.get_by_label("Amount").fill("400000")
        await form.get_by_role("button", name="Save target").click()
        await expect(page.locator("#target-saved").or_(page.locator("#e-target_who"))).to_be_visible()
        return await page.locator("#target-saved").count() > 0

    await eventually(saved, timeout=30, interval=0.5, message="target saved")
    rep_row = page.locator("#forecast-table tr", has_text=rep.name)
    await expect(rep_row.locator(".target")).to_have_text("400,000.00")
    await expect(page.locator("#row-department .target")).to_have_text("400,000.00")
    await screenshot(page, "pipeline-forecast")

    # A wrong amount is refused at its field.
    await form.get_by_label("For").select_option(label=rep.name)
    await form.get_by_label("Amount").fill("not money")
    await form.get_by_role("button", name="Save target").click()
    await expect(page.locator("#e-target_amount")).to_be_visible()
    await expect(form.get_by_label("Amount")).to_have_attribute("aria-invalid", "true")

    # The rep sees their own forecast, and no target form.
    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto("/pipeline/forecast")
    await expect(page.locator("#row-me .target")).to_have_text("400,000.00")
    await expect(page.locator("#row-me .attainment")).to_have_text("0.0%")
    await expect(page.locator("#target-form")).to_have_count(0)


async def test_without_javascript_the_move_menu_and_the_requirements_dialog_still_work(
    browser: Any, stack: Stack, user: User
) -> None:
    token = await stack.token_for(user)
    customer = await seed_customer(stack, token, f"无脚本客户 {unique('k')}")
    deal = f"无脚本商机 {unique('d')}"
    await seed_opportunity(stack, token, customer, deal, stage_id="needs_confirmed")
    context = await browser.new_context(base_url=stack.console_url, locale="en-US", java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, user)
        await page.wait_for_url("**/")
        await page.goto("/pipeline")
        await card(page, deal).locator("summary").click()
        await card(page, deal).get_by_role("button", name="Proposal", exact=True).click()
        dialog = page.get_by_role("dialog")
        await expect(dialog.locator("#missing-list")).to_contain_text("Attach a requirements document")
        await dialog.get_by_label("Document name").fill("需求说明书")
        await dialog.get_by_label("Link (https://…)").fill("https://docs.example.com/req.pdf")
        await dialog.get_by_role("button", name="Save and move").click()
        await expect(column(page, "proposal").locator("li.card")).to_contain_text(deal)
    finally:
        await context.close()


def upstream_calls(service: str, method: str) -> float:
    """How many calls the console (in this process) has made to ``service`` with ``method``."""
    from prometheus_client import REGISTRY

    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "crm_console_upstream_seconds":
            continue
        for sample in metric.samples:
            labels = sample.labels
            if sample.name.endswith("_count") and labels["service"] == service and labels["method"] == method:
                total += sample.value
    return total


async def test_kanban_cards_show_their_customer_from_one_lookup(page: Any, stack: Stack, user: User) -> None:
    token = await stack.token_for(user)
    names = [f"卡片客户{i} {unique('k')}" for i in range(3)]
    customers = [await seed_customer(stack, token, name) for name in names]
    deals = [f"项目{i} {unique('d')}" for i in range(3)]
    for customer, deal in zip(customers, deals, strict=True):
        await seed_opportunity(stack, token, customer, deal)
    await seed_opportunity(stack, token, customers[0], f"二期 {unique('d')}")  # the same customer twice
    await sign_in(page, user)
    await page.wait_for_url("**/")

    looked_up, read_one = upstream_calls("customers", "POST"), upstream_calls("customers", "GET")
    await page.goto("/pipeline")
    for customer, name, deal in zip(customers, names, deals, strict=True):
        shown = card(page, deal).locator(".card-customer")
        await expect(shown).to_have_text(name)
        await expect(shown).to_have_attribute("href", f"/customers/{customer}")
    # Four cards, three customers: one lookup for the page, no request per card.
    assert upstream_calls("customers", "POST") - looked_up == 1
    assert upstream_calls("customers", "GET") - read_one == 0
