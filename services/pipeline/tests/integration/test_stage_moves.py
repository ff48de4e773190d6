"""Stage moves with entry requirements, won / lost / reopen, and their events."""

from __future__ import annotations

from datetime import timedelta

DOC = {"kind": "requirements", "name": "需求说明书", "url": "https://docs.example.com/req.pdf"}


async def test_a_refused_move_lists_everything_missing_and_writes_nothing(
    client, team, new_opportunity, pipeline_events, expect_problem
):
    opp = await new_opportunity(team.rep)
    url = f"/v1/opportunities/{opp['id']}"
    # Straight from 初步接触 to 谈判: 方案报价's document and 谈判's quotation are both missing.
    body = expect_problem(
        await client.post(f"{url}/stage", json={"stage_id": "negotiation"}, headers=team.rep.headers), 422
    )
    assert body["type"] == "urn:crm:problem:stage-requirements-not-met"
    assert {(m["stage_id"], m["kind"], m["item"]) for m in body["missing"]} == {
        ("proposal", "document", "requirements"),
        ("negotiation", "field", "quotation_amount"),
    }
    assert {e["field"] for e in body["errors"]} == {"documents", "quotation_amount"}
    assert "方案报价" in body["detail"] or "谈判" in body["detail"]
    after = await client.get(url, headers=team.rep.headers)
    assert after.headers["etag"] == '"1"' and after.json()["stage"]["stage_id"] == "initial_contact"
    # The win passes over every open stage and also needs the amount.
    body = expect_problem(await client.post(f"{url}/win", json={"reason": "签了"}, headers=team.rep.headers), 422)
    assert {m["item"] for m in body["missing"]} == {"requirements", "quotation_amount", "amount"}
    await pipeline_events.wait_for(type="crm.opportunity.created", subject=opp["id"])
    assert [r.event["type"] for r in pipeline_events.matching(subject=opp["id"])] == ["crm.opportunity.created"]


async def test_moves_are_recorded_with_time_in_stage_and_published(
    client, team, new_opportunity, pipeline_events, clock, expect_problem
):
    opp = await new_opportunity(team.rep, amount="300000.00")
    url = f"/v1/opportunities/{opp['id']}"
    clock.advance(timedelta(days=3))
    r = await client.post(f"{url}/stage", json={"stage_id": "needs_confirmed"}, headers=team.rep.headers)
    assert r.status_code == 200, r.text
    assert r.json()["probability"] == 20 and r.headers["etag"] == '"2"'
    await client.post(f"{url}/documents", json=DOC, headers=team.rep.headers)
    clock.advance(timedelta(days=2))
    r = await client.post(f"{url}/stage", json={"stage_id": "proposal"}, headers=team.rep.match('"3"'))
    assert r.status_code == 200, r.text
    expect_problem(
        await client.post(f"{url}/stage", json={"stage_id": "negotiation"}, headers=team.rep.match('"3"')), 412
    )
    expect_problem(await client.post(f"{url}/stage", json={"stage_id": "nowhere"}, headers=team.rep.headers), 422)
    expect_problem(
        await client.post(f"{url}/stage", json={"stage_id": "won"}, headers=team.rep.headers), 422
    )  # use /win
    unchanged = await client.post(f"{url}/stage", json={"stage_id": "proposal"}, headers=team.rep.headers)
    assert unchanged.headers["etag"] == '"4"'  # already there: nothing happens
    moves = await pipeline_events.wait_for(2, type="crm.opportunity.stage_changed", subject=opp["id"])
    first, second = (m.event["data"] for m in moves)
    assert first["move"]["from_stage_id"] == "initial_contact" and first["move"]["to_stage_id"] == "needs_confirmed"
    assert first["move"]["from_stage_name"] == "初步接触" and first["move"]["to_stage_name"] == "需求确认"
    assert 3 * 86400 <= first["move"]["time_in_previous_stage_seconds"] < 3 * 86400 + 60
    assert 2 * 86400 <= second["move"]["time_in_previous_stage_seconds"] < 2 * 86400 + 60
    assert second["move"]["moved_by"] == team.rep.id and second["opportunity"]["stage_id"] == "proposal"
    assert second["opportunity"]["probability"] == 40 and second["opportunity"]["amount"] == "300000.00"
    detail = (await client.get(url, headers=team.manager.headers)).json()
    assert [(h["kind"], h["to_stage_id"]) for h in detail["stage_history"]] == [
        ("created", "initial_contact"),
        ("moved", "needs_confirmed"),
        ("moved", "proposal"),
    ]
    assert 2.9 < detail["stage_history"][1]["days_in_previous"] < 3.1
    # Backwards is always allowed.
    back = await client.post(f"{url}/stage", json={"stage_id": "initial_contact"}, headers=team.rep.headers)
    assert back.status_code == 200 and back.json()["stage"]["stage_id"] == "initial_contact"


async def test_skipping_stages_is_allowed_when_their_requirements_are_met(
    client, team, new_opportunity, pipeline_events
):
    opp = await new_opportunity(team.rep, quotation_amount="88000.00", documents=[DOC])
    r = await client.post(
        f"/v1/opportunities/{opp['id']}/stage", json={"stage_id": "negotiation"}, headers=team.rep.headers
    )
    assert r.status_code == 200, r.text
    [event] = await pipeline_events.wait_for(type="crm.opportunity.stage_changed", subject=opp["id"])
    assert event.event["data"]["move"]["skipped_stage_ids"] == ["needs_confirmed", "proposal"]


async def test_won_is_final_until_a_manager_reopens_it(client, team, new_opportunity, pipeline_events, expect_problem):
    opp = await new_opportunity(
        team.rep, amount="50000.00", quotation_amount="52000.00", documents=[DOC], stage_id="negotiation"
    )
    url = f"/v1/opportunities/{opp['id']}"
    expect_problem(await client.post(f"{url}/win", json={}, headers=team.rep.headers), 422)  # a reason is required
    r = await client.post(f"{url}/win", json={"reason": "价格和服务都有优势"}, headers=team.rep.headers)
    assert r.status_code == 200, r.text
    won = r.json()
    assert won["status"] == "won" and won["probability"] == 100 and won["won"]["reason"] == "价格和服务都有优势"
    assert won["stage"]["stage_id"] == "won" and won["won_on"] is not None and won["next_stage"] is None
    version = f'"{won["version"]}"'
    for method, path, body in [
        ("PATCH", url, {"name": "改名"}),
        ("POST", f"{url}/stage", {"stage_id": "proposal"}),
        ("POST", f"{url}/documents", DOC),
        ("POST", f"{url}/win", {"reason": "again"}),
        ("POST", f"{url}/lose", {"reason": "x"}),
    ]:
        refused = await client.request(method, path, json=body, headers=team.rep.match(version))
        assert expect_problem(refused, 409)["status"] == 409, path
    expect_problem(
        await client.post(
            f"{url}/assign",
            json={"owner_id": team.rep2.id, "department_path": team.rep2.dept},
            headers=team.manager.headers,
        ),
        409,
    )
    expect_problem(
        await client.post(
            f"{url}/reopen", json={"reason": "合同作废", "stage_id": "negotiation"}, headers=team.rep.headers
        ),
        403,
    )
    r = await client.post(
        f"{url}/reopen", json={"reason": "合同作废", "stage_id": "negotiation"}, headers=team.manager.headers
    )
    assert r.status_code == 200, r.text
    reopened = r.json()
    assert (
        reopened["status"] == "open"
        and reopened["probability"] == 60
        and reopened["won"] is None
        and reopened["won_on"] is None
    )
    expect_problem(
        await client.post(
            f"{url}/reopen", json={"reason": "x", "stage_id": "negotiation"}, headers=team.manager.headers
        ),
        409,
    )
    [won_event] = await pipeline_events.wait_for(type="crm.opportunity.won", subject=opp["id"])
    assert won_event.event["data"]["reason"] == "价格和服务都有优势"
    assert (
        won_event.event["data"]["move"]["from_stage_id"] == "negotiation"
        and won_event.event["data"]["opportunity"]["status"] == "won"
    )
    assert won_event.event["data"]["opportunity"]["won_on"] == won["won_on"]
    [reopen_event] = await pipeline_events.wait_for(type="crm.opportunity.reopened", subject=opp["id"])
    assert (
        reopen_event.event["data"]["previous_status"] == "won"
        and reopen_event.event["data"]["move"]["to_stage_id"] == "negotiation"
    )
    assert reopen_event.event["actor"] == team.manager.id


async def test_lost_with_reason_and_competitor_and_the_owner_may_reopen(
    client, team, new_opportunity, pipeline_events, expect_problem
):
    opp = await new_opportunity(team.rep, probability=70)
    url = f"/v1/opportunities/{opp['id']}"
    r = await client.post(
        f"{url}/lose", json={"reason": "价格太高", "competitor": "竞品公司"}, headers=team.rep.headers
    )
    assert r.status_code == 200, r.text
    lost = r.json()
    assert lost["status"] == "lost" and lost["probability"] == 0 and lost["lost"]["competitor"] == "竞品公司"
    [event] = await pipeline_events.wait_for(type="crm.opportunity.lost", subject=opp["id"])
    assert event.event["data"]["competitor"] == "竞品公司" and event.event["data"]["reason"] == "价格太高"
    expect_problem(
        await client.post(f"{url}/reopen", json={"reason": "x", "stage_id": "lost"}, headers=team.rep.headers), 422
    )
    r = await client.post(
        f"{url}/reopen", json={"reason": "客户重新询价", "stage_id": "needs_confirmed"}, headers=team.rep.headers
    )
    assert r.status_code == 200 and r.json()["probability"] == 70  # the override comes back with the open deal
    history = (await client.get(f"{url}/history", headers=team.rep.headers)).json()
    assert [h["type"] for h in history] == [
        "crm.opportunity.created",
        "crm.opportunity.lost",
        "crm.opportunity.reopened",
    ]
    assert history[1]["summary"].startswith("lost to 竞品公司: 价格太高")
