"""Admin-configured pipelines: the seeded default, new pipelines, renames, reorders, stage removal, the default."""

from __future__ import annotations

import asyncio

from crm_platform.testing.fixtures import unique

DEFAULT_STAGE_IDS = ["initial_contact", "needs_confirmed", "proposal", "negotiation", "won", "lost"]


def stages_payload(pipeline: dict) -> list[dict]:
    return [
        {k: s[k] for k in ("stage_id", "name", "name_en", "probability", "kind", "requirements")}
        for s in pipeline["stages"]
    ]


async def test_the_default_pipeline_is_seeded_once_even_by_racing_replicas(
    client, team, pipeline_app, pipeline_db, pipeline_events
):
    seeded = await asyncio.gather(*(pipeline_app.state.pipeline.pipelines.seed_default() for _ in range(5)))
    assert seeded == [False] * 5  # the app's start-up seeded it already
    assert await pipeline_db["pipelines"].count_documents({"_id": "default"}) == 1
    default = (await client.get("/v1/pipelines/default", headers=team.rep.headers)).json()
    assert [s["stage_id"] for s in default["stages"]] == DEFAULT_STAGE_IDS
    by_id = {s["stage_id"]: s for s in default["stages"]}
    assert (
        by_id["initial_contact"]["name"],
        by_id["initial_contact"]["name_en"],
        by_id["initial_contact"]["probability"],
    ) == ("初步接触", "Initial contact", 10)
    assert by_id["proposal"]["requirements"]["documents"] == ["requirements"]
    assert by_id["negotiation"]["requirements"]["fields"] == ["quotation_amount"]
    assert (by_id["won"]["kind"], by_id["won"]["probability"], by_id["lost"]["kind"], by_id["lost"]["probability"]) == (
        "won",
        100,
        "lost",
        0,
    )
    # Seeded once in this database (the count above). The topic is shared by every pipeline app of
    # the test session (the console's harness runs one too, with a default of its own), so there
    # may be more than one such event on it; each is a creation of the whole default.
    events = await pipeline_events.wait_for(type="crm.pipeline.configured", subject="default")
    assert events
    for event in events:
        assert event.event["data"]["action"] == "created" and len(event.event["data"]["pipeline"]["stages"]) == 6


async def test_only_admins_configure_and_bad_pipelines_are_refused(client, team, expect_problem):
    body = {
        "name": "项目型销售",
        "stages": [
            {"name": "立项", "probability": 10},
            {"name": "签约", "probability": 100, "kind": "won"},
            {"name": "输单", "probability": 0, "kind": "lost"},
        ],
    }
    expect_problem(await client.post("/v1/pipelines", json=body, headers=team.manager.headers), 403)
    expect_problem(await client.post("/v1/pipelines", json=body), 401)
    bad = {**body, "stages": [*body["stages"][:2], {"name": "x", "probability": 5}]}
    assert (
        "lost"
        in expect_problem(await client.post("/v1/pipelines", json=bad, headers=team.admin.headers), 422)["detail"]
    )
    bad = {**body, "stages": [*body["stages"], {"name": "y", "probability": 5, "requirements": {"fields": ["colour"]}}]}
    expect_problem(await client.post("/v1/pipelines", json=bad, headers=team.admin.headers), 422)
    r = await client.post("/v1/pipelines", json=body, headers=team.admin.headers)
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    expect_problem(await client.get("/v1/pipelines/nope", headers=team.rep.headers), 404)


async def test_renaming_reordering_and_adding_stages_keeps_opportunities_intact(
    client, team, customer_of, pipeline_events, expect_problem
):
    admin = team.admin
    created = (
        await client.post(
            "/v1/pipelines",
            json={
                "name": unique("P"),
                "stages": [
                    {"stage_id": "a", "name": "甲", "probability": 10},
                    {"stage_id": "b", "name": "乙", "probability": 50},
                    {"stage_id": "c", "name": "丙", "probability": 70},
                    {"stage_id": "w", "name": "赢", "probability": 100, "kind": "won"},
                    {"stage_id": "l", "name": "输", "probability": 0, "kind": "lost"},
                ],
            },
            headers=admin.headers,
        )
    ).json()
    url = f"/v1/pipelines/{created['id']}"
    customer = await customer_of(team.rep)
    opp = (
        await client.post(
            "/v1/opportunities",
            json={"customer_id": customer.id, "name": "x", "pipeline_id": created["id"], "stage_id": "b"},
            headers=team.rep.headers,
        )
    ).json()
    assert opp["stage"]["stage_id"] == "b" and opp["probability"] == 50
    stages = stages_payload(created)
    stages[1]["name"] = "乙（改名）"
    stages[0], stages[2] = stages[2], stages[0]  # reorder: c, b, a
    stages.insert(1, {"name": "新阶段", "name_en": "New step", "probability": 30})
    changed = {"name": created["name"], "stages": stages}
    expect_problem(await client.put(url, json=changed, headers=admin.headers), 428)
    expect_problem(await client.put(url, json=changed, headers=admin.match('"9"')), 412)
    expect_problem(await client.put(url, json=changed, headers=team.manager.match('"1"')), 403)
    r = await client.put(url, json=changed, headers=admin.match('"1"'))
    assert r.status_code == 200, r.text
    assert [s["stage_id"] for s in r.json()["stages"]] == ["c", "new_step", "b", "a", "w", "l"]
    again = await client.put(
        url, json={"name": created["name"], "stages": stages_payload(r.json())}, headers=admin.match('"2"')
    )
    assert again.headers["etag"] == '"2"'  # nothing changed: no new version, no event
    got = (await client.get(f"/v1/opportunities/{opp['id']}", headers=team.rep.headers)).json()
    assert got["stage"]["stage_id"] == "b" and got["stage"]["name"] == "乙（改名）" and got["stage"]["position"] == 2
    assert got["probability"] == 50 and got["version"] == opp["version"]  # the opportunity itself did not change
    events = await pipeline_events.wait_for(2, type="crm.pipeline.configured", subject=created["id"])
    changes = {c["field"] for c in events[1].event["data"]["changes"]}
    assert {"stages[b].name", "stages[new_step]", "stages[a].position", "stages[c].position"} <= changes
    # A stage in use cannot be removed; an unused one can.
    without_b = [s for s in stages_payload(r.json()) if s["stage_id"] != "b"]
    body = expect_problem(
        await client.put(url, json={"name": created["name"], "stages": without_b}, headers=admin.match('"2"')), 409
    )
    assert body["stages_in_use"] == {"b": 1}
    without_a = [s for s in stages_payload(r.json()) if s["stage_id"] != "a"]
    r = await client.put(url, json={"name": created["name"], "stages": without_a}, headers=admin.match('"2"'))
    assert r.status_code == 200 and "a" not in [s["stage_id"] for s in r.json()["stages"]]
    history = (await client.get(f"{url}/history", headers=admin.headers)).json()
    assert [h["version"] for h in history] == [1, 2, 3]


async def test_making_another_pipeline_the_default(client, team, customer_of, pipeline_events):
    default = (await client.get("/v1/pipelines/default", headers=team.admin.headers)).json()
    # Same stage ids as the default, so other tests creating opportunities meanwhile are unaffected.
    created = (
        await client.post(
            "/v1/pipelines",
            json={"name": unique("Default copy"), "stages": stages_payload(default)},
            headers=team.admin.headers,
        )
    ).json()
    try:
        r = await client.post(f"/v1/pipelines/{created['id']}/make-default", headers=team.admin.headers)
        assert r.status_code == 200 and r.json()["is_default"]
        listed = {
            p["id"]: p["is_default"] for p in (await client.get("/v1/pipelines", headers=team.rep.headers)).json()
        }
        assert listed[created["id"]] and not listed["default"]
        customer = await customer_of(team.rep)
        opp = (
            await client.post(
                "/v1/opportunities", json={"customer_id": customer.id, "name": "x"}, headers=team.rep.headers
            )
        ).json()
        assert opp["pipeline_id"] == created["id"]
    finally:
        r = await client.post("/v1/pipelines/default/make-default", headers=team.admin.headers)
        assert r.status_code == 200 and r.json()["is_default"]
    listed = {p["id"]: p["is_default"] for p in (await client.get("/v1/pipelines", headers=team.rep.headers)).json()}
    assert listed["default"] and not listed[created["id"]]
    actions = [
        e.event["data"]["action"]
        for e in await pipeline_events.wait_for(3, type="crm.pipeline.configured", subject=created["id"])
    ]
    assert actions == ["created", "made_default", "default_removed"]
    on_default = [
        e.event["data"]["action"]
        for e in await pipeline_events.wait_for(3, type="crm.pipeline.configured", subject="default")
    ]
    assert on_default[-2:] == ["default_removed", "made_default"]
