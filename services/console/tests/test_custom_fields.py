"""Custom fields in the console, against the real customers service: a rep sets custom values on
a new customer (a refused value shown at its field, the rest kept), sees them on the customer
page with the fields' labels, and changes one in the edit form (only what changed is sent)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot
from crm_platform.testing.fixtures import unique


def key(prefix: str) -> str:
    """A field key no other test uses (keys are a-z, 0-9 and _)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def define(stack: Stack, module: str, body: dict[str, Any]) -> dict[str, Any]:
    service = {"customers": "customers", "opportunities": "pipeline"}[module]
    async with httpx.AsyncClient(base_url=stack.urls[service], headers=stack.admin_headers) as client:
        answer = await client.post(f"/v1/fields/{module}", json=body)
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_a_rep_sets_custom_values_sees_them_on_the_customer_page_and_changes_one(
    stack: Stack, signed_in_page: Any, user: User
) -> None:
    page = signed_in_page
    seats, segment, renewal = key("seats"), key("segment"), key("renewal")
    tag = uuid.uuid4().hex[:6]
    await define(
        stack,
        "customers",
        {
            "key": seats,
            "type": "number",
            "labels": {"zh-CN": f"席位数 {tag}", "en": f"Seats {tag}"},
            "help": {"zh-CN": "购买的席位", "en": "Seats bought"},
            "validation": {"min": 1, "max": 1000},
        },
    )
    await define(
        stack,
        "customers",
        {
            "key": segment,
            "type": "choice",
            "labels": {"zh-CN": f"细分 {tag}", "en": f"Segment {tag}"},
            "options": [
                {"key": "smb", "labels": {"zh-CN": "中小企业", "en": "Small business"}},
                {"key": "ent", "labels": {"zh-CN": "大型企业", "en": "Enterprise"}},
            ],
        },
    )
    await define(
        stack,
        "customers",
        {"key": renewal, "type": "date", "labels": {"zh-CN": f"续约日 {tag}", "en": f"Renewal {tag}"}},
    )

    await page.goto("/customers/new")
    name = unique("星河软件")
    await page.get_by_label("Name", exact=True).fill(name)
    seats_input = page.get_by_label(f"Seats {tag}")
    await seats_input.fill("5000")
    await page.get_by_label(f"Segment {tag}").select_option(label="Enterprise")
    await page.get_by_role("button", name="Create customer").click()
    # Refused at the field, with the service's reason; what was typed is kept.
    await expect(seats_input).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(f"[id='e-custom.{seats}']")).to_contain_text("1000")
    await expect(page.get_by_label(f"Segment {tag}")).to_have_value("ent")
    await expect(page.get_by_label("Name", exact=True)).to_have_value(name)
    await screenshot(page, "customers-custom-refused")
    await seats_input.fill("120")
    await page.get_by_role("button", name="Create customer").click()
    await page.wait_for_url("**/customers/*?created=1")

    profile = page.locator("#profile")
    await expect(profile.get_by_text(f"Seats {tag}")).to_be_visible()
    await expect(page.locator(f"#p-custom-{seats}")).to_have_text("120")
    await expect(page.locator(f"#p-custom-{segment}")).to_have_text("Enterprise")  # the option's label
    await expect(page.locator(f"#p-custom-{renewal}")).to_have_count(0)  # no value: nothing shown

    await page.get_by_role("button", name="Edit").click()
    await expect(page.get_by_label(f"Seats {tag}")).to_have_value("120")
    await page.get_by_label(f"Renewal {tag}").fill("2027-03-31")
    await page.get_by_label(f"Segment {tag}").select_option(label="Small business")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#notice")).to_contain_text("Profile saved.")
    await expect(page.locator(f"#p-custom-{segment}")).to_have_text("Small business")
    await expect(page.locator(f"#p-custom-{renewal}")).to_have_text("2027-03-31")
    await expect(page.locator(f"#p-custom-{seats}")).to_have_text("120")
    await screenshot(page, "customers_detail-custom")

    # The service holds what the page shows; the untouched value was not re-sent.
    token = await stack.token_for(user)
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
        cid = page.url.split("/customers/")[1].split("?")[0]
        answer = await client.get(f"/v1/customers/{cid}", headers={"Authorization": f"Bearer {token}"})
        history = await client.get(f"/v1/customers/{cid}/history", headers={"Authorization": f"Bearer {token}"})
    assert answer.json()["custom"] == {seats: 120, segment: "smb", renewal: "2027-03-31"}
    changed = {c["field"] for entry in history.json() if entry["version"] > 1 for c in entry.get("changes") or []}
    assert f"custom.{segment}" in changed and f"custom.{renewal}" in changed
    assert f"custom.{seats}" not in changed


async def test_the_customer_page_shows_labels_in_chinese(stack: Stack, page: Any) -> None:
    from crm_console.testing import sign_in

    rep = await stack.new_user(language="zh-CN")
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    tier = key("tier")
    tag = uuid.uuid4().hex[:6]
    await define(
        stack,
        "customers",
        {
            "key": tier,
            "type": "multi_choice",
            "labels": {"zh-CN": f"产品线 {tag}", "en": f"Product lines {tag}"},
            "options": [
                {"key": "erp", "labels": {"zh-CN": "企业资源", "en": "ERP"}},
                {"key": "crm", "labels": {"zh-CN": "客户管理", "en": "CRM"}},
            ],
        },
    )
    token = await stack.token_for(rep)
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
        made = await client.post(
            "/v1/customers",
            json={"kind": "company", "name": unique("中文测试"), "custom": {tier: ["erp", "crm"]}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert made.status_code == 201, made.text
    await page.goto(f"/customers/{made.json()['id']}")
    await expect(page.locator("#profile").get_by_text(f"产品线 {tag}")).to_be_visible()
    await expect(page.locator(f"#p-custom-{tier}")).to_have_text("企业资源、客户管理")


async def test_an_admin_defines_changes_and_archives_a_field(stack: Stack, page: Any) -> None:
    from crm_console.testing import sign_in

    admin = await stack.new_user(roles=["admin"])
    await sign_in(page, admin)
    await page.wait_for_url("**/")
    level, tag = key("level"), uuid.uuid4().hex[:6]

    await page.goto("/admin")
    sections = page.get_by_role("navigation", name="Administration sections")
    await sections.get_by_role("link", name="Custom fields").click()
    await expect(page.get_by_role("heading", name="Custom fields")).to_be_visible()
    await page.get_by_role("navigation", name="Modules").get_by_role("link", name="Contacts").click()
    await expect(page.get_by_role("table", name="Custom fields of Contacts")).to_be_attached()
    await page.get_by_role("navigation", name="Modules").get_by_role("link", name="Customers").click()
    await page.get_by_role("button", name="New field").click()
    await page.get_by_label("Key", exact=True).fill(level)
    await page.get_by_label("Type", exact=True).select_option(label="Choice")
    await page.get_by_label("Label (Chinese)").fill(f"级别 {tag}")
    await page.get_by_label("Label (English)").fill(f"Level {tag}")
    await page.get_by_label("Help (English)").fill("How big the account is")
    await page.get_by_label("Text: maximum length").fill("20")  # a rule for another type
    options = page.get_by_label("Options (choice types)")
    await options.fill("gold | 金牌 | Gold\nsilver | 银牌 | Silver\ngold | 重复 | Again")
    await page.get_by_role("button", name="Define field").click()
    # Each refusal at its input; what was typed is kept.
    await expect(page.get_by_label("Text: maximum length")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("[id='e-validation.max_length']")).to_contain_text("does not apply")
    await expect(page.locator("#e-options")).to_contain_text("gold")
    await expect(page.get_by_label("Label (English)")).to_have_value(f"Level {tag}")
    await page.get_by_label("Text: maximum length").fill("")
    await page.get_by_label("Options (choice types)").fill("gold | 金牌 | Gold\nsilver | 银牌 | Silver")
    await page.get_by_role("button", name="Define field").click()
    await expect(page.get_by_role("status")).to_have_text("Created.")
    await expect(page.get_by_role("heading", name=f"Level {tag}")).to_be_visible()
    await screenshot(page, "admin-field-edit")

    # Change it: a new option, the old ones deactivated or kept; sent with If-Match.
    await page.get_by_label("Label (English)").fill(f"Account level {tag}")
    await page.get_by_label("Options (choice types)").fill(
        "gold | 金牌 | Gold\nsilver | 银牌 | Silver | inactive\nbronze | 铜牌 | Bronze"
    )
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.get_by_label("Options (choice types)")).to_have_value(
        "gold | 金牌 | Gold\nsilver | 银牌 | Silver | inactive\nbronze | 铜牌 | Bronze"
    )
    # Dropping an option is refused at the options.
    await page.get_by_label("Options (choice types)").fill("gold | 金牌 | Gold")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#e-options")).to_contain_text("never removed")

    # The new-customer form offers the active options only.
    await page.goto("/customers/new")
    select = page.get_by_label(f"Account level {tag}")
    await expect(select.locator("option")).to_have_text(["— not set —", "Gold", "Bronze"])
    await expect(page.get_by_text("How big the account is")).to_be_visible()

    await page.goto("/admin/fields?module=customers")
    row = page.locator(f"#field-{level}")
    await expect(row).to_contain_text("Choice")
    await expect(row).to_contain_text("Active")
    await screenshot(page, "admin-fields")
    await row.get_by_role("link").click()
    await page.get_by_role("button", name="Archive field").click()
    await expect(page.get_by_role("status")).to_have_text("The field is archived.")
    await expect(page.locator(f"#field-{level}")).to_contain_text("Archived")
    await page.goto("/customers/new")
    await expect(page.get_by_label(f"Account level {tag}")).to_have_count(0)


async def test_a_rep_cannot_open_the_fields_page(signed_in_page: Any) -> None:
    response = await signed_in_page.goto("/admin/fields")
    assert response.status == 403


async def test_kanban_cards_show_the_opportunities_custom_values(stack: Stack, page: Any) -> None:
    from crm_console.testing import sign_in
    from crm_platform.testing.fixtures import eventually

    rep = await stack.new_user()
    region, budget, tag = key("region"), key("budget"), uuid.uuid4().hex[:6]
    await define(
        stack,
        "opportunities",
        {
            "key": region,
            "type": "choice",
            "labels": {"zh-CN": f"大区 {tag}", "en": f"Region {tag}"},
            "options": [{"key": "east", "labels": {"zh-CN": "华东", "en": "East"}}],
        },
    )
    labels = {"zh-CN": f"预算 {tag}", "en": f"Budget {tag}"}
    await define(stack, "opportunities", {"key": budget, "type": "money", "labels": labels})
    token = await stack.token_for(rep)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as customers:
        made = await customers.post("/v1/customers", json={"kind": "company", "name": unique("看板客户")}, headers=auth)
    assert made.status_code == 201, made.text
    deal = unique("定制项目")
    body = {
        "customer_id": made.json()["id"],
        "name": deal,
        "custom": {region: "east", budget: {"amount": "80000", "currency": "CNY"}},
    }
    async with httpx.AsyncClient(base_url=stack.urls["pipeline"]) as pipeline:

        async def create() -> bool:
            answer = await pipeline.post("/v1/opportunities", json=body, headers=auth)
            assert answer.status_code in (201, 404, 409, 422), answer.text  # the customer may not be known yet
            if answer.status_code == 422:
                assert '"custom.' not in answer.text, answer.text
            return answer.status_code == 201

        await eventually(create, timeout=60, interval=0.3, message="opportunity created")

    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto("/pipeline")
    card = page.locator("#board li.card", has=page.locator(".card-name", has_text=deal))
    await expect(card.locator(f"[data-field='{region}']")).to_have_text(f"Region {tag}: East")
    await expect(card.locator(f"[data-field='{budget}']")).to_have_text(f"Budget {tag}: 80000.00 CNY")


async def test_a_custom_field_the_role_hides_is_not_on_the_customer_page(stack: Stack, page: Any) -> None:
    from crm_console.testing import sign_in
    from crm_platform.testing.fixtures import eventually

    shown_key, secret, tag = key("shown"), key("secret"), uuid.uuid4().hex[:6]
    for field_key, word in ((shown_key, "Shown"), (secret, "Secret")):
        labels = {"zh-CN": f"{word} {tag}", "en": f"{word} {tag}"}
        await define(stack, "customers", {"key": field_key, "type": "text", "labels": labels})
    role_id = unique("viewer").lower()
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        made = await directory.post(
            "/v1/roles",
            json={
                "id": role_id,
                "names": {"zh-CN": "只读", "en": f"Viewer {role_id}"},
                "permissions": ["account:self", "customers:view"],
                "scopes": {"customers": "all"},
                "fields": {"customers": {f"custom.{secret}": "hidden"}},
            },
        )
        assert made.status_code == 201, made.text
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as customers:
        created = await customers.post(
            "/v1/customers",
            json={"kind": "company", "name": unique("保密客户"), "custom": {shown_key: "公开值", secret: "机密值"}},
        )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    viewer = await stack.new_user(roles=[role_id])
    token = await stack.token_for(viewer)

    async def hidden_by_the_service() -> bool:
        async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
            answer = await client.get(f"/v1/customers/{cid}", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code == 200 and secret not in (answer.json().get("custom") or {})

    await eventually(hidden_by_the_service, timeout=30, interval=0.3, message="the role's field rule applies")
    await sign_in(page, viewer)
    await page.wait_for_url("**/")
    await page.goto(f"/customers/{cid}")
    await expect(page.locator(f"#p-custom-{shown_key}")).to_have_text("公开值")
    await expect(page.locator(f"#p-custom-{secret}")).to_have_count(0)
    await expect(page.locator("#profile")).not_to_contain_text(f"Secret {tag}")
    await expect(page.locator("body")).not_to_contain_text("机密值")


async def test_the_edit_form_shows_a_read_only_custom_field_as_text_and_leaves_out_a_hidden_one(
    stack: Stack, page: Any
) -> None:
    from crm_console.testing import sign_in
    from crm_platform.testing.fixtures import eventually

    locked_key, secret, open_key, tag = key("locked"), key("secret"), key("open"), uuid.uuid4().hex[:6]
    for field_key, word in ((locked_key, "Locked"), (secret, "Secret"), (open_key, "Open")):
        labels = {"zh-CN": f"{word} {tag}", "en": f"{word} {tag}"}
        await define(stack, "customers", {"key": field_key, "type": "text", "labels": labels})
    role_id = unique("editor").lower()
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        made = await directory.post(
            "/v1/roles",
            json={
                "id": role_id,
                "names": {"zh-CN": "编辑", "en": f"Editor {role_id}"},
                "permissions": ["account:self", "users:view", "customers:view", "customers:create", "customers:edit"],
                "scopes": {"customers": "all"},
                "fields": {
                    "customers": {
                        f"custom.{locked_key}": "read",
                        f"custom.{secret}": "hidden",
                        "website": "read",
                        "description": "hidden",
                    }
                },
            },
        )
        assert made.status_code == 201, made.text
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as customers:
        created = await customers.post(
            "/v1/customers",
            json={
                "kind": "company",
                "name": unique("只读字段客户"),
                "website": "https://readonly.example.com",
                "description": "内部备注",
                "custom": {locked_key: "原值", secret: "机密"},
            },
        )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    editor = await stack.new_user(roles=[role_id])
    token = await stack.token_for(editor)

    async def visible() -> bool:
        async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
            answer = await client.get(f"/v1/customers/{cid}", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code == 200 and secret not in (answer.json().get("custom") or {})

    await eventually(visible, timeout=30, interval=0.3, message="the editor sees the customer, without the secret")
    await sign_in(page, editor)
    await page.wait_for_url("**/")
    await page.goto(f"/customers/{cid}/edit")
    # Read-only: its value as text, no input; hidden: not in the form at all; the rest: inputs.
    read_only = page.locator(f"[data-read-only='{locked_key}']")
    await expect(read_only).to_contain_text(f"Locked {tag}")
    await expect(read_only).to_contain_text("原值")
    await expect(read_only).to_contain_text("read-only for your role")
    await expect(page.locator(f"[name='custom.{locked_key}']")).to_have_count(0)
    await expect(page.locator("#edit-form")).not_to_contain_text(f"Secret {tag}")
    await expect(page.locator(f"[name='custom.{secret}']")).to_have_count(0)
    # The standard fields too: the website as text, the description left out.
    await expect(page.locator("[data-read-only='website']")).to_contain_text("https://readonly.example.com")
    await expect(page.locator("[name='website']")).to_have_count(0)
    await expect(page.locator("[name='description']")).to_have_count(0)
    await page.get_by_label(f"Open {tag}").fill("可改")
    await page.get_by_label("Industry").fill("制造")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#notice")).to_contain_text("Profile saved.")
    await expect(page.locator("#p-industry")).to_have_text("制造")
    await expect(page.locator(f"#p-custom-{open_key}")).to_have_text("可改")
    await expect(page.locator(f"#p-custom-{locked_key}")).to_have_text("原值")
    # The new-customer form follows the same rules.
    await page.goto("/customers/new")
    await expect(page.locator(f"[data-read-only='{locked_key}']")).to_be_visible()
    await expect(page.locator(f"[name='custom.{secret}']")).to_have_count(0)
    await expect(page.get_by_label(f"Open {tag}")).to_be_visible()
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as customers:
        stored = await customers.get(f"/v1/customers/{cid}")
    assert stored.json()["custom"] == {locked_key: "原值", secret: "机密", open_key: "可改"}
    assert stored.json()["website"] == "https://readonly.example.com"
    assert stored.json()["description"] == "内部备注"
