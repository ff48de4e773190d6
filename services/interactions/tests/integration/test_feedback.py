"""Customer feedback over HTTP: a complaint closed in a loop, every step recorded and published."""

from __future__ import annotations


async def open_feedback(client, user, customer, **fields):
    body = {
        "kind": "complaint",
        "title": "交付延期",
        "description": "第二期交付比合同晚了两周",
        "customer_id": customer.id,
        "contact_id": customer.contact_ids[0],
        "priority": "high",
        **fields,
    }
    r = await client.post("/v1/feedback", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_complaint_closed_in_a_loop(client, world, team, events, expect_problem):
    customer = await world.customer(team.rep)
    fb = await open_feedback(client, team.rep, customer)
    path = f"/v1/feedback/{fb['id']}"
    assert fb["status"] == "open" and fb["allowed_transitions"] == ["in_progress"] and fb["reported_by"] == team.rep.id

    async def move(user, expected_status=200, **body):
        r = await client.post(f"{path}/transitions", json=body, headers=user.headers)
        assert r.status_code == expected_status, r.text
        return r.json()

    illegal = expect_problem(
        await client.post(f"{path}/transitions", json={"status": "closed"}, headers=team.rep.headers), 409
    )
    assert illegal["allowed"] == ["in_progress"] and illegal["current_status"] == "open"
    started = await move(team.manager, status="in_progress", note="由经理跟进")
    assert started["handler_id"] == team.manager.id and started["allowed_transitions"] == ["resolved"]
    no_resolution = expect_problem(
        await client.post(f"{path}/transitions", json={"status": "resolved"}, headers=team.manager.headers), 422
    )
    assert no_resolution["errors"][0]["field"] == "resolution"
    resolved = await move(team.manager, status="resolved", resolution="补偿一个月服务费，调整排期")
    assert resolved["resolution"].startswith("补偿") and resolved["allowed_transitions"] == ["closed", "open"]
    # A complaint is closed with the customer's satisfaction (the return visit, 回访).
    unrated = expect_problem(
        await client.post(f"{path}/transitions", json={"status": "closed"}, headers=team.rep.headers), 422
    )
    assert unrated["errors"][0]["field"] == "satisfaction"
    bad_rating = expect_problem(
        await client.post(
            f"{path}/transitions", json={"status": "closed", "satisfaction": 6}, headers=team.rep.headers
        ),
        422,
    )
    assert bad_rating["errors"][0]["field"] == "satisfaction"
    closed = await move(team.rep, status="closed", satisfaction=4, note="客户认可")
    assert closed["status"] == "closed" and closed["satisfaction"] == 4 and closed["closed_at"]
    expect_problem(await client.patch(path, json={"title": "x"}, headers=team.rep.match(f'"{closed["version"]}"')), 409)

    reopened = await move(team.rep, status="open", note="客户再次投诉")
    assert reopened["reopen_count"] == 1 and reopened["resolution"] is None and reopened["satisfaction"] is None
    assert [(s["from_status"], s["to_status"]) for s in reopened["steps"]] == [
        ("open", "in_progress"),
        ("in_progress", "resolved"),
        ("resolved", "closed"),
        ("closed", "open"),
    ]

    await events.wait_for(3, subject=fb["id"], type="crm.feedback.status_changed")
    types = [e.event["type"] for e in events.matching(subject=fb["id"])]
    assert types == [
        "crm.feedback.opened",
        "crm.feedback.status_changed",
        "crm.feedback.resolved",
        "crm.feedback.status_changed",
        "crm.feedback.status_changed",
    ]
    resolved_event = events.matching(subject=fb["id"], type="crm.feedback.resolved")[0].event["data"]
    # The snapshot: a consumer (notifications, reports) needs no other call.
    assert resolved_event["feedback"]["customer_id"] == customer.id
    assert resolved_event["feedback"]["handler_id"] == team.manager.id
    assert resolved_event["from_status"] == "in_progress"
    history = (await client.get(f"{path}/history", headers=team.rep.headers)).json()
    assert [h["summary"] for h in history][1:] == [
        "open → in_progress: 由经理跟进",
        "resolved: 补偿一个月服务费，调整排期",
        "resolved → closed: 客户认可",
        "closed → open: 客户再次投诉",
    ]
    assert {"field": "satisfaction", "old": None, "new": 4} in history[3]["changes"]


async def test_feedback_fields_handlers_and_visibility(client, world, team, expect_problem):
    customer = await world.customer(team.rep)
    await world.user(team.rep2)
    fb = await open_feedback(client, team.rep, customer, kind="request", priority="normal", handler_id=team.rep2.id)
    path = f"/v1/feedback/{fb['id']}"
    assert fb["handler_department_path"] == team.rep2.dept
    expect_problem(await client.patch(path, json={"priority": "urgent"}, headers=team.rep.headers), 428)
    expect_problem(await client.patch(path, json={"priority": "urgent"}, headers=team.rep.match('"3"')), 412)
    expect_problem(await client.patch(path, json={"title": None}, headers=team.rep.match('"1"')), 422)
    wrong_contact = expect_problem(
        await client.patch(path, json={"contact_id": "someone"}, headers=team.rep.match('"1"')), 422
    )
    assert wrong_contact["errors"][0]["field"] == "contact_id[0]"
    r = await client.patch(path, json={"priority": "urgent"}, headers=team.rep.match('"1"'))
    assert r.status_code == 200 and r.json()["priority"] == "urgent" and r.headers["etag"] == '"2"'
    # The handler sees it (not the customer's owner); a colleague and another department do not.
    assert (await client.get(path, headers=team.rep2.headers)).status_code == 200
    assert [f["id"] for f in (await client.get("/v1/feedback", headers=team.rep2.headers)).json()["items"]] == [
        fb["id"]
    ]
    for outsider in (team.stranger, team.outsider):
        expect_problem(await client.get(path, headers=outsider.headers), 404)
        assert (await client.get("/v1/feedback", params={"customer_id": customer.id}, headers=outsider.headers)).json()[
            "items"
        ] == []
    manager_list = await client.get(
        "/v1/feedback", params={"customer_id": customer.id, "status": "open"}, headers=team.manager.headers
    )
    assert [f["id"] for f in manager_list.json()["items"]] == [fb["id"]]
    expect_problem(await client.get("/v1/feedback", params={"status": "shelved"}, headers=team.rep.headers), 422)
    # A suggestion closes without a rating.
    for body in ({"status": "in_progress"}, {"status": "resolved", "resolution": "已排入需求池"}, {"status": "closed"}):
        r = await client.post(f"{path}/transitions", json=body, headers=team.rep2.headers)
        assert r.status_code == 200, r.text
    assert r.json()["handler_id"] == team.rep2.id and r.json()["satisfaction"] is None


async def test_refused_feedback(client, world, team, expect_problem):
    customer = await world.customer(team.rep)
    base = {"kind": "suggestion", "title": "t", "description": "d", "customer_id": customer.id}
    for body, field in (
        ({**base, "kind": "praise"}, "kind"),
        ({**base, "description": " "}, "description"),
        ({**base, "customer_id": "nope"}, "customer_id"),
        ({**base, "contact_id": "nope"}, "contact_id[0]"),
        ({**base, "handler_id": "nobody"}, "handler_id"),
    ):
        problem = expect_problem(await client.post("/v1/feedback", json=body, headers=team.rep.headers), 422)
        assert problem["errors"][0]["field"] == field, (body, problem)
    expect_problem(await client.get("/v1/feedback/nope", headers=team.rep.headers), 404)
