"""The sales pages (page group ``sales``) against the real sales, pipeline, customers and directory
services: products and price lists, a quotation from a customer's page to its PDF (browser), the
quotation's moves with approval, refusals at their inputs and revisions, an opportunity's line
items, and the quotations list over ``GET /v1/quotations``."""

from __future__ import annotations

import html
import re
import uuid
from datetime import date, timedelta
from typing import Any

from playwright.async_api import expect

from crm_console.pages.sales.common import form_errors
from crm_console.registry import discover, menu_for
from crm_console.sessions import SessionUser
from crm_console.testing import Stack, User, api, at_field, console_as, screenshot, sign_in
from crm_console.upstreams import UpstreamProblem
from crm_platform.testing.fixtures import eventually, unique


def sku() -> str:
    return f"UI-{uuid.uuid4().hex[:10].upper()}"


async def priced_product(stack: Stack, manager: User, price: str = "1280.50") -> tuple[dict[str, Any], str]:
    """A product on a price list of its own tier: (the product, the tier)."""
    made = await api(
        stack, manager, "sales", "POST", "/v1/products", json={"sku": sku(), "name": unique("云服务器"), "unit": "台"}
    )
    assert made.status_code == 201, made.text
    tier = f"T{uuid.uuid4().hex[:6]}".upper()
    listed = await api(
        stack,
        manager,
        "sales",
        "POST",
        "/v1/price-lists",
        json={"name": unique("价目"), "currency": "CNY", "tier": tier},
    )
    assert listed.status_code == 201, listed.text
    path = f"/v1/price-lists/{listed.json()['id']}/entries/{made.json()['id']}"
    priced = await api(stack, manager, "sales", "PUT", path, json={"unit_price": price})
    assert priced.status_code == 200, priced.text
    return made.json(), tier


async def customer_known_to_sales(stack: Stack, owner: User) -> str:
    """A company customer of ``owner``, once the sales service's read copy holds it."""
    made = await api(
        stack, owner, "customers", "POST", "/v1/customers", json={"kind": "company", "name": unique("报价客户")}
    )
    assert made.status_code == 201, made.text
    customer_id = str(made.json()["id"])
    probe = {
        "customer_id": customer_id,
        "currency": "CNY",
        "valid_until": (date.today() + timedelta(days=10)).isoformat(),
        "lines": [{"product_id": "no-such-product", "quantity": "1", "unit_price": "1"}],
    }

    async def known() -> bool:  # the customer is checked first, then the products: nothing is written
        answer = await api(stack, owner, "sales", "POST", "/v1/quotations", json=probe)
        assert answer.status_code == 422, answer.text
        return "customer_id" not in {e["field"] for e in answer.json()["errors"]}

    await eventually(known, timeout=60, interval=0.3, message="customer in the sales service's copy")
    return customer_id


def quotation_form(csrf: str, customer_id: str, tier: str, rows: list[dict[str, str]]) -> dict[str, str]:
    data = {
        "csrf_token": csrf,
        "customer_id": customer_id,
        "currency": "CNY",
        "tier": tier,
        "valid_until": (date.today() + timedelta(days=20)).isoformat(),
    }
    for i, row in enumerate(rows):
        data |= {f"lines[{i}].{name}": value for name, value in row.items()}
    return data


# --- browser ------------------------------------------------------------------------------------


async def test_a_manager_prices_a_product_quotes_it_to_a_customer_and_opens_the_pdf(stack: Stack, page: Any) -> None:
    manager = await stack.new_user(roles=["manager"])
    code, tier = sku(), f"B{uuid.uuid4().hex[:6]}".upper()
    customer_id = await customer_known_to_sales(stack, manager)
    await sign_in(page, manager)
    await page.wait_for_url("**/")
    menu = page.get_by_role("navigation", name="Main menu")
    await menu.get_by_role("link", name="Products", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Products")
    await page.locator("#new-product").click()
    await page.get_by_label("SKU *").fill(code.lower())
    await page.get_by_label("Name *").fill(f"云服务器 {code}")
    await page.get_by_label("Unit *").fill("台")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#done")).to_have_text("Created.")
    await expect(page.get_by_label("SKU *")).to_have_value(code)  # upper-cased by the service

    await page.goto("/price-lists")
    await page.get_by_label("Name *").fill(unique("价目表"))
    await page.get_by_label("Currency *").fill("CNY")
    await page.get_by_label("Customer tier").fill(tier)
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#done")).to_have_text("Created.")
    await page.get_by_label("SKU *").fill(code)
    await page.get_by_label("Unit price (CNY) *").fill("1280.505")
    await page.get_by_role("button", name="Set a price").click()
    await expect(page.locator("[id='e-unit_price']")).not_to_be_empty()  # a third decimal: 422 at the price
    await page.get_by_label("Unit price (CNY) *").fill("1280.5")
    await page.get_by_role("button", name="Set a price").click()
    await expect(page.locator("#done")).to_have_text("Price set.")
    await expect(page.locator("#entries tbody tr")).to_contain_text("1280.50 CNY")

    await page.goto(f"/customers/{customer_id}")
    await page.locator("#new-quotation").click()
    await page.get_by_label("Customer tier").fill(tier)
    await page.get_by_label("Product (SKU), line 1").fill(code)
    await page.get_by_label("Quantity, line 1").fill("3")
    await page.get_by_label("Discount %, line 1").fill("10")
    await page.get_by_role("button", name="Create the draft").click()
    await expect(page.locator("#done")).to_have_text("Created.")
    await expect(page.locator("#q-status")).to_have_text("Draft")
    await expect(page.locator("#q-subtotal")).to_have_text("3841.50 CNY")
    await expect(page.locator("#q-total")).to_have_text("3457.35 CNY")
    await expect(page.locator("#q-lines tbody tr")).to_contain_text("1280.50")
    await screenshot(page, "sales-quotation")

    for link in ("#pdf-en", "#pdf-zh"):
        href = await page.locator(link).get_attribute("href")
        pdf = await page.request.get(href)
        assert pdf.status == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert (await pdf.body()).startswith(b"%PDF")
    await page.get_by_role("button", name="Mark as sent").click()
    await expect(page.locator("#q-status")).to_have_text("Sent")


# --- without a browser --------------------------------------------------------------------------


async def test_products_and_price_lists_read_only_for_a_rep_managed_by_a_manager(stack: Stack) -> None:
    rep, manager = await stack.new_user(), await stack.new_user(roles=["manager"])
    product, _ = await priced_product(stack, manager)
    async with console_as(stack, rep) as (client, _csrf):
        listing = await client.get("/products", params={"q": product["sku"]})
        assert listing.status_code == 200
        assert product["name"] in listing.text
        assert 'id="new-product"' not in listing.text
        shown = await client.get(f"/products/{product['id']}")
        assert 'id="product-form"' not in shown.text and product["sku"] in shown.text
        assert (await client.get("/products/new")).status_code == 403
    async with console_as(stack, manager) as (client, csrf):
        taken = await client.post(
            "/products/new", data={"csrf_token": csrf, "sku": product["sku"].lower(), "name": "x", "unit": "个"}
        )
        assert taken.status_code == 409
        assert at_field(taken.text, "sku")
        page = await client.get(f"/products/{product['id']}")
        etag = re.search(r'name="etag" value="([^"]+)"', page.text)
        assert etag
        off = await client.post(
            f"/products/{product['id']}/deactivate", data={"csrf_token": csrf, "etag": html.unescape(etag.group(1))}
        )
        assert off.status_code == 303
        shown = await client.get(off.headers["location"])
        assert "Taken out of sale." in shown.text and 'id="product-status">Off sale<' in shown.text
        # A stale edit form is the "someone changed this" page (412).
        stale = await client.post(
            f"/products/{product['id']}",
            data={
                "csrf_token": csrf,
                "etag": html.unescape(etag.group(1)),
                "name": "新名字",
                "was.name": product["name"],
            },
        )
        assert stale.status_code == 412


async def test_a_quotation_through_approval_with_each_refusal_at_its_input(stack: Stack) -> None:
    rep = await stack.new_user(language="zh-CN")
    manager = await stack.new_user(roles=["manager"])
    product, tier = await priced_product(stack, manager)
    customer_id = await customer_known_to_sales(stack, rep)
    async with console_as(stack, rep) as (client, csrf):
        form = await client.get("/quotations/new", params={"customer_id": customer_id})
        assert form.status_code == 200 and product["sku"] in form.text  # suggested from the catalogue
        # An unknown SKU is refused by the console; a bad quantity by the service, at its row
        # (the blank row between them is left out of the request, not of the form).
        refused = await client.post(
            "/quotations/new",
            data=quotation_form(
                csrf,
                customer_id,
                tier,
                [
                    {"product": product["sku"], "quantity": "2", "unit_price": "", "discount_percent": "20"},
                    {"product": "", "quantity": "", "unit_price": "", "discount_percent": ""},
                    {"product": product["sku"], "quantity": "0", "unit_price": "", "discount_percent": ""},
                ],
            ),
        )
        assert refused.status_code == 422
        assert at_field(refused.text, "lines[2].quantity")
        assert 'id="e-lines[0].quantity"' not in refused.text
        unknown = await client.post(
            "/quotations/new",
            data=quotation_form(
                csrf,
                customer_id,
                tier,
                [{"product": "NO-SUCH-SKU", "quantity": "1", "unit_price": "", "discount_percent": ""}],
            ),
        )
        assert at_field(unknown.text, "lines[0].product") == "没有此 SKU 的产品。"
        made = await client.post(
            "/quotations/new",
            data=quotation_form(
                csrf,
                customer_id,
                tier,
                [{"product": product["sku"], "quantity": "2", "unit_price": "", "discount_percent": "20"}],
            ),
        )
        assert made.status_code == 303, made.text
        path = made.headers["location"].split("?")[0]
        page = (await client.get(made.headers["location"])).text
        assert "草稿" in page and "2561.00 CNY" in page and "2048.80 CNY" in page
        assert 'id="do-submit"' in page and 'id="do-send"' not in page  # 20% needs approval
        etag = re.search(r'name="etag" value="([^"]+)"', page)
        assert etag
        early = await client.post(f"{path}/send", data={"csrf_token": csrf})
        assert early.status_code == 409
        assert "有折扣超过审批阈值，请先提交经理审批。" in early.text  # the refusal in the rep's language
        submitted = await client.post(f"{path}/submit", data={"csrf_token": csrf, "etag": html.unescape(etag.group(1))})
        assert submitted.status_code == 303
        page = (await client.get(path)).text
        assert "待审批" in page and 'id="do-approve"' not in page  # a rep does not approve
    async with console_as(stack, manager) as (client, csrf):
        page = (await client.get(path)).text
        assert 'id="do-approve"' in page and 'id="do-reject"' in page
        no_reason = await client.post(f"{path}/reject", data={"csrf_token": csrf})
        assert no_reason.status_code == 422
        assert at_field(no_reason.text, "reject.comment")
        approved = await client.post(f"{path}/approve", data={"csrf_token": csrf, "approve.comment": "同意 8 折"})
        assert approved.status_code == 303
        page = (await client.get(approved.headers["location"])).text
        assert "Approved." in page and "同意 8 折" in page
    async with console_as(stack, rep) as (client, csrf):
        assert (await client.post(f"{path}/send", data={"csrf_token": csrf})).status_code == 303
        declined = await client.post(f"{path}/decline", data={"csrf_token": csrf, "decline.comment": "太贵"})
        assert declined.status_code == 303
        # A move the status no longer allows: 409 on the page, nothing changed.
        again = await client.post(f"{path}/accept", data={"csrf_token": csrf})
        assert again.status_code == 409 and 'role="alert"' in again.text
        assert "报价单当前状态不允许此操作。" in again.text
        new_day = (date.today() + timedelta(days=40)).isoformat()
        revised = await client.post(f"{path}/revise", data={"csrf_token": csrf, "revise.valid_until": new_day})
        assert revised.status_code == 303
        page = (await client.get(path)).text
        assert "第 2 版" in page and new_day in page
        versions = re.search(r'<table id="q-versions">.*?</table>', page, re.S)
        assert versions and versions.group(0).count("<tr") == 3  # the header and two revisions
        assert "已拒绝" in versions.group(0)
        pdf = await client.get(f"{path}.pdf", params={"lang": "en"})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


async def test_an_opportunitys_line_items_and_the_amount_that_follows_them(stack: Stack) -> None:
    rep, manager = await stack.new_user(), await stack.new_user(roles=["manager"])
    product, _ = await priced_product(stack, manager)
    made = await api(
        stack, rep, "customers", "POST", "/v1/customers", json={"kind": "company", "name": unique("明细客户")}
    )
    assert made.status_code == 201, made.text
    body = {"customer_id": made.json()["id"], "name": unique("云迁移项目"), "amount": "1000", "currency": "CNY"}

    async def opportunity() -> str | None:
        answer = await api(stack, rep, "pipeline", "POST", "/v1/opportunities", json=body)
        assert answer.status_code in (201, 404, 409, 422), answer.text  # the customer may not be known yet
        return str(answer.json()["id"]) if answer.status_code == 201 else None

    opportunity_id = await eventually(opportunity, timeout=60, interval=0.3, message="opportunity created")
    path = f"/pipeline/opportunities/{opportunity_id}/lines"
    async with console_as(stack, rep) as (client, csrf):
        edit = await client.get(f"/pipeline/opportunities/{opportunity_id}/edit")
        assert f'href="{path}"' in edit.text

        async def form() -> dict[str, str]:
            page = await client.get(path)
            assert page.status_code == 200, page.text
            etag = re.search(r'name="etag" value="([^"]+)"', page.text)
            assert etag
            return {"csrf_token": csrf, "etag": html.unescape(etag.group(1))}

        bad = await client.post(
            path,
            data=await form()
            | {"lines[0].product": product["sku"], "lines[0].quantity": "-1", "lines[0].unit_price": "99.5"},
        )
        assert bad.status_code == 422
        assert at_field(bad.text, "lines[0].quantity")

        async def saved() -> bool:  # the pipeline learns of the product from the sales service's events
            data = await form() | {
                "lines[0].product": product["sku"],
                "lines[0].quantity": "3",
                "lines[0].unit_price": "99.50",
                "lines[0].discount_percent": "10",
                "amount_follows_lines": "true",
            }
            answer = await client.post(path, data=data)
            if answer.status_code == 422 and "lines[0].product" in answer.text:
                return False
            assert answer.status_code == 303, answer.text
            return True

        await eventually(saved, timeout=60, interval=0.3, message="lines saved")
        page = (await client.get(path)).text
        assert "Line items saved." not in page  # the message is on the redirect's page only
        assert 'id="lines-total">268.65 CNY' in page
        assert 'id="opp-amount">268.65 CNY' in page
        assert 'name="amount_follows_lines" value="true" id="f-amount_follows_lines" checked' in page


async def test_the_quotations_list_follows_the_list_endpoint(stack: Stack) -> None:
    """``GET /v1/quotations`` of the real sales service: the filters passed through, 50 a page and
    "load more" over ``next_cursor`` until the last page."""
    rep, manager = await stack.new_user(), await stack.new_user(roles=["manager"])
    product, _ = await priced_product(stack, manager)
    customer_id = await customer_known_to_sales(stack, rep)
    body = {
        "customer_id": customer_id,
        "currency": "CNY",
        "valid_until": (date.today() + timedelta(days=10)).isoformat(),
        "lines": [{"product_id": product["id"], "quantity": "2", "unit_price": "1024.40"}],
    }
    numbers = []
    for _ in range(51):
        made = await api(stack, rep, "sales", "POST", "/v1/quotations", json=body)
        assert made.status_code == 201, made.text
        numbers.append(made.json()["number"])
    async with console_as(stack, rep) as (client, _csrf):
        page = await client.get("/quotations", params={"status": "draft", "customer_id": customer_id, "owner_id": ""})
        assert page.status_code == 200, page.text
        rows = re.findall(r'<tr id="quotation-', page.text)
        assert len(rows) == 50 and numbers[-1] in page.text and numbers[0] not in page.text  # newest first
        assert "Draft" in page.text and "2048.80 CNY" in page.text
        assert f'href="/customers/{customer_id}">' in page.text
        more = re.search(r'href="/quotations\?([^"]+)" id="load-more"', page.text)
        assert more and "cursor=" in more.group(1) and f"customer_id={customer_id}" in more.group(1)
        last = await client.get(f"/quotations?{html.unescape(more.group(1))}")
        assert last.status_code == 200 and numbers[0] in last.text and 'id="load-more"' not in last.text
        assert len(re.findall(r'<tr id="quotation-', last.text)) == 1
        sent = await client.get("/quotations", params={"status": "sent", "customer_id": customer_id})
        assert not re.findall(r'<tr id="quotation-', sent.text)


def test_the_sales_menus_follow_the_permissions() -> None:
    groups = discover()
    hrefs = {role: {e.href for e in menu_for(groups, [role])} for role in ("rep", "manager", "integrator")}
    assert {"/quotations", "/products"} <= hrefs["rep"] and {"/quotations", "/products"} <= hrefs["manager"]
    assert not {"/quotations", "/products"} & hrefs["integrator"]
    custom = SessionUser(id="c", name="C", email="c@example.com", roles=["catalogue"], permissions=["products:view"])
    only_products = {e.href for e in menu_for(groups, custom)}
    assert "/products" in only_products and "/quotations" not in only_products


def test_the_services_line_errors_land_on_the_forms_rows() -> None:
    problem = UpstreamProblem(
        "sales",
        422,
        errors=[
            {"field": "lines[1].unit_price", "reason": "no price"},
            {"field": "lines[0].product_id", "reason": "inactive"},
            {"field": "valid_until", "reason": "in the past"},
        ],
    )
    assert form_errors(problem, [0, 3]) == {
        "lines[3].unit_price": "no price",
        "lines[0].product": "inactive",
        "valid_until": "in the past",
    }
