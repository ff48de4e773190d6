"""Data scopes from role definitions in reporting: a report covers what the caller's ``reports``
scope reaches. A custom role with scope "department" counts its own department's customers, not
a sub-department's nor a sibling's, and may not ask for a sibling department; "own" counts only
the caller's own customers and may not ask for a colleague's."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from crm_platform.contracts import customers as cev
from crm_platform.testing.event_feed import EventFeed, at, customer
from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import define_role


async def test_department_and_own_reports_scopes(
    client: Any, reporting_app: FastAPI, feed: EventFeed, wait_applied: Any
) -> None:
    dept_role, own_role = unique("dept-reports"), unique("own-reports")
    await define_role(reporting_app, dept_role, ["reports:view"], {"reports": "department"})
    await define_role(reporting_app, own_role, ["reports:view"], {"reports": "own"})
    root = f"/hq/{unique('s')}"
    mine, child, sibling = f"{root}/east", f"{root}/east/team-1", f"{root}/west"
    colleague, below, beside, loner = unique("r"), unique("r"), unique("r"), unique("loner")
    day = at("2026-11-02")
    sent = []
    for owner, path, industry in (
        (colleague, mine, "制造业"),
        (loner, mine, "零售"),
        (below, child, "金融"),
        (beside, sibling, "教育"),
    ):
        cid = unique("c")
        data = cev.CustomerCreated(customer=customer(cid, owner, path, day, industry=industry))
        sent.append(await feed.send(cev.CUSTOMER_CREATED, cid, data, day))
    await wait_applied(sent)

    async def industries(headers: dict[str, str], **params: str) -> Any:
        return await client.get("/v1/reports/distribution", params={"field": "industry", **params}, headers=headers)

    viewer = auth(unique("viewer"), [dept_role], mine)
    r = await industries(viewer, department_path=root)  # narrowed to the test's tree; the scope does the rest
    assert r.status_code == 403, r.text  # the root is above the viewer's department
    r = await industries(viewer, department_path=mine)
    assert r.status_code == 200, r.text
    assert {x["value"] for x in r.json()["rows"]} == {"制造业", "零售"}  # not 金融 (below), not 教育 (sibling)
    r = await industries(viewer, department_path=child)
    assert r.status_code == 403, r.text  # a sub-department is not in a "department" scope
    r = await industries(viewer, department_path=sibling)
    assert r.status_code == 403, r.text

    own = auth(loner, [own_role], mine)
    r = await industries(own)
    assert r.status_code == 200, r.text
    assert {x["value"] for x in r.json()["rows"]} == {"零售"}
    r = await industries(own, owner_id=colleague)
    assert r.status_code == 403, r.text
