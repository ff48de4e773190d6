"""The contracts (合同) and tickets (工单) pages against the real sales, customers and directory
services: a contract from draft through approval, signing, a two-instalment plan and a partial
payment (browser), each refusal at its input, refunds and invoices; a ticket from a customer's page
through replies, resolution, return visit and closing; the menus and 403s by permission."""

from __future__ import annotations

import html
import re
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.registry import discover, menu_for
from crm_console.testing import Stack, at_field, console_as, customer_known_to_sales, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique


def etag_of(page: str) -> str:
    found = re.search(r'name="etag" value="([^"]+)"', page)
    assert found, page
    return html.unescape(found.group(1))


def today() -> str:
    return date.today().isoformat()


def later(days: int) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


# --- browser ------------------------------------------------------------------------------------


async def test_a_contract_is_drafted_approved_signed_planned_and_partly_paid(stack: Stack, page: Any) -> None:
    rep, manager = await stack.new_user(), await stack.new_user(roles=["manager"])
    customer_id = await customer_known_to_sales(stack, rep)
    title = unique("年度维保合同")
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto(f"/customers/{customer_id}")
    await page.locator("#new-contract").click()
    await page.get_by_label("Title *").fill(title)
    await page.get_by_label("Amount *").fill("10000")
    await page.get_by_role("button", name="Create the draft").click()
    await expect(page.locator("#done")).to_have_text("Created.")
    await expect(page.locator("#c-status")).to_have_text("Draft")
    await expect(page.locator("#c-amount")).to_have_text("10000.00 CNY")
    await page.get_by_role("button", name="Submit for approval").click()
    await expect(page.locator("#c-status")).to_have_text("Under approval")
    contract_url = page.url.split("?")[0]

    await page.context.clear_cookies()
    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.goto(contract_url)
    await page.get_by_label("Comment (Approve)").fill("同意")
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#done")).to_have_text("Approved.")
    await expect(page.locator("#level-1")).to_contain_text("同意")

    await page.context.clear_cookies()
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto(contract_url)
    await page.get_by_label("Signed document (URL or document id)").fill("https://docs.example.com/c.pdf")
    await page.get_by_role("button", name="Sign", exact=True).click()
    await expect(page.locator("#c-status")).to_have_text("Signed")

    await page.get_by_label("Due date, instalment 1").fill(later(10))
    await page.get_by_label("Amount, instalment 1").fill("6000")
    await page.get_by_label("Due date, instalment 2").fill(later(40))
    await page.get_by_label("Amount, instalment 2").fill("3000")
    await page.get_by_role("button", name="Save the plan").click()
    await expect(page.locator("#e-instalments")).not_to_be_empty()  # 1000.00 short of the amount
    await page.get_by_label("Amount, instalment 2").fill("4000")
    await page.get_by_role("button", name="Save the plan").click()
    await expect(page.locator("#done")).to_have_text("Payment plan saved.")

    await page.get_by_label("Amount (CNY) *").fill("2500")
    await page.get_by_label("Reference").fill("BANK-0001")
    await page.get_by_role("button", name="Record a payment").click()
    await expect(page.locator("#done")).to_have_text("Payment recorded.")
    await expect(page.locator("#instalment-1-status")).to_have_text("Partially paid")
    await expect(page.locator("#instalment-2-status")).to_have_text("Unpaid")
    await expect(page.locator("#c-received")).to_have_text("2500.00 CNY")
    await expect(page.locator("#c-outstanding")).to_have_text("7500.00 CNY")
    await screenshot(page, "sales-contract")


# --- without a browser --------------------------------------------------------------------------


async def test_a_contract_through_its_refusals_refunds_and_invoices(stack: Stack) -> None:
    rep = await stack.new_user(language="zh-CN")
    manager = await stack.new_user(roles=["manager"])
    customer_id = await customer_known_to_sales(stack, rep)
    async with console_as(stack, rep) as (client, csrf):
        form = await client.get("/contracts/new", params={"customer_id": customer_id})
        assert form.status_code == 200 and customer_id in form.text
        bad = await client.post(
            "/contracts/new",
            data={
                "csrf_token": csrf,
                "title": unique("合同"),
                "customer_id": customer_id,
                "amount": "10.001",
                "currency": "CNY",
                "start_date": later(10),
                "end_date": later(1),
            },
        )
        assert bad.status_code == 422
        assert at_field(bad.text, "amount")
        draft = {
            "csrf_token": csrf,
            "title": unique("合同"),
            "customer_id": customer_id,
            "amount": "5000",
            "currency": "CNY",
        }

        async def drafted() -> httpx.Response | None:  # the owner reaches the sales copy a moment later
            answer = await client.post("/contracts/new", data=draft)
            if answer.status_code == 422 and 'id="e-customer_id"' in answer.text:
                return None
            return answer

        made = await eventually(drafted, timeout=60, interval=0.5, message="contract drafted")
        assert made.status_code == 303, made.text
        path = made.headers["location"].split("?")[0]
        page = (await client.get(made.headers["location"])).text
        assert "已创建。" in page and "草稿" in page and 'id="do-submit"' in page
        # Signing a draft is not a move it has: 409 on the page, in the rep's language.
        early = await client.post(f"{path}/sign", data={"csrf_token": csrf, "sign.signed_on": today()})
        assert early.status_code == 409 and "合同当前状态不允许此操作。" in early.text
        submitted = await client.post(f"{path}/submit", data={"csrf_token": csrf, "etag": etag_of(page)})
        assert submitted.status_code == 303
        page = (await client.get(path)).text
        assert "审批中" in page and 'id="do-approve"' not in page  # never one's own
    async with console_as(stack, manager) as (client, csrf):
        page = (await client.get(path)).text
        assert 'id="do-approve"' in page and 'id="do-reject"' in page
        no_reason = await client.post(f"{path}/reject", data={"csrf_token": csrf})
        assert no_reason.status_code == 422 and at_field(no_reason.text, "reject.comment")
        assert (await client.post(f"{path}/approve", data={"csrf_token": csrf})).status_code == 303
    async with console_as(stack, rep) as (client, csrf):
        future = await client.post(
            f"{path}/sign", data={"csrf_token": csrf, "sign.signed_on": later(3), "sign.signed_document": "DOC-1"}
        )
        assert future.status_code == 422 and at_field(future.text, "sign.signed_on")
        signed = await client.post(
            f"{path}/sign", data={"csrf_token": csrf, "sign.signed_on": today(), "sign.signed_document": "DOC-1"}
        )
        assert signed.status_code == 303
        page = (await client.get(path)).text
        no_plan = await client.post(
            f"{path}/payments",
            data={
                "csrf_token": csrf,
                "payment.amount": "100",
                "payment.received_on": today(),
                "payment.method": "cash",
            },
        )
        assert no_plan.status_code == 409 and 'id="refused"' in no_plan.text
        disorder = await client.post(
            f"{path}/plan",
            data={
                "csrf_token": csrf,
                "etag": etag_of(page),
                "instalments[0].due_date": later(30),
                "instalments[0].amount": "2000",
                "instalments[1].due_date": "",
                "instalments[1].amount": "",
                "instalments[2].due_date": later(5),
                "instalments[2].amount": "3000",
            },
        )
        assert disorder.status_code == 422
        assert at_field(disorder.text, "instalments[2].due_date")  # the blank row in between kept its place
        planned = await client.post(
            f"{path}/plan",
            data={
                "csrf_token": csrf,
                "etag": etag_of(page),
                "instalments[0].due_date": later(5),
                "instalments[0].amount": "2000",
                "instalments[1].due_date": later(30),
                "instalments[1].amount": "3000",
            },
        )
        assert planned.status_code == 303, planned.text
        paid = await client.post(
            f"{path}/payments",
            data={
                "csrf_token": csrf,
                "payment.amount": "2600",
                "payment.received_on": today(),
                "payment.method": "bank_transfer",
                "payment.reference": "R-1",
            },
        )
        assert paid.status_code == 303
        page = (await client.get(path)).text
        assert 'id="instalment-1-status">已付清' in page and 'id="instalment-2-status">部分已付' in page
        payment_id = re.search(r'<tr id="payment-([^"]+)"', page)
        assert payment_id
        too_much = await client.post(
            f"{path}/refunds",
            data={
                "csrf_token": csrf,
                "refund.payment_id": payment_id.group(1),
                "refund.amount": "9999",
                "refund.reason": "多付",
            },
        )
        assert too_much.status_code == 422 and at_field(too_much.text, "refund.amount")
        refunded = await client.post(
            f"{path}/refunds",
            data={
                "csrf_token": csrf,
                "refund.payment_id": payment_id.group(1),
                "refund.amount": "600",
                "refund.reason": "多付",
            },
        )
        assert refunded.status_code == 303
        bad_rate = await client.post(
            f"{path}/invoices",
            data={
                "csrf_token": csrf,
                "invoice.payment_id": payment_id.group(1),
                "invoice.tax_rate": "13.555",
                "invoice.title": "测试抬头",
            },
        )
        assert bad_rate.status_code == 422 and at_field(bad_rate.text, "invoice.tax_rate")
        issued = await client.post(
            f"{path}/invoices",
            data={
                "csrf_token": csrf,
                "invoice.payment_id": payment_id.group(1),
                "invoice.tax_rate": "13",
                "invoice.title": "测试抬头",
            },
        )
        assert issued.status_code == 303
        page = (await client.get(issued.headers["location"])).text
        assert "发票已开具。" in page and "INV-" in page and "2000.00 CNY" in page
        assert 'id="c-received">2000.00 CNY' in page and 'id="c-outstanding">3000.00 CNY' in page
        listing = await client.get("/contracts", params={"customer_id": customer_id, "status": "signed"})
        assert listing.status_code == 200 and path in listing.text


async def test_a_ticket_from_the_customer_page_to_its_close(stack: Stack) -> None:
    rep = await stack.new_user()
    manager = await stack.new_user(roles=["manager"])
    customer_id = await customer_known_to_sales(stack, rep)
    async with console_as(stack, rep) as (client, csrf):
        customer = (await client.get(f"/customers/{customer_id}")).text
        assert f'href="/tickets/new?customer_id={customer_id}"' in customer
        no_subject = await client.post(
            "/tickets/new", data={"csrf_token": csrf, "customer_id": customer_id, "priority": "urgent"}
        )
        assert no_subject.status_code == 422 and at_field(no_subject.text, "subject")
        made = await client.post(
            "/tickets/new",
            data={
                "csrf_token": csrf,
                "customer_id": customer_id,
                "priority": "urgent",
                "category": "fault",
                "source": "phone",
                "subject": unique("打印机卡纸"),
            },
        )
        assert made.status_code == 303, made.text
        path = made.headers["location"].split("?")[0]
        page = (await client.get(made.headers["location"])).text
        assert "Opened." in page and 'id="sla-first_response-state">On track' in page
        assert 'id="do-assign"' not in page  # a rep does not assign
        empty = await client.post(
            f"{path}/reply", data={"csrf_token": csrf, "etag": etag_of(page), "reply.public": "true"}
        )
        assert empty.status_code == 422 and at_field(empty.text, "reply.body")
        replied = await client.post(
            f"{path}/reply",
            data={
                "csrf_token": csrf,
                "etag": etag_of(page),
                "reply.body": "工程师今天下午上门",
                "reply.public": "true",
            },
        )
        assert replied.status_code == 303
        page = (await client.get(path)).text
        assert "In progress" in page and "工程师今天下午上门" in page
        assert 'id="sla-first_response-state">Met' in page
        no_resolution = await client.post(f"{path}/resolve", data={"csrf_token": csrf})
        assert no_resolution.status_code == 422 and at_field(no_resolution.text, "resolve.resolution")
        resolved = await client.post(f"{path}/resolve", data={"csrf_token": csrf, "resolve.resolution": "更换搓纸轮"})
        assert resolved.status_code == 303
        page = (await client.get(path)).text
        assert 'id="do-visit"' in page and 'id="do-close"' in page
        closed_early = await client.post(f"{path}/close", data={"csrf_token": csrf})
        assert closed_early.status_code in (409, 422) and 'role="alert"' in closed_early.text
        visited = await client.post(
            f"{path}/visit",
            data={"csrf_token": csrf, "visit.satisfaction": "4", "visit.comment": "满意", "visit.channel": "phone"},
        )
        assert visited.status_code == 303
        assert (await client.post(f"{path}/close", data={"csrf_token": csrf})).status_code == 303
        page = (await client.get(path)).text
        assert 'id="t-status" class="status-closed">Closed' in page and "4/5" in page
        listing = await client.get("/tickets", params={"customer_id": customer_id, "status": "closed"})
        assert path in listing.text
        again = await client.post(
            "/tickets/new",
            data={
                "csrf_token": csrf,
                "customer_id": customer_id,
                "subject": unique("回访"),
                "priority": "low",
                "category": "consultation",
                "source": "phone",
            },
        )
        assert again.status_code == 303, again.text
        second = again.headers["location"].split("?")[0]
    async with console_as(stack, manager) as (client, csrf):
        page = (await client.get(second)).text
        assert 'id="do-assign"' in page
        assigned = await client.post(f"{second}/assign", data={"csrf_token": csrf, "assign.assignee_id": rep.id})
        assert assigned.status_code == 303
    async with console_as(stack, rep) as (client, _csrf):
        mine = await client.get("/tickets", params={"assignee_id": rep.id, "priority": "low"})
        assert second in mine.text


async def test_contracts_and_tickets_are_refused_without_their_permissions(stack: Stack) -> None:
    integrator = await stack.new_user(roles=["integrator"])
    async with console_as(stack, integrator) as (client, _csrf):
        for path in ("/contracts", "/contracts/new", "/tickets", "/tickets/new", f"/contracts/{uuid.uuid4()}"):
            assert (await client.get(path)).status_code == 403, path


def test_the_menus_follow_the_permissions() -> None:
    groups = discover()
    hrefs = {role: {e.href for e in menu_for(groups, [role])} for role in ("rep", "manager", "integrator")}
    assert {"/contracts", "/tickets"} <= hrefs["rep"] and {"/contracts", "/tickets"} <= hrefs["manager"]
    assert not {"/contracts", "/tickets"} & hrefs["integrator"]
