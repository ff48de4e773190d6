"""The audit page (holders of ``audit:view``) and the export approval journey, in the browser.

Audit: entries made by real events (a failed sign-in at the directory, an administrator's own
sign-in through the console), searched by who, what, from where and when, paged newest first, and
exported as CSV; a bad time range is shown next to its field; a rep has neither the menu entry nor
the page. Export approval: with a threshold set, a rep's export button lands on their request,
"awaiting approval"; a manager of the rep's department approves it with a comment; the rep
downloads the file.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import expect

import crm_console.pages.audit.routes as audit_routes
from crm_console.testing import Stack, screenshot, sign_in
from crm_platform.testing.fixtures import auth, eventually, unique

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the console's default zone for a new session


async def entries(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.urls["audit"], headers=stack.admin_headers) as client:
        answer = await client.get("/v1/audit", params={"limit": 500, **params})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def failed_sign_in(stack: Stack, email: str) -> None:
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as client:
        answer = await client.post("/v1/auth/token", json={"email": email, "password": "not the password at all"})
    assert answer.status_code == 401, answer.text


def local(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


async def test_an_administrator_searches_pages_and_exports_the_audit_log(
    page: Any, stack: Stack, monkeypatch: Any
) -> None:
    admin = await stack.new_user(["admin"])
    nobody = f"{unique('nobody')}@example.com"
    for _ in range(3):
        await failed_sign_in(stack, nobody)

    async def recorded() -> list[dict[str, Any]]:
        found = [e for e in await entries(stack, action="auth.sign_in_failed") if e["details"].get("email") == nobody]
        return found if len(found) == 3 else []

    failures = await eventually(recorded, timeout=30, message="three failed sign-ins in the audit log")
    address = failures[0]["client_address"]
    assert address

    await sign_in(page, admin)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Audit log").click()
    await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    # The administrator's own sign-in is there too, once the audit service has it.
    await eventually(lambda: entries(stack, actor=admin.id, action="auth.signed_in"), timeout=30, message="sign-in")

    # What and from where, in pages of two (newest first): the three failures for this address.
    monkeypatch.setattr(audit_routes, "PAGE_SIZE", 2)
    await page.get_by_label("What").select_option(label="Sign-in failed")
    await page.get_by_label("From where (address)").fill(address)
    await page.get_by_label("From", exact=True).fill(local(datetime.now(SHANGHAI) - timedelta(hours=1)))
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("tr.audit-entry")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Sign-in failed")
    await expect(rows.first).to_contain_text(address)
    await screenshot(page, "audit-search")
    await page.locator("#audit-more").click()
    await expect(rows.first).to_contain_text("Sign-in failed")  # the older page: what is left of the search

    # Who: the administrator's own sign-in.
    await page.goto("/audit")
    await page.get_by_label("Who (user id)").fill(admin.id)
    await page.get_by_label("What").select_option(label="Signed in")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(admin.name)

    # The search as CSV, through the console (the audit service records the export as this admin's).
    monkeypatch.setattr(audit_routes, "PAGE_SIZE", 50)
    await page.goto(f"/audit?action=auth.sign_in_failed&address={address}")
    async with page.expect_download() as info:
        await page.locator("#audit-export").click()
    exported = (await (await info.value).path()).read_text(encoding="utf-8-sig")
    assert exported.splitlines()[0].startswith("entry_id,at,actor_id")
    assert sum(nobody in line for line in exported.splitlines()) == 3
    await eventually(lambda: entries(stack, actor=admin.id, action="audit.exported"), timeout=30, message="export")

    # A time range the service refuses is shown next to its field, in the page.
    start = datetime.now(SHANGHAI)
    answer = await page.goto(f"/audit?start={local(start)}&end={local(start - timedelta(hours=1))}")
    assert answer is not None and answer.status == 422
    await expect(page.locator("#e-end")).to_be_visible()
    await expect(page.get_by_label("Until")).to_have_attribute("aria-invalid", "true")


async def test_the_audit_page_speaks_chinese_and_is_refused_to_a_rep(page: Any, stack: Stack) -> None:
    admin = await stack.new_user(["admin"], language="zh-CN")
    await sign_in(page, admin)
    await page.wait_for_url("**/")
    await page.goto("/audit")
    await expect(page.get_by_role("heading", name="审计日志")).to_be_visible()
    await expect(page.get_by_role("button", name="查询")).to_be_visible()
    await page.locator("#sign-out").click()

    rep = await stack.new_user(["rep"])
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await expect(page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Audit log")).to_have_count(
        0
    )
    answer = await page.goto("/audit")
    assert answer is not None and answer.status == 403


async def set_threshold(stack: Stack, value: int | None) -> None:
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as client:
        answer = await client.put("/v1/customers/export-policy", json={"approval_above_rows": value})
    assert answer.status_code == 200, answer.text


async def test_a_large_export_waits_for_a_managers_approval_then_downloads(
    browser: Any, page: Any, stack: Stack
) -> None:
    rep = await stack.new_user(["rep"])
    manager = await stack.new_user(["manager"])
    marker = unique("审批")
    async with httpx.AsyncClient(
        base_url=stack.urls["customers"], headers={"Authorization": f"Bearer {await stack.token_for(rep)}"}
    ) as client:
        for i in range(2):
            body = {"kind": "company", "name": f"{marker}{i}有限公司", "tags": [marker]}
            created = await client.post("/v1/customers", json=body)
            assert created.status_code == 201, created.text
    await set_threshold(stack, 1)
    try:
        await sign_in(page, rep)
        await page.wait_for_url("**/")
        await page.goto(f"/customers?tags_all={marker}")
        await page.locator("#export-customers").click()
        await page.wait_for_url("**/export-requests/*")
        await expect(page.locator("#export-held")).to_contain_text("awaits a manager's approval")
        await expect(page.locator("#request-status")).to_have_text("Awaiting approval")
        request_url = page.url.split("?")[0]

        context = await browser.new_context(base_url=stack.console_url, locale="en-US")
        try:
            approver = await context.new_page()
            await sign_in(approver, manager)
            await approver.wait_for_url("**/")
            await (
                approver.get_by_role("navigation", name="Main menu").get_by_role("link", name="Export requests").click()
            )
            row = approver.locator("#pending-requests tr.export-request", has_text=rep.id)
            await expect(row).to_be_visible()
            await expect(row).to_contain_text(f"tags_all={marker}")
            await screenshot(approver, "exports-pending")
            await row.get_by_role("link").first.click()
            await approver.get_by_label("Comment").fill("季度复盘用")
            await approver.get_by_role("button", name="Approve").click()
            await expect(approver.locator("#request-status")).to_have_text("Approved")
            await expect(approver.locator("#request-comment")).to_have_text("季度复盘用")
        finally:
            await context.close()

        await page.goto(request_url)
        await expect(page.locator("#request-status")).to_have_text("Approved")
        async with page.expect_download() as info:
            await page.locator("#download-export").click()
        exported = (await (await info.value).path()).read_text(encoding="utf-8-sig")
        assert f"{marker}0有限公司" in exported and f"{marker}1有限公司" in exported
        await page.goto("/export-requests")
        await expect(page.locator("#my-requests tr.export-request").first).to_contain_text("Approved")

        # Every step is in the audit log (approver and requester named), and the rep was told.
        request_id = request_url.rsplit("/", 1)[-1]
        wanted = {"customer.export_requested", "customer.export_approved", "customer.export_downloaded"}

        async def audited() -> bool:
            found = await entries(stack, target_type="export_request", target_id=request_id)
            return {e["action"] for e in found} == wanted

        await eventually(audited, timeout=30, message="the export request's steps in the audit log")
        approved = await entries(stack, target_id=request_id, action="customer.export_approved")
        assert approved[0]["actor_id"] == manager.id and approved[0]["details"]["comment"] == "季度复盘用"
        token = await stack.token_for(rep)
        async with httpx.AsyncClient(
            base_url=stack.urls["notifications"], headers={"Authorization": f"Bearer {token}"}
        ) as client:

            async def told() -> bool:
                answer = await client.get("/v1/notifications")
                return any(n["kind"] == "export_approved" for n in answer.json()["items"])

            await eventually(told, timeout=30, message="the rep's notification of the approval")
    finally:
        await set_threshold(stack, None)
    # The threshold off again: the same export streams at once.
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=auth(rep.id, ["rep"], "/hq")) as client:
        answer = await client.get("/v1/customers/export.csv", params={"tags_all": marker})
    assert answer.status_code == 200


async def test_an_administrator_sets_the_threshold_with_its_history_and_a_refusal_at_the_field(
    page: Any, stack: Stack
) -> None:
    admin = await stack.new_user(["admin"])
    await sign_in(page, admin)
    await page.wait_for_url("**/")
    try:
        await page.goto("/export-requests")
        await page.locator("#policy-link").click()
        await expect(page.get_by_role("heading", name="Export approval threshold")).to_be_visible()
        field = page.get_by_label("Approval needed above (rows)")
        await field.fill("-3")
        await page.locator("#save-policy").click()
        await expect(field).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#e-approval_above_rows")).to_be_visible()
        await field.fill("7")
        await page.locator("#save-policy").click()
        await expect(page.locator("#policy-saved")).to_be_visible()
        await expect(page.locator("#policy-state")).to_contain_text("more than 7 rows")
        latest = page.locator("#policy-history tbody tr").first
        await expect(latest).to_contain_text(admin.id)
        await expect(latest).to_contain_text("7")
        await page.get_by_label("Approval needed above (rows)").fill("")
        await page.locator("#save-policy").click()
        await expect(page.locator("#policy-state")).to_contain_text("Export approval is off")
    finally:
        await set_threshold(stack, None)

    # A manager answers requests but does not set the threshold.
    manager = await stack.new_user(["manager"])
    await page.locator("#sign-out").click()
    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.goto("/export-requests")
    await expect(page.locator("#policy-link")).to_have_count(0)
    answer = await page.goto("/export-requests/policy")
    assert answer is not None and answer.status == 403
