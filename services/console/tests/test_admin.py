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
    # Far above what any test holds: the rule covers every owner under 总部 in this session.
    await page.get_by_label("Most customers one owner may hold").fill("100000")
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
    await expect(page.get_by_label("Most customers one owner may hold")).to_have_value("100000")
    await page.goto("/admin/pool-rules")
    await expect(page.get_by_role("row", name="七天未跟进")).to_contain_text("/hq")
    await expect(page.get_by_role("row", name="七天未跟进")).to_contain_text("100000")


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


async def test_an_admin_sets_a_new_password_for_a_user_who_lost_theirs(admin_page: Any, stack: Stack) -> None:
    page = admin_page
    forgetful = await stack.new_user(name=f"忘记密码 {unique('u')}")
    await page.goto(f"/admin/users/{forgetful.id}")
    await page.get_by_label("New password", exact=True).fill("short")
    await page.get_by_role("button", name="Set a new password").click()
    await expect(page.locator("#e-new_password")).to_contain_text("at least")  # the directory's policy, at the field
    await page.get_by_label("New password", exact=True).fill("a brand new passphrase")
    await page.get_by_role("button", name="Set a new password").click()
    await expect(page.get_by_role("status")).to_have_text(
        "A new password is set; the user's open sessions are signed out."
    )
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as directory:
        old = await directory.post("/v1/auth/token", json={"email": forgetful.email, "password": forgetful.password})
        new = await directory.post(
            "/v1/auth/token", json={"email": forgetful.email, "password": "a brand new passphrase"}
        )
        history = await directory.get(f"/v1/users/{forgetful.id}/history", headers=stack.admin_headers)
    assert old.status_code == 401, old.text
    assert new.status_code == 200, new.text
    assert history.status_code == 200, history.text
    assert any("password" in str(entry) for entry in history.json()), history.json()


async def test_an_admin_deletes_an_empty_department_and_hears_why_a_full_one_stays(
    admin_page: Any, stack: Stack
) -> None:
    page = admin_page
    full, empty = unique("full"), unique("empty")
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        for department in (full, empty):
            made = await directory.post(
                "/v1/departments", json={"id": department, "name": f"部门 {department}", "parent_id": "hq"}
            )
            assert made.status_code == 201, made.text
        member = await directory.post(
            "/v1/users",
            json={"email": f"{unique('m')}@example.com", "name": "成员", "roles": ["rep"], "department_id": full},
        )
        assert member.status_code == 201, member.text

    await page.goto("/admin/departments")
    node = page.locator(f"#dept-{full}")
    await node.locator("summary").first.click()
    async with page.expect_response(lambda r: r.url.endswith(f"/admin/departments/{full}/delete")) as refused:
        await node.get_by_role("button", name="Delete").first.click()
    assert (await refused.value).status == 409  # the service's conflict, not a form's 422
    await expect(page.locator("#problem")).to_have_text(
        "The department is not empty: 0 sub-department(s) and 1 user(s), deactivated users included. "
        "Move them out first."
    )
    await expect(page.locator(f"#dept-{full}")).to_be_visible()

    node = page.locator(f"#dept-{empty}")
    await node.locator("summary").first.click()
    await node.get_by_role("button", name="Delete").first.click()
    await expect(page.get_by_role("status")).to_have_text("Deleted.")
    await expect(page.locator(f"#dept-{empty}")).to_have_count(0)
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        gone = await directory.get(f"/v1/departments/{empty}")
        kept = await directory.get(f"/v1/departments/{full}")
    assert gone.status_code == 404 or gone.json().get("status") == "deleted", gone.text
    assert kept.status_code == 200 and kept.json().get("status", "active") == "active", kept.text


async def test_an_admin_deletes_a_pool_rule(admin_page: Any, stack: Stack) -> None:
    page = admin_page
    name = f"删除的规则 {unique('r')}"
    async with httpx.AsyncClient(base_url=stack.urls["pool"], headers=stack.admin_headers) as pool:
        made = await pool.post(
            "/v1/pool/rules",
            json={"name": name, "department_path": f"/hq/{unique('d')}", "no_interaction_days": 30},
        )
        assert made.status_code == 201, made.text
    rule_id = made.json()["rule_id"]

    await page.goto("/admin/pool-rules")
    await page.get_by_role("row", name=name).get_by_role("link").first.click()
    await page.get_by_role("button", name="Delete this rule").click()
    await expect(page.get_by_role("status")).to_have_text("Deleted.")
    await expect(page.get_by_role("row", name=name)).to_have_count(0)
    async with httpx.AsyncClient(base_url=stack.urls["pool"], headers=stack.admin_headers) as pool:
        listed = await pool.get("/v1/pool/rules", params={"include_deleted": "true"})
    assert [r.get("deleted") for r in listed.json() if r["rule_id"] == rule_id] == [True], listed.text


async def test_an_admin_edits_a_webhook(admin_page: Any, stack: Stack) -> None:
    page = admin_page
    async with httpx.AsyncClient(base_url=stack.urls["notifications"], headers=stack.admin_headers) as hooks:
        made = await hooks.post(
            "/v1/webhooks",
            json={
                "url": "http://127.0.0.1:9/old",
                "event_types": ["crm.customer.created"],
                "description": "旧",
                "enabled": False,
            },
        )
        assert made.status_code == 201, made.text
    hook_id = made.json()["id"]

    await page.goto(f"/admin/webhooks/{hook_id}")
    await page.get_by_text("Change URL, event types or description").click()
    edit = page.locator("#hook-edit")
    await edit.get_by_label("Receiver URL").fill("ftp://127.0.0.1/new")
    await edit.get_by_role("button", name="Save").click()
    await expect(page.locator("#hook-edit #e-url")).to_be_visible()  # refused at the field, the rest kept
    await expect(page.locator("#hook-edit").get_by_label("Description")).to_have_value("旧")
    edit = page.locator("#hook-edit")
    await edit.get_by_label("Receiver URL").fill("http://127.0.0.1:9/new")
    await edit.get_by_label("Event types").fill("crm.customer.*, crm.opportunity.won")
    await edit.get_by_label("Description").fill("ERP 新地址")
    await edit.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.locator("#hook-url")).to_have_text("http://127.0.0.1:9/new")
    await expect(page.locator("#hook-description")).to_have_text("ERP 新地址")
    async with httpx.AsyncClient(base_url=stack.urls["notifications"], headers=stack.admin_headers) as hooks:
        saved = (await hooks.get(f"/v1/webhooks/{hook_id}")).json()
    assert saved["url"] == "http://127.0.0.1:9/new"
    assert saved["event_types"] == ["crm.customer.*", "crm.opportunity.won"]
    assert saved["description"] == "ERP 新地址"
    assert saved["version"] == made.json()["version"] + 1


async def test_an_admin_defines_a_role_with_scopes_and_field_rules_and_gives_it_to_a_user(
    admin_page: Any, stack: Stack
) -> None:
    page = admin_page
    role_id = unique("svc").lower()
    await page.goto("/admin")
    await page.get_by_role("navigation", name="Administration sections").get_by_role("link", name="Roles").click()
    await expect(page.get_by_role("heading", name="Roles")).to_be_visible()
    await expect(page.get_by_role("row", name="Sales rep")).to_contain_text("Built in")
    await page.get_by_role("button", name="New role").click()
    await page.get_by_label("Id").fill(role_id)
    await page.get_by_label("Name (Chinese)").fill("客服专员")
    await page.get_by_label("Name (English)").fill(f"Service {role_id}")
    await page.get_by_label("customers:view").check()
    await page.get_by_label("opportunities:view").check()
    await page.locator("#f-scope\\:customers").select_option(label="Own department")
    await page.locator("#f-field\\:customers\\:phones").select_option(label="Hidden")
    await page.locator("#f-field\\:opportunities\\:amount").select_option(label="Hidden")
    await page.locator("#f-field\\:customers\\:tier").select_option(label="Read only")
    # Interactions, tasks and feedback offer their protectable fields too.
    await page.locator("#f-field\\:interactions\\:minutes").select_option(label="Hidden")
    await page.locator("#f-field\\:tasks\\:notes").select_option(label="Read only")
    await page.locator("#f-field\\:feedback\\:resolution").select_option(label="Hidden")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("status")).to_have_text("Created.")
    await expect(page.locator("#f-field\\:customers\\:phones")).to_have_value("hidden")
    await expect(page.get_by_label("customers:view")).to_be_checked()
    await screenshot(page, "admin-role-edit")

    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        stored = (await directory.get(f"/v1/roles/{role_id}")).json()
        assert stored["fields"] == {
            "customers": {"phones": "hidden", "tier": "read"},
            "opportunities": {"amount": "hidden"},
            "interactions": {"minutes": "hidden"},
            "tasks": {"notes": "read"},
            "feedback": {"resolution": "hidden"},
        }
        assert stored["scopes"] == {"customers": "department"}
        assert set(stored["permissions"]) == {"account:self", "customers:view", "opportunities:view"}
        # A rule on a custom field, set through the API, survives a save from the form.
        patched = await directory.patch(
            f"/v1/roles/{role_id}",
            json={
                "fields": {
                    **stored["fields"],
                    "customers": {**stored["fields"]["customers"], "custom.budget": "hidden"},
                }
            },
            headers={"If-Match": f'"{stored["version"]}"'},
        )
        assert patched.status_code == 200, patched.text

    await page.reload()
    await page.locator("#f-field\\:customers\\:tier").select_option(label="Read and write")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        stored = (await directory.get(f"/v1/roles/{role_id}")).json()
    assert stored["fields"]["customers"] == {"phones": "hidden", "custom.budget": "hidden"}
    assert stored["fields"]["feedback"] == {"resolution": "hidden"}

    # The same id again is refused on the form, the rest kept.
    await page.goto("/admin/roles/new")
    await page.get_by_label("Id").fill(role_id)
    await page.get_by_label("Name (Chinese)").fill("重复")
    await page.get_by_label("Name (English)").fill("Again")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#e-id")).to_be_visible()
    await expect(page.get_by_label("Name (English)")).to_have_value("Again")

    # Users can now be given the role, by its name.
    holder = await stack.new_user(roles=["rep"], name=unique("持有人"))
    await page.goto(f"/admin/users/{holder.id}")
    await page.get_by_label(f"Service {role_id}").check()
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.get_by_label(f"Service {role_id}")).to_be_checked()
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        user = (await directory.get(f"/v1/users/{holder.id}")).json()
    assert set(user["roles"]) == {"rep", role_id}
