"""Administration journeys against the real directory, pipeline, pool, customers and notifications
services: users, the department tree, pipelines and stage requirements, a pool rule previewed
before it is saved, and a webhook's failed delivery replayed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, serving, sign_in
from crm_platform.testing.fixtures import eventually, unique


@pytest.fixture
async def admin_page(page: Any, stack: Stack) -> Any:
    admin = await stack.new_user(roles=["admin"])
    await sign_in(page, admin)
    await page.wait_for_url("**/")
    return page


async def test_a_rep_sees_no_administration(signed_in_page: Any) -> None:
    page = signed_in_page
    await expect(page.get_by_role("link", name="Administration")).to_have_count(0)
    response = await page.goto("/admin/users")
    assert response.status == 403
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


async def test_an_admin_creates_a_user_changes_roles_and_department_and_deactivates_them(
    admin_page: Any, stack: Stack
) -> None:
    page = admin_page
    department = unique("d")
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        made = await directory.post(
            "/v1/departments", json={"id": department, "name": f"华南 {department}", "parent_id": "hq"}
        )
        assert made.status_code == 201, made.text

    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Administration").click()
    await page.get_by_role("navigation", name="Administration sections").get_by_role("link", name="Users").click()
    await expect(page.get_by_role("heading", name="Users")).to_be_visible()
    await screenshot(page, "admin-users")
    await page.get_by_role("button", name="New user").click()
    email = f"{unique('new')}@example.com"
    await page.get_by_label("Name", exact=True).fill("王小明")
    await page.get_by_label("Email").fill("wang@example")
    await page.get_by_label("Department").select_option(label="总部")
    await page.get_by_label("Initial password").fill("a long enough passphrase")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#e-email")).to_be_visible()  # refused at the field, the rest kept
    await expect(page.get_by_label("Name", exact=True)).to_have_value("王小明")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Initial password").fill("a long enough passphrase")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("status")).to_have_text("Created.")
    await expect(page.get_by_role("heading", name="王小明")).to_be_visible()

    await page.get_by_label("Manager").check()
    await page.get_by_label("Department").select_option(label=f"— 华南 {department}")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.get_by_label("Manager")).to_be_checked()
    await expect(page.get_by_label("Sales rep")).to_be_checked()
    await screenshot(page, "admin-user-edit")

    await page.get_by_label("Reason (optional)").fill("离职")
    await page.get_by_role("button", name="Deactivate user").click()
    await expect(page.locator("#user-status")).to_have_text("Deactivated")
    await expect(page.get_by_role("button", name="Reactivate user")).to_be_visible()

    await page.goto(f"/admin/users?q={email}")
    row = page.get_by_role("row", name="王小明")
    await expect(row).to_contain_text("Manager, Sales rep")
    await expect(row).to_contain_text(f"/hq/{department}")
    await expect(row).to_contain_text("Deactivated")
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        refused = await directory.post("/v1/auth/token", json={"email": email, "password": "a long enough passphrase"})
    assert refused.status_code in (401, 403), refused.text


async def test_an_admin_builds_the_department_tree(admin_page: Any) -> None:
    page = admin_page
    east, team = unique("east"), unique("team")
    await page.goto("/admin/departments")
    await expect(page.get_by_role("heading", name="Departments")).to_be_visible()
    new = page.locator("form", has=page.locator("#create-department"))
    await new.get_by_label("Name").fill(f"华东 {east}")
    await new.get_by_label("Short id").fill(east)
    await new.get_by_label("Parent department").select_option(label="总部")
    await page.locator("#create-department").click()
    await expect(page.get_by_role("status")).to_have_text("Created.")
    await new.get_by_label("Name").fill(f"上海组 {team}")
    await new.get_by_label("Short id").fill(team)
    await new.get_by_label("Parent department").select_option(label="总部")
    await page.locator("#create-department").click()
    await expect(page.locator(f"#dept-{team}")).to_contain_text(f"/hq/{team}")

    node = page.locator(f"#dept-{east}")
    await node.locator("summary").first.click()
    await node.get_by_label("Name", exact=True).first.fill(f"华东大区 {east}")
    await node.get_by_role("button", name="Rename").first.click()
    await expect(page.get_by_role("status")).to_have_text("The department is renamed.")
    await expect(page.locator(f"#dept-{east} .dept-name").first).to_have_text(f"华东大区 {east}")

    moved = page.locator(f"#dept-{team}")
    await moved.locator("summary").first.click()
    await moved.get_by_label("Parent department").select_option(label=f"— 华东大区 {east}")
    await moved.get_by_role("button", name="Move").click()
    await expect(page.get_by_role("status")).to_contain_text("The department is moved")
    await expect(page.locator(f"#dept-{east} #dept-{team}")).to_contain_text(f"/hq/{east}/{team}")
    await screenshot(page, "admin-departments")


async def test_an_admin_configures_a_pipeline_and_its_stage_requirements(admin_page: Any) -> None:
    page = admin_page
    name = f"大客户流程 {unique('p')}"
    await page.goto("/admin/pipelines")
    await page.get_by_role("button", name="New pipeline").click()
    await page.locator("#pipeline-form").get_by_label("Name", exact=True).fill(name)
    needs = page.locator("#stage-1")  # 需求确认, prefilled
    await expect(needs.get_by_label("Stage name")).to_have_value("需求确认")
    await needs.get_by_label("Documents required").fill("requirements")
    await needs.get_by_label("Amount", exact=True).check()
    await page.locator("#stage-3").get_by_label("Needs a manager's approval").check()
    # A won stage must have probability 100: the service refuses, the error shows at that stage.
    await page.locator("#stage-4").get_by_label("Win probability (%)").fill("90")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#stage-4 .field-error")).to_contain_text("100")
    await expect(page.locator("#stage-1").get_by_label("Documents required")).to_have_value("requirements")
    await page.locator("#stage-4").get_by_label("Win probability (%)").fill("100")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Created.")

    # Add a stage through the blank block and put it second.
    added = page.locator("#stage-6")
    await added.get_by_label("Stage name").fill("技术交流")
    await added.get_by_label("Win probability (%)").fill("20")
    await added.get_by_label("Position").fill("2")
    await page.locator("#stage-1").get_by_label("Position").fill("3")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.locator("#stage-1").get_by_label("Stage name")).to_have_value("技术交流")
    await expect(page.locator("#stage-2").get_by_label("Stage name")).to_have_value("需求确认")
    await expect(page.locator("#stage-2").get_by_label("Documents required")).to_have_value("requirements")
    await expect(page.locator("#stage-2").get_by_label("Amount", exact=True)).to_be_checked()
    await expect(page.locator("#stage-4").get_by_label("Needs a manager's approval")).to_be_checked()
    await screenshot(page, "admin-pipeline-edit")
    await page.goto("/admin/pipelines")
    await expect(page.get_by_role("row", name=name)).to_contain_text(
        "Initial contact → 技术交流 → Needs confirmed → Proposal"
    )


async def test_a_pool_rule_is_previewed_before_it_is_saved(admin_page: Any, stack: Stack, user: User) -> None:
    page = admin_page
    customer = f"公海预览 {unique('c')}"
    token = await stack.token_for(user)
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers={"Authorization": f"Bearer {token}"}) as c:
        created = await c.post("/v1/customers", json={"kind": "company", "name": customer})
        assert created.status_code == 201, created.text
    ahead = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=10)).date().isoformat()

    await page.goto("/admin/pool-rules")
    await page.get_by_role("button", name="New rule").click()
    await page.get_by_label("Name").fill(f"七天未跟进 {unique('r')}")
    await page.get_by_label("Applies to").select_option(label="总部")
    await page.get_by_label("Days without follow-up").fill("7")
    await page.get_by_label("Preview as of").fill(ahead)

    async def previewed() -> bool:  # the pool service learns of the customer through its events
        await page.get_by_role("button", name="Preview").click()
        await expect(page.locator("#preview-title")).to_be_visible()
        return await page.locator("#preview-table tr", has_text=customer).count() == 1

    await eventually(previewed, timeout=30, interval=0.5, message="the customer in the preview")
    row = page.locator("#preview-table tr", has_text=customer)
    await expect(row).to_contain_text("Back to the pool")
    await expect(row).to_contain_text("No follow-up for")
    await screenshot(page, "admin-pool-rule-preview")

    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Created.")
    await expect(page.get_by_label("Days without follow-up")).to_have_value("7")
    await page.goto("/admin/pool-rules")
    await expect(page.get_by_role("row", name="七天未跟进")).to_contain_text("/hq")


class Receiver:
    """A webhook receiver that fails (503) until told to accept."""

    def __init__(self) -> None:
        self.accept = False
        self.received = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.received += 1
        status = 200 if self.accept else 503
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if self.accept else b"down"})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    async with serving(app) as url:
        yield app, url


async def test_a_failed_webhook_delivery_is_seen_and_replayed(
    admin_page: Any, stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    page = admin_page
    app, url = receiver
    await page.goto("/admin/webhooks")
    await page.get_by_label("Receiver URL").fill(f"{url}/hook")
    await page.get_by_label("Event types").fill("crm.customer.created")
    await page.get_by_label("Description").fill("ERP 同步")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#hook-secret")).to_be_visible()
    hook_url = page.url if "/admin/webhooks/" in page.url else None
    hook_id = await page.locator("form[action$='/enabled']").get_attribute("action")
    assert hook_id
    hook_path = hook_id.removesuffix("/enabled")
    del hook_url

    name = f"Webhook 客户 {unique('c')}"
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as customers:
        created = await customers.post("/v1/customers", json={"kind": "company", "name": name})
        assert created.status_code == 201, created.text
    subject = created.json()["id"]

    async def dead() -> bool:
        await page.goto(f"{hook_path}?status=dead")
        return await page.locator("#deliveries tr", has_text=subject).count() == 1

    await eventually(dead, timeout=30, interval=0.5, message="the delivery is dead")
    row = page.locator("#deliveries tr", has_text=subject)
    await expect(row).to_contain_text("Failed")
    await expect(row).to_contain_text("HTTP 503")
    await screenshot(page, "admin-webhook-deliveries")

    app.accept = True
    await row.get_by_role("button", name="Send again").click()
    await expect(page.get_by_role("status")).to_have_text("The delivery is queued to be sent again.")

    async def delivered() -> bool:
        await page.goto(f"{hook_path}?status=delivered")
        return await page.locator("#deliveries tr", has_text=subject).count() == 1

    await eventually(delivered, timeout=30, interval=0.5, message="the replay is delivered")
    await page.locator("#deliveries tr", has_text=subject).get_by_role("link").click()
    await expect(page.get_by_role("cell", name="HTTP 200")).to_be_visible()
    await expect(page.get_by_role("cell", name="HTTP 503").first).to_be_visible()
