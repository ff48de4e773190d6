"""Approval requirements (a manager of the department approves) and assigning opportunities."""

from __future__ import annotations

from crm_platform.testing.fixtures import unique


async def approval_pipeline(client, admin) -> dict:
    r = await client.post(
        "/v1/pipelines",
        json={
            "name": unique("大客户"),
            "stages": [
                {"stage_id": "lead", "name": "线索", "probability": 10},
                {
                    "stage_id": "bid",
                    "name": "投标",
                    "probability": 50,
                    "requirements": {"approval": True, "fields": ["amount"]},
                },
                {"stage_id": "signed", "name": "签约", "probability": 100, "kind": "won"},
                {"stage_id": "lost", "name": "输单", "probability": 0, "kind": "lost"},
            ],
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_stage_needing_approval_waits_for_a_manager_of_the_department(
    client, team, customer_of, pipeline_events, expect_problem
):
    pipeline = await approval_pipeline(client, team.admin)
    customer = await customer_of(team.rep)
    opp = (
        await client.post(
            "/v1/opportunities",
            json={"customer_id": customer.id, "name": "投标项目", "pipeline_id": pipeline["id"]},
            headers=team.rep.headers,
        )
    ).json()
    url = f"/v1/opportunities/{opp['id']}"
    body = expect_problem(await client.post(f"{url}/stage", json={"stage_id": "bid"}, headers=team.rep.headers), 422)
    assert {(m["kind"], m["item"]) for m in body["missing"]} == {("approval", "bid"), ("field", "amount")}
    assert "not yet requested" in next(e["reason"] for e in body["errors"] if e["field"] == "approvals")
    expect_problem(
        await client.post(f"{url}/approval-requests", json={"stage_id": "lead"}, headers=team.rep.headers), 422
    )
    r = await client.post(
        f"{url}/approval-requests", json={"stage_id": "bid", "note": "请批准投标"}, headers=team.rep.headers
    )
    assert r.status_code == 200 and r.json()["pending_approval"] is True
    assert r.json()["approvals"][0]["status"] == "pending"
    waiting = (
        await client.get(
            "/v1/opportunities",
            params={"pending_approval": True, "department": team.root},
            headers=team.manager.headers,
        )
    ).json()
    assert [o["id"] for o in waiting["items"]] == [opp["id"]]
    expect_problem(await client.post(f"{url}/approvals", json={"stage_id": "bid"}, headers=team.rep.headers), 403)
    expect_problem(await client.post(f"{url}/approvals", json={"stage_id": "bid"}, headers=team.outsider.headers), 404)
    r = await client.post(
        f"{url}/approvals",
        json={"stage_id": "bid", "decision": "rejected", "note": "金额未定"},
        headers=team.manager.headers,
    )
    assert r.json()["approvals"][0]["status"] == "rejected" and not r.json()["pending_approval"]
    await client.patch(url, json={"amount": "2000000.00"}, headers=team.rep.match(f'"{r.json()["version"]}"'))
    body = expect_problem(await client.post(f"{url}/stage", json={"stage_id": "bid"}, headers=team.rep.headers), 422)
    assert [m["reason"] for m in body["missing"]] == [
        "投标 requires a manager's approval (rejected by " + team.manager.id + ")"
    ]
    r = await client.post(f"{url}/approvals", json={"stage_id": "bid", "note": "同意"}, headers=team.manager.headers)
    assert r.json()["approvals"][0]["decided_by"] == team.manager.id
    moved = await client.post(f"{url}/stage", json={"stage_id": "bid"}, headers=team.rep.headers)
    assert moved.status_code == 200 and moved.json()["stage"]["stage_id"] == "bid"
    updates = await pipeline_events.wait_for(4, type="crm.opportunity.updated", subject=opp["id"])
    approval_changes = [c for u in updates for c in u.event["data"]["changes"] if c["field"] == "approvals[bid]"]
    assert [(c["old"], c["new"]) for c in approval_changes] == [
        (None, "pending"),
        ("pending", "rejected"),
        ("rejected", "approved"),
    ]


async def test_a_manager_cannot_approve_their_own_opportunity(client, team, customer_of, expect_problem):
    pipeline = await approval_pipeline(client, team.admin)
    customer = await customer_of(team.manager)
    opp = (
        await client.post(
            "/v1/opportunities",
            json={"customer_id": customer.id, "name": "x", "pipeline_id": pipeline["id"]},
            headers=team.manager.headers,
        )
    ).json()
    expect_problem(
        await client.post(
            f"/v1/opportunities/{opp['id']}/approvals", json={"stage_id": "bid"}, headers=team.manager.headers
        ),
        403,
    )
    r = await client.post(
        f"/v1/opportunities/{opp['id']}/approvals", json={"stage_id": "bid"}, headers=team.admin.headers
    )
    assert r.status_code == 200


async def test_managers_assign_within_their_subtree(client, team, new_opportunity, pipeline_events, expect_problem):
    opp = await new_opportunity(team.rep, amount="10000.00")
    url = f"/v1/opportunities/{opp['id']}"
    to_rep2 = {"owner_id": team.rep2.id, "department_path": team.rep2.dept, "reason": "休假交接"}
    expect_problem(await client.post(f"{url}/assign", json=to_rep2, headers=team.rep.headers), 403)
    expect_problem(
        await client.post(
            f"{url}/assign", json={**to_rep2, "department_path": "/elsewhere"}, headers=team.manager.headers
        ),
        403,
    )
    expect_problem(await client.post(f"{url}/assign", json=to_rep2, headers=team.outsider.headers), 403)
    r = await client.post(f"{url}/assign", json=to_rep2, headers=team.manager.headers)
    assert r.status_code == 200, r.text
    assert r.json()["owner_id"] == team.rep2.id
    assert (await client.get(url, headers=team.rep2.headers)).status_code == 200
    expect_problem(await client.get(url, headers=team.rep.headers), 404)
    [event] = await pipeline_events.wait_for(type="crm.opportunity.owner_changed", subject=opp["id"])
    data = event.event["data"]
    assert (data["previous_owner_id"], data["owner_id"], data["reason"]) == (team.rep.id, team.rep2.id, "休假交接")
    assert data["opportunity"]["owner_id"] == team.rep2.id
