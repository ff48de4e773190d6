"""Custom values of the other modules in the console, against the real services: contacts' on the
customer page (cards, the add-contact and edit-contact forms), opportunities' on the customer
page's panel and in the new/edit opportunity form, follow-ups', tasks' and feedback's in the
customer page's panels and its quick follow-up and task forms, and the tasks page. Each form: the
values shown, a save that works, a refused save re-rendered with the message at the field and what
was typed kept; and the contact edit form under a role's field rules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, sign_in
from crm_platform.testing.fixtures import eventually, unique

OWNER = {"customers": "customers", "contacts": "customers", "opportunities": "pipeline"}
OWNER |= {"interactions": "interactions", "tasks": "interactions", "feedback": "interactions"}


def key(prefix: str) -> str:
    """A field key no other test uses (keys are a-z, 0-9 and _)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def define(stack: Stack, module: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.urls[OWNER[module]], headers=stack.admin_headers) as client:
        answer = await client.post(f"/v1/fields/{module}", json=body)
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def seats_and_level(stack: Stack, module: str, tag: str) -> tuple[str, str]:
    """A number field (1 to 100) and a choice (gold, silver) of ``module``."""
    seats, level = key("seats"), key("level")
    await define(
        stack,
        module,
        {
            "key": seats,
            "type": "number",
            "labels": {"zh-CN": f"席位 {tag}", "en": f"Seats {tag}"},
            "validation": {"min": 1, "max": 100},
        },
    )
    await define(
        stack,
        module,
        {
            "key": level,
            "type": "choice",
            "labels": {"zh-CN": f"级别 {tag}", "en": f"Level {tag}"},
            "options": [
                {"key": "gold", "labels": {"zh-CN": "金牌", "en": "Gold"}},
                {"key": "silver", "labels": {"zh-CN": "银牌", "en": "Silver"}},
            ],
        },
    )
    return seats, level


async def customer_of(stack: Stack, user: User, name: str) -> str:
    token = await stack.token_for(user)
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
        made = await client.post(
            "/v1/customers", json={"kind": "company", "name": name}, headers={"Authorization": f"Bearer {token}"}
        )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def stored_contact(stack: Stack, user: User, customer_id: str) -> dict[str, Any]:
    token = await stack.token_for(user)
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
        answer = await client.get(f"/v1/customers/{customer_id}", headers={"Authorization": f"Bearer {token}"})
    contacts: list[dict[str, Any]] = answer.json()["contacts"]
    assert len(contacts) == 1, contacts
    return contacts[0]


async def test_contacts_custom_values_in_the_add_and_edit_forms_and_on_the_card(
    stack: Stack, signed_in_page: Any, user: User
) -> None:
    page = signed_in_page
    tag = uuid.uuid4().hex[:6]
    seats, level = await seats_and_level(stack, "contacts", tag)
    archived = key("old")
    old_label = f"Old {tag}"
    await define(stack, "contacts", {"key": archived, "type": "text", "labels": {"zh-CN": "旧", "en": old_label}})
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as client:
        dropped = await client.delete(f"/v1/fields/contacts/{archived}")
    assert dropped.status_code == 200, dropped.text
    cid = await customer_of(stack, user, unique("联系人字段客户"))

    await page.goto(f"/customers/{cid}")
    add = page.locator("#add-contact")
    await add.locator("summary").click()
    await add.get_by_label("Contact name", exact=True).fill("王经理")
    await expect(add.get_by_label(f"Level {tag}").locator("option")).to_have_text(["— not set —", "Gold", "Silver"])
    await expect(add.get_by_label(old_label)).to_have_count(0)  # archived: not offered
    await add.get_by_label(f"Seats {tag}").fill("500")
    await add.get_by_label(f"Level {tag}").select_option(label="Gold")
    await add.get_by_role("button", name="Save the contact").click()
    # Refused at the field with the service's reason; the form is open again with what was typed.
    add = page.locator("#add-contact")
    await expect(add.get_by_label(f"Seats {tag}")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(f"[id='e-contact-custom.{seats}']")).to_contain_text("100")
    await expect(add.get_by_label(f"Seats {tag}")).to_have_value("500")
    await expect(add.get_by_label(f"Level {tag}")).to_have_value("gold")
    await expect(add.get_by_label("Contact name", exact=True)).to_have_value("王经理")
    await add.get_by_label(f"Seats {tag}").fill("12")
    await add.get_by_role("button", name="Save the contact").click()
    await expect(page.locator("#notice")).to_contain_text("Contact added")

    card = page.locator("#contact-list li").filter(has_text="王经理")
    await expect(card.locator(f"[data-field='{seats}']")).to_have_text(f"Seats {tag}: 12")
    await expect(card.locator(f"[data-field='{level}']")).to_have_text(f"Level {tag}: Gold")
    assert (await stored_contact(stack, user, cid))["custom"] == {seats: 12, level: "gold"}

    # Edit: the values shown; a refusal at the field; then a save that sends only what changed.
    await card.get_by_role("link", name="Edit contact 王经理").click()
    await expect(page.get_by_label(f"Seats {tag}")).to_have_value("12")
    await expect(page.get_by_label(f"Level {tag}")).to_have_value("gold")
    await page.get_by_label(f"Seats {tag}").fill("0")
    await page.get_by_role("button", name="Save the contact").click()
    await expect(page.get_by_label(f"Seats {tag}")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(f"[id='e-custom.{seats}']")).to_contain_text("1")
    await expect(page.get_by_label(f"Seats {tag}")).to_have_value("0")
    await page.get_by_label(f"Seats {tag}").fill("12")
    await page.get_by_label(f"Level {tag}").select_option(label="Silver")
    await page.get_by_role("button", name="Save the contact").click()
    await expect(page.locator("#notice")).to_contain_text("Contact saved")
    card = page.locator("#contact-list li").filter(has_text="王经理")
    await expect(card.locator(f"[data-field='{level}']")).to_have_text(f"Level {tag}: Silver")
    assert (await stored_contact(stack, user, cid))["custom"] == {seats: 12, level: "silver"}


async def test_contacts_custom_labels_in_chinese(stack: Stack, page: Any) -> None:
    rep = await stack.new_user(language="zh-CN")
    tag = uuid.uuid4().hex[:6]
    _, level = await seats_and_level(stack, "contacts", tag)
    cid = await customer_of(stack, rep, unique("中文联系人"))
    token = await stack.token_for(rep)
    async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
        added = await client.post(
            f"/v1/customers/{cid}/contacts",
            json={"name": "李工", "custom": {level: "silver"}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert added.status_code == 201, added.text
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto(f"/customers/{cid}")
    await expect(page.locator(f"#contact-list [data-field='{level}']")).to_have_text(f"级别 {tag}: 银牌")
    await page.locator("#add-contact summary").click()
    options = page.locator("#add-contact").get_by_label(f"级别 {tag}").locator("option")
    await expect(options).to_have_text(["— 未填写 —", "金牌", "银牌"])


async def test_opportunities_custom_values_on_the_customer_page_and_in_the_new_and_edit_forms(
    stack: Stack, signed_in_page: Any, user: User
) -> None:
    page = signed_in_page
    tag = uuid.uuid4().hex[:6]
    seats, level = await seats_and_level(stack, "opportunities", tag)
    cid = await customer_of(stack, user, unique("商机字段客户"))
    first = unique("首个商机")
    token = await stack.token_for(user)
    body = {"customer_id": cid, "name": first, "custom": {level: "gold"}}
    async with httpx.AsyncClient(base_url=stack.urls["pipeline"]) as pipeline:

        async def create() -> bool:  # the pipeline service learns of the customer from its event
            answer = await pipeline.post("/v1/opportunities", json=body, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code in (201, 404, 409, 422), answer.text
            if answer.status_code == 422:
                assert '"custom.' not in answer.text, answer.text
            return answer.status_code == 201

        await eventually(create, timeout=60, interval=0.3, message="opportunity created")

    await page.goto(f"/customers/{cid}")
    panel = page.locator("#opportunities")
    await expect(panel.locator(f"[data-field='{level}']")).to_have_text(f"Level {tag}: Gold")

    # New: a refused value at its field, what was typed kept; then created, back on the customer page.
    await panel.get_by_role("button", name="New opportunity").click()
    second = unique("第二商机")
    await page.get_by_label("Opportunity name").fill(second)
    await expect(page.get_by_label(f"Level {tag}").locator("option")).to_have_text(["— not set —", "Gold", "Silver"])
    await page.get_by_label(f"Seats {tag}").fill("500")
    await page.get_by_label(f"Level {tag}").select_option(label="Silver")
    await page.get_by_role("button", name="Create the opportunity").click()
    await expect(page.get_by_label(f"Seats {tag}")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(f"[id='e-custom.{seats}']")).to_contain_text("100")
    await expect(page.get_by_label(f"Level {tag}")).to_have_value("silver")
    await expect(page.get_by_label("Opportunity name")).to_have_value(second)
    await page.get_by_label(f"Seats {tag}").fill("40")
    await page.get_by_role("button", name="Create the opportunity").click()
    await expect(page.locator("#notice")).to_contain_text("Opportunity created.")
    row = page.locator("#opportunities tr", has_text=second)
    await expect(row.locator(f"[data-field='{seats}']")).to_have_text(f"Seats {tag}: 40")
    await expect(row.locator(f"[data-field='{level}']")).to_have_text(f"Level {tag}: Silver")

    # Edit the first one: its values shown, a refusal at the field, then a save of what changed.
    await page.get_by_role("link", name=f"Edit opportunity {first}").click()
    await expect(page.get_by_label(f"Level {tag}")).to_have_value("gold")
    await expect(page.get_by_label("Opportunity name")).to_have_value(first)
    await page.get_by_label(f"Seats {tag}").fill("0")
    await page.get_by_role("button", name="Save the opportunity").click()
    await expect(page.locator(f"[id='e-custom.{seats}']")).to_be_visible()
    await expect(page.get_by_label(f"Seats {tag}")).to_have_value("0")
    await expect(page.get_by_role("alert")).to_contain_text("Not saved.")
    await page.get_by_label(f"Seats {tag}").fill("7")
    await page.get_by_role("button", name="Save the opportunity").click()
    await expect(page.locator("#notice")).to_contain_text("Opportunity saved.")
    row = page.locator("#opportunities tr", has_text=first)
    await expect(row.locator(f"[data-field='{seats}']")).to_have_text(f"Seats {tag}: 7")
    await expect(row.locator(f"[data-field='{level}']")).to_have_text(f"Level {tag}: Gold")

    async with httpx.AsyncClient(base_url=stack.urls["pipeline"]) as pipeline:
        found = await pipeline.get(
            "/v1/opportunities", params={"customer_id": cid}, headers={"Authorization": f"Bearer {token}"}
        )
    by_name = {o["name"]: o for o in found.json()["items"]}
    assert by_name[first]["custom"] == {level: "gold", seats: 7}
    assert by_name[second]["custom"] == {level: "silver", seats: 40}
    assert by_name[first]["amount"] is None  # the untouched standard fields were not sent

    # The board's card opens the same form.
    await page.goto("/pipeline")
    card = page.locator("#board li.card", has=page.locator(".card-name", has_text=first))
    await expect(card.locator(f"[data-field='{seats}']")).to_have_text(f"Seats {tag}: 7")
    await card.get_by_role("link", name=f"Edit “{first}”").click()
    await expect(page.get_by_role("heading", name=f"Edit “{first}”")).to_be_visible()
    await expect(page.get_by_label(f"Seats {tag}")).to_have_value("7")


async def test_follow_ups_tasks_and_feedback_custom_values_on_the_customer_page_and_the_tasks_page(
    stack: Stack, signed_in_page: Any, user: User
) -> None:
    page = signed_in_page
    log_tag, task_tag, feedback_tag = (uuid.uuid4().hex[:6] for _ in range(3))
    log_seats, log_level = await seats_and_level(stack, "interactions", log_tag)
    task_seats, _ = await seats_and_level(stack, "tasks", task_tag)
    _, feedback_level = await seats_and_level(stack, "feedback", feedback_tag)
    cid = await customer_of(stack, user, unique("跟进字段客户"))
    headers = {"Authorization": f"Bearer {await stack.token_for(user)}"}
    feedback = {"kind": "request", "title": "要发票", "description": "月底前", "customer_id": cid}
    async with httpx.AsyncClient(base_url=stack.urls["interactions"], headers=headers) as interactions:

        async def known() -> bool:  # the interactions service learns of the customer from its event
            answer = await interactions.post("/v1/feedback", json=feedback | {"custom": {feedback_level: "gold"}})
            assert answer.status_code in (201, 404, 409, 422), answer.text
            return answer.status_code == 201

        await eventually(known, timeout=60, interval=0.3, message="feedback created")

    await page.goto(f"/customers/{cid}")
    await expect(page.locator(f"#feedback [data-field='{feedback_level}']")).to_have_text(f"Level {feedback_tag}: Gold")

    # A follow-up: the quick form has the interactions' fields; a refusal at the field, then saved.
    await page.get_by_role("button", name="Call").click()
    form = page.locator("#log-form")
    await form.get_by_label(f"Seats {log_tag}").fill("500")
    await form.get_by_label(f"Level {log_tag}").select_option(label="Silver")
    await form.get_by_role("button", name="Save the follow-up").click()
    form = page.locator("#log-form")
    await expect(form.get_by_label(f"Seats {log_tag}")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator(f"[id='e-log-custom.{log_seats}']")).to_contain_text("100")
    await expect(form.get_by_label(f"Seats {log_tag}")).to_have_value("500")
    await expect(form.get_by_label(f"Level {log_tag}")).to_have_value("silver")
    await form.get_by_label(f"Seats {log_tag}").fill("3")
    await form.get_by_role("button", name="Save the follow-up").click()
    await expect(page.locator("#notice")).to_contain_text("Follow-up saved.")
    await expect(page.locator(f"#followup-list [data-field='{log_seats}']")).to_have_text(f"Seats {log_tag}: 3")
    await expect(page.locator(f"#followup-list [data-field='{log_level}']")).to_have_text(f"Level {log_tag}: Silver")

    # A task: the same in the task form (ids task-…), shown in the panel and on the tasks page.
    await page.get_by_role("button", name="New task").click()
    task_form = page.locator("#task-form")
    await task_form.get_by_label("Task", exact=True).fill("回访")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the user's zone (the default)
    await task_form.get_by_label("Due").fill(f"{today}T23:59")  # due today: on the tasks page's today view
    await task_form.get_by_label(f"Seats {task_tag}").fill("0")
    await task_form.get_by_role("button", name="Create the task").click()
    task_form = page.locator("#task-form")
    await expect(page.locator(f"[id='e-task-custom.{task_seats}']")).to_be_visible()
    await expect(task_form.get_by_label(f"Seats {task_tag}")).to_have_value("0")
    await expect(task_form.get_by_label("Task", exact=True)).to_have_value("回访")
    await task_form.get_by_label(f"Seats {task_tag}").fill("9")
    await task_form.get_by_role("button", name="Create the task").click()
    await expect(page.locator("#notice")).to_contain_text("Task created.")
    await expect(page.locator(f"#task-list [data-field='{task_seats}']")).to_have_text(f"Seats {task_tag}: 9")

    await page.goto("/tasks?view=today")
    await expect(page.locator(f"#task-list [data-field='{task_seats}']")).to_have_text(f"Seats {task_tag}: 9")


async def test_the_contact_edit_form_follows_the_roles_field_rules(stack: Stack, page: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    seats, level = await seats_and_level(stack, "contacts", tag)
    role_id = unique("contacts").lower()
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        made = await directory.post(
            "/v1/roles",
            json={
                "id": role_id,
                "names": {"zh-CN": "联系人编辑", "en": f"Contact editor {role_id}"},
                "permissions": ["account:self", "users:view", "customers:view", "customers:edit"],
                "scopes": {"customers": "all", "contacts": "all"},
                "fields": {"contacts": {"title": "read", f"custom.{level}": "hidden"}},
            },
        )
    assert made.status_code == 201, made.text
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as customers:
        created = await customers.post(
            "/v1/customers",
            json={
                "kind": "company",
                "name": unique("联系人规则客户"),
                "contacts": [{"name": "周经理", "title": "采购经理", "custom": {seats: 5, level: "gold"}}],
            },
        )
    assert created.status_code == 201, created.text
    cid, contact = created.json()["id"], created.json()["contacts"][0]
    editor = await stack.new_user(roles=[role_id])
    token = await stack.token_for(editor)

    async def rule_applies() -> bool:  # the customers service learns the role from the directory's event
        async with httpx.AsyncClient(base_url=stack.urls["customers"]) as client:
            answer = await client.get(f"/v1/customers/{cid}", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code == 200 and level not in (answer.json()["contacts"][0].get("custom") or {})

    await eventually(rule_applies, timeout=30, interval=0.3, message="the role's field rules apply")
    await sign_in(page, editor)
    await page.wait_for_url("**/")
    await page.goto(f"/customers/{cid}/contacts/{contact['contact_id']}/edit")
    await expect(page.locator("[data-read-only='title']")).to_contain_text("采购经理")
    await expect(page.locator("[name='title']")).to_have_count(0)
    await expect(page.locator(f"[name='custom.{level}']")).to_have_count(0)
    await expect(page.locator("#contact-form")).not_to_contain_text(f"Level {tag}")
    await expect(page.get_by_label(f"Seats {tag}")).to_have_value("5")
    await page.get_by_label(f"Seats {tag}").fill("6")
    await page.get_by_role("button", name="Save the contact").click()
    await expect(page.locator("#notice")).to_contain_text("Contact saved.")
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=stack.admin_headers) as customers:
        stored = (await customers.get(f"/v1/customers/{cid}")).json()["contacts"][0]
    assert stored["title"] == "采购经理"
    assert stored["custom"] == {seats: 6, level: "gold"}
