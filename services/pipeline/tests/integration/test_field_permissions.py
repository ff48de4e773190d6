"""Field-level permissions on opportunities (issue 16): the amount hidden from service staff.

A hidden field (and what is computed from it: the weighted amount, the quotation amount, the
products' prices) is not in any opportunity the holder receives, nor in the history; filtering
or sorting on it is refused; the forecast, made of amounts, is refused; the funnel keeps its
counts and leaves out its sums. A read-only field is shown and cannot be set.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI

from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import role_event

ROLE = f"service-staff-{uuid.uuid4().hex[:6]}"
PERMISSIONS = [
    "account:self",
    "opportunities:view",
    "opportunities:create",
    "opportunities:edit",
    "pipelines:view",
    "reports:view",
    "targets:view",
]
FIELDS = {"opportunities": {"amount": "hidden", "probability": "read"}}
HIDDEN = ("amount", "weighted_amount", "quotation_amount", "products")


class Staff:
    """A member of the rep's department holding only the service-staff role (as the team's users are)."""

    def __init__(self, dept: str) -> None:
        self.id = unique("staff")
        self.dept = dept
        self.headers = auth(self.id, [ROLE], department_path=dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


async def _staff(pipeline_app: FastAPI, team: Any) -> Staff:
    await pipeline_app.state.kit.roles.apply(role_event(ROLE, 1, permissions=PERMISSIONS, fields=FIELDS))
    return Staff(team.rep.dept)


async def test_the_amount_is_left_out_of_everything_the_staff_member_receives(
    client: Any, pipeline_app: FastAPI, team: Any, customer_of: Any, expect_problem: Any
) -> None:
    staff = await _staff(pipeline_app, team)
    customer = await customer_of(staff)
    body = {
        "customer_id": customer.id,
        "name": "年度维保",
        "amount": "125000.00",
        "quotation_amount": "130000.00",
        "products": [{"name": "维保", "quantity": "1", "unit_price": "125000.00"}],
    }
    # The staff member may not set the amount ...
    r = await client.post("/v1/opportunities", json=body, headers=staff.headers)
    assert [e["field"] for e in expect_problem(r, 403)["errors"]] == ["amount", "products", "quotation_amount"]
    # ... so the manager creates it for them and it is theirs.
    r = await client.post(
        "/v1/opportunities",
        json={**body, "owner_id": staff.id, "department_path": staff.dept},
        headers=team.manager.headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["amount"] == "125000.00" and created["weighted_amount"]

    one = await client.get(f"/v1/opportunities/{created['id']}", headers=staff.headers)
    assert one.status_code == 200, one.text
    for name in HIDDEN:
        assert name not in one.json(), name
    assert one.json()["probability"] == created["probability"]  # read-only is shown
    assert "125000.00" not in one.text and "130000.00" not in one.text

    page = await client.get("/v1/opportunities", params={"customer_id": customer.id}, headers=staff.headers)
    assert page.status_code == 200, page.text
    assert [o["id"] for o in page.json()["items"]] == [created["id"]]
    assert "125000.00" not in page.text

    r = await client.patch(
        f"/v1/opportunities/{created['id']}",
        json={"amount": "99000.00", "notes": "改价"},
        headers=team.manager.match(one.headers["ETag"]),
    )
    assert r.status_code == 200, r.text
    history = await client.get(f"/v1/opportunities/{created['id']}/history", headers=staff.headers)
    assert history.status_code == 200, history.text
    assert "99000.00" not in history.text and "125000.00" not in history.text
    assert [c["field"] for e in history.json() for c in e["changes"] if e["type"] == "crm.opportunity.updated"] == [
        "notes"
    ]
    manager_history = await client.get(f"/v1/opportunities/{created['id']}/history", headers=team.manager.headers)
    assert "99000.00" in manager_history.text


async def test_queries_on_a_hidden_field_and_writes_to_a_read_only_one_are_refused(
    client: Any, pipeline_app: FastAPI, team: Any, new_opportunity: Any, customer_of: Any, expect_problem: Any
) -> None:
    staff = await _staff(pipeline_app, team)
    for params, field in (
        ({"amount_min": "1.00"}, "amount"),
        ({"sort": "-amount"}, "amount"),
        ({"sort": "weighted_amount"}, "weighted_amount"),
    ):
        r = await client.get("/v1/opportunities", params=params, headers=staff.headers)
        problem = expect_problem(r, 403)
        assert problem["type"].endswith("field-hidden") and [e["field"] for e in problem["errors"]] == [field]
    r = await client.get("/v1/opportunities", params={"sort": "probability"}, headers=staff.headers)
    assert r.status_code == 200, r.text  # read-only: visible, so it can be sorted on

    mine = await new_opportunity(staff, name="只读概率")
    r = await client.patch(
        f"/v1/opportunities/{mine['id']}", json={"probability": 90}, headers=staff.match(f'"{mine["version"]}"')
    )
    problem = expect_problem(r, 403)
    assert problem["type"].endswith("field-read-only") and problem["errors"][0]["field"] == "probability"
    r = await client.patch(
        f"/v1/opportunities/{mine['id']}", json={"notes": "跟进中"}, headers=staff.match(f'"{mine["version"]}"')
    )
    assert r.status_code == 200, r.text

    r = await client.get("/v1/forecast", params={"period": "2026-11"}, headers=staff.headers)
    assert expect_problem(r, 403)["errors"][0]["field"] == "amount"
    r = await client.get("/v1/funnel", headers=staff.headers)
    assert r.status_code == 200, r.text
    stages = r.json()["stages"]
    assert stages and all("amount" not in s and "reached" in s for s in stages)
    full = await client.get("/v1/funnel", headers=team.manager.headers)
    assert all("amount" in s for s in full.json()["stages"])


async def test_a_filter_on_a_hidden_custom_field_is_refused(
    client: Any, pipeline_app: FastAPI, team: Any, expect_problem: Any
) -> None:
    """A custom field hidden from a role (``custom.<key>``) cannot be filtered on by it: 403
    ``field-hidden`` naming ``custom.<key>``; a role that sees it filters as usual."""
    key = f"f{uuid.uuid4().hex[:8]}"
    r = await client.post(
        "/v1/fields/opportunities",
        json={"key": key, "type": "text", "labels": {"zh-CN": key, "en": key}, "filterable": True},
        headers=team.admin.headers,
    )
    assert r.status_code == 201, r.text
    role = f"no-{key}"
    fields = {"opportunities": {f"custom.{key}": "hidden"}}
    await pipeline_app.state.kit.roles.apply(role_event(role, 1, permissions=PERMISSIONS, fields=fields))
    hidden_from = auth(unique("staff"), [role], department_path=team.rep.dept)
    r = await client.get("/v1/opportunities", params={f"custom.{key}": "x"}, headers=hidden_from)
    problem = expect_problem(r, 403)
    assert problem["type"].endswith("field-hidden") and [e["field"] for e in problem["errors"]] == [f"custom.{key}"]
    r = await client.get("/v1/opportunities", params={f"custom.{key}": "x"}, headers=team.rep.headers)
    assert r.status_code == 200, r.text
