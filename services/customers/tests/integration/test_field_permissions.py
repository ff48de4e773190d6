"""Field-level permissions (issue 16): a role that hides a customer's or contact's field, or
makes it read-only, as an administrator defines it in the directory.

A hidden field is not in anything the holder receives (record, list, lookup, export, history)
and filtering or sorting on it is refused; a read-only field is shown and cannot be set. The
widest of the holder's roles wins. The definitions reach the service as ``crm.role.*`` events;
these tests hand the event to the service's read copy as its consumer would.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from fastapi import FastAPI

from crm_platform.events import EventEnvelope
from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import role_event as defined

PROBLEM = "application/problem+json"
ROLE = f"service-staff-{uuid.uuid4().hex[:6]}"
PERMISSIONS = [
    "account:self",
    "customers:view",
    "customers:create",
    "customers:edit",
    "customers:export",
    "customers:import",
]
FIELDS = {
    "customers": {"phones": "hidden", "emails": "hidden", "industry": "read", "address": "hidden"},
    "contacts": {"phones": "hidden", "title": "read"},
}


def role_event(version: int, fields: dict[str, dict[str, str]]) -> EventEnvelope:
    return defined(ROLE, version, permissions=PERMISSIONS, fields=fields)


async def _staff(customers_app: FastAPI) -> dict[str, str]:
    await customers_app.state.kit.roles.apply(role_event(1, FIELDS))
    return auth(unique("staff"), [ROLE], department_path=f"/{unique('d')}")


async def _customer(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    """A customer with every protected field filled (phones and emails unique to it)."""
    n = uuid.uuid4().int % 10**8
    body = {
        "kind": "company",
        "name": unique("字段权限"),
        "industry": "制造业",
        "tier": "A",
        "phones": [f"+86138{n:08d}"],
        "emails": [f"buyer{n}@example.com"],
        "address": {"province": "上海市", "city": "上海市"},
        "contacts": [
            {"name": "王经理", "title": "采购", "phones": [f"+86139{n:08d}"], "emails": [f"w{n}@example.com"]}
        ],
    }
    r = await client.post("/v1/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_hidden_fields_are_left_out_of_every_read(client: Any, customers_app: FastAPI) -> None:
    staff = await _staff(customers_app)
    # An administrator creates the customer and gives it to the staff member, who then reads it.
    admin = auth(unique("admin"), ["admin"])
    created = await _customer(client, admin)
    staff_user = _user_of(staff)
    r = await client.post(f"/v1/customers/{created['id']}/assign", json=_to(staff), headers=admin)
    assert r.status_code == 200, r.text

    one = await client.get(f"/v1/customers/{created['id']}", headers=staff)
    assert one.status_code == 200, one.text
    body = one.json()
    for hidden in ("phones", "emails", "address"):
        assert hidden not in body, hidden
    assert body["industry"] == "制造业"  # read-only is shown
    assert body["tier"] == "A"
    assert "phones" not in body["contacts"][0] and body["contacts"][0]["title"] == "采购"
    assert body["contacts"][0]["emails"] == created["contacts"][0]["emails"]

    page = await client.get("/v1/customers", params={"owner_id": staff_user}, headers=staff)
    assert page.status_code == 200, page.text
    [item] = page.json()["items"]
    assert item["id"] == created["id"] and "phones" not in item and "address" not in item

    looked = await client.post("/v1/customers/lookup", json={"ids": [created["id"]]}, headers=staff)
    assert looked.status_code == 200 and "emails" not in looked.json()["items"][0]

    exported = await client.get("/v1/customers/export.csv", params={"owner_id": staff_user}, headers=staff)
    assert exported.status_code == 200, exported.text
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert "phones" not in rows[0] and "emails" not in rows[0] and "province" not in rows[0]
    assert "industry" in rows[0] and len(rows) == 2 and len(rows[1]) == len(rows[0])

    new_phone = f"+86137{uuid.uuid4().int % 10**8:08d}"
    # The administrator changes a hidden field: the history the staff member reads leaves it out.
    r = await client.patch(
        f"/v1/customers/{created['id']}",
        json={"phones": [new_phone, *created["phones"]]},
        headers={**admin, "If-Match": one.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    history = await client.get(f"/v1/customers/{created['id']}/history", headers=staff)
    assert history.status_code == 200, history.text
    text = history.text
    assert new_phone not in text and created["phones"][0] not in text and created["emails"][0] not in text
    assert not any(c["field"] == "phones" for e in history.json() for c in e["changes"])
    # ... while the administrator's own history has it.
    full = await client.get(f"/v1/customers/{created['id']}/history", headers=admin)
    assert new_phone in full.text


async def test_filtering_or_sorting_on_a_hidden_field_is_refused(client: Any, customers_app: FastAPI) -> None:
    staff = await _staff(customers_app)
    for params, field in (
        ({"phone": "+8613800138000"}, "phones"),
        ({"email": "buyer@example.com"}, "emails"),
        ({"province": "上海市"}, "address"),
        ({"sort": "city"}, "address"),
    ):
        for path in ("/v1/customers", "/v1/customers/export.csv"):
            r = await client.get(path, params=params, headers=staff)
            assert r.status_code == 403, (path, params, r.text)
            assert r.headers["content-type"] == PROBLEM
            problem = r.json()
            assert problem["type"].endswith("field-hidden")
            assert [e["field"] for e in problem["errors"]] == [field]
    # A read-only field can be filtered and sorted on: the holder sees it.
    r = await client.get("/v1/customers", params={"industry": "制造业", "sort": "industry"}, headers=staff)
    assert r.status_code == 200, r.text


async def test_setting_a_read_only_or_hidden_field_is_refused_and_writes_nothing(
    client: Any, customers_app: FastAPI
) -> None:
    staff = await _staff(customers_app)
    name = unique("只读")
    r = await client.post("/v1/customers", json={"kind": "company", "name": name, "industry": "零售"}, headers=staff)
    assert r.status_code == 403, r.text
    assert r.json()["type"].endswith("field-read-only")
    assert [e["field"] for e in r.json()["errors"]] == ["industry"]
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": name, "contacts": [{"name": "李", "title": "总监"}]},
        headers=staff,
    )
    assert r.status_code == 403 and [e["field"] for e in r.json()["errors"]] == ["title"], r.text
    listed = await client.get("/v1/customers", params={"q": name}, headers=auth(unique("a"), ["admin"]))
    assert listed.json()["items"] == []  # nothing was written

    r = await client.post("/v1/customers", json={"kind": "company", "name": name, "tier": "B"}, headers=staff)
    assert r.status_code == 201, r.text
    customer = r.json()
    assert "phones" not in customer  # the create's answer is redacted too
    for patch, field in (({"industry": "零售"}, "industry"), ({"phones": ["+8613800138001"]}, "phones")):
        r = await client.patch(
            f"/v1/customers/{customer['id']}", json=patch, headers={**staff, "If-Match": f'"{customer["version"]}"'}
        )
        assert r.status_code == 403, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = await client.patch(
        f"/v1/customers/{customer['id']}", json={"tier": "A"}, headers={**staff, "If-Match": f'"{customer["version"]}"'}
    )
    assert r.status_code == 200, r.text

    # An import that fills a protected column is refused whole; an empty protected column is no write.
    filled = "name,industry\n" + f"{unique('导入')},制造业\n"
    r = await client.post(
        "/v1/customers/import", content=filled.encode(), headers={**staff, "Content-Type": "text/csv"}
    )
    assert r.status_code == 403 and [e["field"] for e in r.json()["errors"]] == ["industry"], r.text
    empty = "name,industry,tier\n" + f"{unique('导入')},,B\n"
    r = await client.post("/v1/customers/import", content=empty.encode(), headers={**staff, "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text


async def test_the_widest_role_wins_and_a_changed_definition_applies_at_once(
    client: Any, customers_app: FastAPI
) -> None:
    staff = await _staff(customers_app)
    admin = auth(unique("admin"), ["admin"])
    created = await _customer(client, admin)
    # With the built-in rep role as well, nothing is hidden: rep restricts no field.
    both = auth(unique("both"), [ROLE, "rep"], department_path=f"/{unique('d')}")
    r = await client.post(f"/v1/customers/{created['id']}/assign", json=_to(both), headers=admin)
    assert r.status_code == 200, r.text
    body = (await client.get(f"/v1/customers/{created['id']}", headers=both)).json()
    assert body["phones"] == created["phones"]

    # The administrator narrows the rule to read-only: the next request sees the phone again.
    await customers_app.state.kit.roles.apply(role_event(2, {"customers": {"phones": "read"}}))
    try:
        r = await client.post(f"/v1/customers/{created['id']}/assign", json=_to(staff), headers=admin)
        assert r.status_code == 200, r.text
        body = (await client.get(f"/v1/customers/{created['id']}", headers=staff)).json()
        assert body["phones"] == created["phones"] and body["address"]["province"] == "上海市"
    finally:
        await customers_app.state.kit.roles.apply(role_event(3, FIELDS))


def _to(headers: dict[str, str]) -> dict[str, str]:
    """An assignment to the holder of ``headers`` (the directory does not know test users)."""
    import jwt

    claims = jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})
    return {"owner_id": claims["sub"], "department_path": claims["dept_path"], "reason": "test"}


def _user_of(headers: dict[str, str]) -> str:
    """The user id inside a test token (the ``sub`` claim)."""
    import jwt

    token = headers["Authorization"].split()[1]
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])
