"""The contracts and tickets pages' gaps a user found, against the real services: a draft edited
on its page (each refusal at its field or at the top, the form keeping what was typed), people
shown by name rather than id (and assignment offered by name), the payments' "set the plan first"
refusal in the person's language with a link to the plan editor, and a manager opening a ticket
for the customer of a rep of their department, with the customer's contracts offered by number."""

from __future__ import annotations

import html
import re
import uuid
from datetime import date, timedelta
from typing import Any

import httpx

from crm_console.testing import PASSWORD, Stack, User, api, at_field, console_as, customer_known_to_sales
from crm_platform.testing.fixtures import eventually, unique


async def draft(stack: Stack, owner: User, customer_id: str, amount: str = "5000") -> dict[str, Any]:
    body = {"title": unique("合同"), "customer_id": customer_id, "amount": amount, "currency": "CNY"}

    async def drafted() -> httpx.Response | None:  # the owner reaches the sales copy a moment later
        answer = await api(stack, owner, "sales", "POST", "/v1/contracts", json=body)
        return None if answer.status_code == 422 else answer

    made = await eventually(drafted, timeout=60, interval=0.5, message="contract drafted")
    assert made.status_code == 201, made.text
    return dict(made.json())


async def signed(stack: Stack, owner: User, approver: User, customer_id: str) -> dict[str, Any]:
    """A contract drafted, submitted, approved and signed through the API (no plan)."""
    contract = await draft(stack, owner, customer_id)
    path = f"/v1/contracts/{contract['id']}"
    assert (await api(stack, owner, "sales", "POST", f"{path}/submit")).status_code == 200
    assert (await api(stack, approver, "sales", "POST", f"{path}/approve", json={})).status_code == 200
    done = await api(
        stack, owner, "sales", "POST", f"{path}/sign", json={"signed_on": today(), "signed_document": "DOC-1"}
    )
    assert done.status_code == 200, done.text
    return dict(done.json())


async def person(stack: Stack, roles: list[str], department_id: str, language: str = "en") -> User:
    email, name = f"{unique('u')}@example.com", f"测试用户 {unique('p')}"
    body = {
        "email": email,
        "name": name,
        "roles": roles,
        "department_id": department_id,
        "password": PASSWORD,
        "language": language,
    }
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as client:
        answer = await client.post("/v1/users", json=body, headers=stack.admin_headers)
    assert answer.status_code == 201, answer.text
    return User(id=answer.json()["id"], email=email, name=name)


async def department(stack: Stack, parent: str) -> str:
    department_id = unique("dept")
    async with httpx.AsyncClient(base_url=stack.urls["directory"]) as client:
        answer = await client.post(
            "/v1/departments",
            json={"id": department_id, "name": department_id, "parent_id": parent},
            headers=stack.admin_headers,
        )
    assert answer.status_code == 201, answer.text
    return department_id


def input_value(page: str, name: str) -> str:
    found = re.search(rf'<input [^>]*name="{re.escape(name)}" value="([^"]*)"', page)
    assert found, f"no input {name}"
    return html.unescape(found.group(1))


def etag_of(page: str, form: str) -> str:
    body = page.split(f'id="{form}"', 1)[1]
    found = re.search(r'name="etag" value="([^"]+)"', body)
    assert found
    return html.unescape(found.group(1))


def form_values(page: str, form_id: str) -> dict[str, str]:
    """What a browser would send from the form: every input, and each select's chosen option."""
    body = page.split(f'id="{form_id}"', 1)[1].split("</form>", 1)[0]
    values: dict[str, str] = {}
    for tag in re.findall(r"<input [^>]*>", body):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name:
            values[name.group(1)] = html.unescape(value.group(1)) if value else ""
    for name, options in re.findall(r'<select [^>]*name="([^"]+)"[^>]*>(.*?)</select>', body, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', options) or re.search(
            r'<option value="([^"]*)"', options
        )
        values[name] = html.unescape(chosen.group(1)) if chosen else ""
    return values


def today() -> str:
    return date.today().isoformat()


def later(days: int) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


async def test_a_draft_is_edited_on_its_page_and_each_refusal_keeps_what_was_typed(stack: Stack) -> None:
    rep = await stack.new_user()
    customer_id = await customer_known_to_sales(stack, rep)
    contract = await draft(stack, rep, customer_id)
    path = f"/contracts/{contract['id']}"
    async with console_as(stack, rep) as (client, csrf):
        page = (await client.get(path)).text
        assert 'id="edit-form"' in page and input_value(page, "edit.title") == contract["title"]
        assert input_value(page, "edit.amount") == "5000.00"
        title = unique("改后的标题")
        typed = {
            "csrf_token": csrf,
            "etag": etag_of(page, "edit-form"),
            "edit.title": title,
            "edit.amount": "6000",
            "edit.currency": "CNY",
            "edit.start_date": later(30),
            "edit.end_date": later(3),
            "edit.notes": "含三年维保",
        }
        bad_dates = await client.post(f"{path}/edit", data=typed)
        assert bad_dates.status_code == 422 and at_field(bad_dates.text, "edit.end_date")
        assert input_value(bad_dates.text, "edit.title") == title  # what was typed, not the stored title
        assert input_value(bad_dates.text, "edit.notes") == "含三年维保"
        assert '<details id="edit" open>' in bad_dates.text
        bad_amount = await client.post(f"{path}/edit", data=typed | {"edit.end_date": "", "edit.amount": "1.001"})
        assert bad_amount.status_code == 422 and at_field(bad_amount.text, "edit.amount")
        # Someone else changes the draft meanwhile: 412, the page holds their version, the form ours.
        theirs = await api(
            stack,
            rep,
            "sales",
            "PATCH",
            f"/v1/contracts/{contract['id']}",
            json={"customer_signatory": "王经理"},
            headers={"If-Match": '"1"'},
        )
        assert theirs.status_code == 200, theirs.text
        stale = await client.post(f"{path}/edit", data=typed | {"edit.end_date": later(90)})
        assert stale.status_code == 412 and 'id="edit-stale"' in stale.text
        assert input_value(stale.text, "edit.title") == title and input_value(stale.text, "edit.end_date") == later(90)
        again = form_values(stale.text, "edit-form")  # the newer etag, our values
        assert again["etag"] != typed["etag"]
        saved = await client.post(f"{path}/edit", data=again | {"csrf_token": csrf})
        assert saved.status_code == 303, saved.text
        page = (await client.get(saved.headers["location"])).text
        assert "Draft saved." in page and title in page and 'id="c-amount">6000.00 CNY' in page
        assert "含三年维保" in page and later(90) in page
        # A blank optional field clears it; a blank title cannot be cleared (at the title).
        cleared = await client.post(
            f"{path}/edit", data=form_values(page, "edit-form") | {"csrf_token": csrf, "edit.notes": ""}
        )
        assert cleared.status_code == 303
        page = (await client.get(path)).text
        assert "含三年维保" not in page
        no_title = await client.post(
            f"{path}/edit", data=form_values(page, "edit-form") | {"csrf_token": csrf, "edit.title": ""}
        )
        assert no_title.status_code == 422 and at_field(no_title.text, "edit.title")
        # Once submitted it is no longer editable: no form, and a stale form's post is a 409 at the top.
        old_form = form_values(page, "edit-form") | {"csrf_token": csrf}
        submitted = await client.post(f"{path}/submit", data={"csrf_token": csrf, "etag": etag_of(page, "move-submit")})
        assert submitted.status_code == 303
        page = (await client.get(path)).text
        assert 'id="edit-form"' not in page
        late = await client.post(f"{path}/edit", data=old_form)
        assert late.status_code == 409 and 'id="refused"' in late.text and 'id="edit-form"' not in late.text


async def test_people_are_shown_by_name_and_assignment_is_offered_by_name(stack: Stack) -> None:
    rep = await stack.new_user()
    manager = await stack.new_user(roles=["manager"])
    customer_id = await customer_known_to_sales(stack, rep)
    contract = await signed(stack, rep, manager, customer_id)
    instalments = {"instalments": [{"due_date": later(10), "amount": "5000"}]}
    planned = await api(
        stack,
        rep,
        "sales",
        "PUT",
        f"/v1/contracts/{contract['id']}/plan",
        json=instalments,
        headers={"If-Match": f'"{contract["version"]}"'},
    )
    assert planned.status_code == 200, planned.text
    paid = await api(
        stack,
        rep,
        "sales",
        "POST",
        f"/v1/contracts/{contract['id']}/payments",
        json={"amount": "100", "received_on": today(), "method": "cash"},
    )
    assert paid.status_code == 201, paid.text
    async with console_as(stack, rep) as (client, csrf):
        page = (await client.get(f"/contracts/{contract['id']}")).text
        assert f'id="c-owner">{rep.name}<' in page
        assert f'<td class="approver">{manager.name}</td>' in page and f'<td class="approver">{manager.id}' not in page
        assert f'<td class="by">{rep.name}</td>' in page  # who recorded the payment
        listing = (await client.get("/contracts", params={"customer_id": customer_id})).text
        assert f'<td class="owner">{rep.name}</td>' in listing
        made = await client.post(
            "/tickets/new",
            data={"csrf_token": csrf, "customer_id": customer_id, "subject": unique("报修"), "category": "fault"},
        )
        assert made.status_code == 303, made.text
        ticket = made.headers["location"].split("?")[0]
        page = (await client.get(ticket)).text
        replied = await client.post(
            f"{ticket}/reply",
            data={
                "csrf_token": csrf,
                "etag": etag_of(page, "move-reply"),
                "reply.body": "已受理",
                "reply.public": "true",
            },
        )
        assert replied.status_code == 303
        page = (await client.get(ticket)).text
        assert f'id="t-assignee">{rep.name}<' in page and f'id="t-opened-by">{rep.name}<' in page
        assert f'<span class="by">{rep.name}</span>' in page
    async with console_as(stack, manager) as (client, csrf):
        page = (await client.get(ticket)).text
        assert '<select id="f-assign.assignee_id" name="assign.assignee_id"' in page
        assert 'name="assign.assignee_id" value=' not in page  # no free user-id box
        assert f'<option value="{rep.id}" selected>{rep.name}</option>' in page
        assert f'<option value="{manager.id}">{manager.name}</option>' in page
        chosen = form_values(page, "move-assign") | {"csrf_token": csrf, "assign.assignee_id": manager.id}
        assert (await client.post(f"{ticket}/assign", data=chosen)).status_code == 303
        page = (await client.get(ticket)).text
        assert f'id="t-assignee">{manager.name}<' in page
        listing = (await client.get("/tickets", params={"customer_id": customer_id})).text
        assert f'<td class="assignee">{manager.name}</td>' in listing
        # The lists filter on people by name: the assignee and the owner are picked, not typed.
        assert '<select id="f-assignee_id" name="assignee_id"' in listing
        assert f'<option value="{manager.id}">{manager.name}</option>' in listing
        filtered = (await client.get("/tickets", params={"customer_id": customer_id, "assignee_id": rep.id})).text
        assert f'<option value="{rep.id}" selected>{rep.name}</option>' in filtered  # kept, by name
        assert ticket not in filtered  # assigned to the manager now
        contracts = (await client.get("/contracts", params={"owner_id": rep.id})).text
        assert '<select id="f-owner_id" name="owner_id"' in contracts
        assert f'<option value="{rep.id}" selected>{rep.name}</option>' in contracts
        assert contract["id"] in contracts


async def test_a_payment_without_a_plan_says_to_set_the_plan_first(stack: Stack) -> None:
    rep = await stack.new_user(language="zh-CN")
    manager = await stack.new_user(roles=["manager"])
    customer_id = await customer_known_to_sales(stack, rep)
    contract = await signed(stack, rep, manager, customer_id)
    path = f"/contracts/{contract['id']}"
    payment = {"amount": "100", "received_on": today(), "method": "cash"}
    # The service's own refusal: 409 conflict, reason plan-required (and the status it is in).
    direct = await api(stack, rep, "sales", "POST", f"/v1{path}/payments", json=payment)
    assert direct.status_code == 409 and direct.json()["reason"] == "plan-required", direct.text
    async with console_as(stack, rep) as (client, csrf):
        page = (await client.get(path)).text
        assert 'id="payment-needs-plan"' in page and "请先设置回款计划" in page and 'href="#plan-form"' in page
        assert 'id="payment-form"' not in page
        refused = await client.post(
            f"{path}/payments", data={"csrf_token": csrf} | {f"payment.{k}": v for k, v in payment.items()}
        )
        assert refused.status_code == 409
        top = re.search(r'<p role="alert" id="refused" class="field-error">([^<]*)</p>', refused.text)
        assert top and "请先设置合同的回款计划。" in top.group(1) and "(signed)" not in top.group(1)
        at_payments = re.search(r'<p id="payment-needs-plan" role="alert" class="field-error">([^<]*)<a', refused.text)
        assert at_payments and "请先设置合同的回款计划。" in at_payments.group(1)
    english = await stack.new_user(roles=["manager"])
    async with console_as(stack, english) as (client, csrf):
        refused = await client.post(
            f"{path}/payments", data={"csrf_token": csrf} | {f"payment.{k}": v for k, v in payment.items()}
        )
        assert refused.status_code == 409 and "Set the contract&#39;s payment plan first." in refused.text


async def test_a_manager_opens_a_ticket_for_a_customer_of_a_rep_of_their_department(stack: Stack) -> None:
    sales = await department(stack, "hq")
    team = await department(stack, sales)
    manager = await person(stack, ["manager"], sales, language="zh-CN")
    rep = await person(stack, ["rep"], team)
    customer_id = await customer_known_to_sales(stack, rep)
    contract = await draft(stack, rep, customer_id)
    async with console_as(stack, manager) as (client, _csrf):
        customer = (await client.get(f"/customers/{customer_id}")).text
        link = re.search(
            r'href="(/tickets/new\?[^"]+)" role="button" class="secondary outline" id="new-ticket"', customer
        )
        assert link, customer
        form = (await client.get(html.unescape(link.group(1)))).text
        # The contract is picked from the customer's contracts by number, not typed as an id: a
        # typed number ("C-2026-…", what every page shows) was the 422 at contract_id.
        assert 'name="contract_id" value=' not in form
        assert f'<option value="{contract["id"]}">{contract["number"]} · {contract["title"]}</option>' in form
        sent = form_values(form, "ticket-form") | {"subject": unique("上门维修"), "priority": "high"}
        assert sent["customer_id"] == customer_id and sent["contract_id"] == ""
        made = await client.post("/tickets/new", data=sent)
        assert made.status_code == 303, made.text
        with_contract = await client.post(
            "/tickets/new", data=sent | {"contract_id": contract["id"], "subject": unique("合同内维修")}
        )
        assert with_contract.status_code == 303, with_contract.text
        page = (await client.get(with_contract.headers["location"])).text
        assert f'href="/contracts/{contract["id"]}"' in page
        # Opened from the list (no customer yet): the contract stays a box for its id, and a number
        # typed there is refused at that box, the form keeping what was typed.
        blank = (await client.get("/tickets/new")).text
        assert 'name="contract_id" value=""' in blank
        typed = form_values(blank, "ticket-form") | {
            "customer_id": customer_id,
            "contract_id": contract["number"],
            "subject": unique("报修"),
        }
        refused = await client.post("/tickets/new", data=typed)
        assert refused.status_code == 422 and at_field(refused.text, "contract_id")
        assert f'<option value="{contract["id"]}">' in refused.text  # now the customer is known: picked by number


async def test_a_filter_the_sales_service_refuses_is_shown_at_its_input(stack: Stack) -> None:
    """The sales lists (crm_console.lists.list_page): the API's 422 on a filter is an empty list
    with the reason at that filter's input, not an error page; the other filters stay as asked."""
    rep = await stack.new_user()
    customer_id = str(uuid.uuid4())
    async with console_as(stack, rep) as (client, _csrf):
        for path, name in (("/contracts", "status"), ("/tickets", "priority"), ("/quotations", "status")):
            page = await client.get(path, params={name: "bogus", "customer_id": customer_id})
            assert page.status_code == 200, (path, page.text[:300])
            assert at_field(page.text, name), path
            assert f'value="{customer_id}"' in page.text, path
        products = await client.get("/products", params={"active": "maybe", "q": "打印"})
        assert products.status_code == 200 and at_field(products.text, "active")
        assert 'value="打印"' in products.text
