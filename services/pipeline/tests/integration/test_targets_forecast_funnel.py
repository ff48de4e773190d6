"""Targets per rep and department, the forecast against them, and the funnel."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from crm_platform.testing.fixtures import unique

ZONE = ZoneInfo("Asia/Shanghai")
DOC = {"kind": "requirements", "name": "需求", "url": "https://docs.example.com/r"}


def today(clock) -> date:
    return clock.now().astimezone(ZONE).date()


def periods(clock) -> tuple[str, str, list[str], str]:
    day = today(clock)
    quarter = (day.month - 1) // 3 + 1
    months = [f"{day.year}-{m:02d}" for m in range(3 * quarter - 2, 3 * quarter + 1)]
    return f"{day.year}-{day.month:02d}", f"{day.year}-Q{quarter}", months, str(day.year)


async def won_deal(client, user, new_opportunity, amount: str, currency: str = "CNY") -> dict:
    opp = await new_opportunity(
        user, amount=amount, currency=currency, quotation_amount=amount, documents=[DOC], stage_id="negotiation"
    )
    r = await client.post(f"/v1/opportunities/{opp['id']}/win", json={"reason": "签约"}, headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_setting_targets(client, team, clock, pipeline_events, expect_problem):
    month, _, _, _ = periods(clock)
    url = f"/v1/targets/rep/{team.rep.id}/{month}"
    body = {"amount": "100000.00", "department_path": team.rep.dept}
    expect_problem(await client.put(url, json=body, headers=team.rep.headers), 403)
    expect_problem(await client.put(url, json=body, headers=team.outsider.headers), 403)
    expect_problem(await client.put(url, json=body), 401)
    expect_problem(
        await client.put(f"/v1/targets/rep/{team.rep.id}/2026-13", json=body, headers=team.manager.headers), 422
    )
    expect_problem(
        await client.put(f"/v1/targets/team/{team.rep.id}/{month}", json=body, headers=team.manager.headers), 422
    )
    expect_problem(await client.put(url, json={**body, "amount": "-1"}, headers=team.manager.headers), 422)
    expect_problem(
        await client.put(
            f"/v1/targets/department/sales/{month}",
            json={**body, "department_path": team.root},
            headers=team.manager.headers,
        ),
        422,
    )
    r = await client.put(url, json=body, headers=team.manager.headers)
    assert r.status_code == 200, r.text
    target = r.json()
    assert (target["id"], target["amount"], target["currency"], r.headers["etag"]) == (
        f"rep:{team.rep.id}:{month}",
        "100000.00",
        "CNY",
        '"1"',
    )
    again = await client.put(url, json=body, headers=team.manager.headers)
    assert again.headers["etag"] == '"1"'  # the same target again changes nothing
    expect_problem(await client.put(url, json={**body, "amount": "120000"}, headers=team.manager.match('"5"')), 412)
    r = await client.put(url, json={**body, "amount": "120000"}, headers=team.admin.match('"1"'))
    assert r.json()["amount"] == "120000.00" and r.headers["etag"] == '"2"'
    events = await pipeline_events.wait_for(2, type="crm.target.set", subject=target["id"])
    assert [e.event["data"]["target"]["amount"] for e in events] == ["100000.00", "120000.00"]
    assert events[1].event["data"]["previous_amount"] == "100000.00"
    assert (await client.get(url, headers=team.rep.headers)).json()["amount"] == "120000.00"
    expect_problem(await client.get(url, headers=team.rep2.headers), 404)
    history = (await client.get(f"{url}/history", headers=team.manager.headers)).json()
    assert [(h["actor"], h["changes"]) for h in history] == [
        (team.manager.id, [{"field": "amount", "old": None, "new": "100000.00"}]),
        (team.admin.id, [{"field": "amount", "old": "100000.00", "new": "120000.00"}]),
    ]
    listed = (
        await client.get(
            "/v1/targets", params={"year": month[:4], "department": team.root}, headers=team.manager.headers
        )
    ).json()
    assert [t["id"] for t in listed] == [target["id"]]


async def test_forecast_for_a_rep_and_a_department(client, team, clock, new_opportunity, expect_problem):
    month, quarter, months, year = periods(clock)
    close = today(clock).isoformat()
    for rep, amount in ((team.rep, "100000.00"), (team.rep2, "50000.00")):
        r = await client.put(
            f"/v1/targets/rep/{rep.id}/{month}",
            json={"amount": amount, "department_path": rep.dept},
            headers=team.manager.headers,
        )
        assert r.status_code == 200
    other_month = next(m for m in months if m != month)
    await client.put(
        f"/v1/targets/rep/{team.rep.id}/{other_month}",
        json={"amount": "40000", "department_path": team.rep.dept},
        headers=team.manager.headers,
    )
    await won_deal(client, team.rep, new_opportunity, "30000.00")
    await won_deal(client, team.rep, new_opportunity, "999.00", currency="USD")
    await new_opportunity(team.rep, amount="50000.00", expected_close_date=close)  # 10 % -> 5000 weighted
    await new_opportunity(team.rep, amount="20000.00", expected_close_date=f"{int(year) + 1}-01-15")  # another period
    await new_opportunity(team.rep, amount="8000.00", expected_close_date=close, probability=55)  # 4400 weighted
    lost = await new_opportunity(team.rep, amount="70000.00", expected_close_date=close)
    await client.post(f"/v1/opportunities/{lost['id']}/lose", json={"reason": "预算取消"}, headers=team.rep.headers)
    await won_deal(client, team.rep2, new_opportunity, "10000.00")

    r = await client.get("/v1/forecast", params={"period": month}, headers=team.rep.headers)
    assert r.status_code == 200, r.text
    f = r.json()
    assert (f["scope"], f["scope_id"], f["target"], f["target_source"]) == ("rep", team.rep.id, "100000.00", "set")
    assert (f["won"], f["won_count"], f["pipeline"], f["weighted_pipeline"], f["open_count"]) == (
        "30000.00",
        1,
        "58000.00",
        "9400.00",
        2,
    )
    assert (f["remaining"], f["gap"], f["attainment"]) == ("70000.00", "60600.00", 0.3)
    assert f["other_currencies"] == {"USD": 1}
    usd = (
        await client.get("/v1/forecast", params={"period": month, "currency": "USD"}, headers=team.rep.headers)
    ).json()
    assert usd["won"] == "999.00" and usd["target"] is None and usd["gap"] is None

    q = (await client.get("/v1/forecast", params={"period": quarter}, headers=team.rep.headers)).json()
    assert (q["target"], q["target_source"], sorted(q["target_parts"])) == (
        "140000.00",
        "sum_of_months",
        sorted([month, other_month]),
    )
    y = (await client.get("/v1/forecast", params={"period": year}, headers=team.rep.headers)).json()
    assert (y["target"], y["target_source"]) == ("140000.00", "sum_of_quarters")

    d = (
        await client.get(
            "/v1/forecast", params={"period": month, "department": team.root}, headers=team.manager.headers
        )
    ).json()
    assert (d["scope"], d["target"], d["target_source"]) == ("department", "150000.00", "sum_of_subtree")
    assert (d["won"], d["won_count"]) == ("40000.00", 2)
    await client.put(
        f"/v1/targets/department/{team.root.strip('/')}/{quarter}",
        json={"amount": "500000", "department_path": team.root},
        headers=team.admin.headers,
    )
    d = (
        await client.get(
            "/v1/forecast", params={"period": quarter, "department": team.root}, headers=team.manager.headers
        )
    ).json()
    assert (d["target"], d["target_source"]) == ("500000.00", "set")
    by_manager = (
        await client.get("/v1/forecast", params={"period": month, "rep": team.rep.id}, headers=team.manager.headers)
    ).json()
    assert by_manager["won"] == "30000.00" and by_manager["target"] == "100000.00"

    expect_problem(
        await client.get("/v1/forecast", params={"period": month, "rep": team.rep2.id}, headers=team.rep.headers), 403
    )
    expect_problem(
        await client.get("/v1/forecast", params={"period": month, "department": team.root}, headers=team.rep.headers),
        403,
    )
    expect_problem(
        await client.get(
            "/v1/forecast", params={"period": month, "department": team.root}, headers=team.outsider.headers
        ),
        403,
    )
    expect_problem(await client.get("/v1/forecast", params={"period": "Q4"}, headers=team.rep.headers), 422)
    expect_problem(
        await client.get(
            "/v1/forecast", params={"period": month, "rep": "a", "department": "/b"}, headers=team.manager.headers
        ),
        422,
    )


async def test_the_funnel_from_stage_histories(client, team, clock, customer_of, expect_problem):
    pipeline = (
        await client.post(
            "/v1/pipelines",
            json={
                "name": unique("漏斗"),
                "stages": [
                    {"stage_id": "s1", "name": "一", "probability": 10},
                    {"stage_id": "s2", "name": "二", "probability": 30},
                    {"stage_id": "s3", "name": "三", "probability": 60},
                    {"stage_id": "won", "name": "赢", "probability": 100, "kind": "won"},
                    {"stage_id": "lost", "name": "输", "probability": 0, "kind": "lost"},
                ],
            },
            headers=team.admin.headers,
        )
    ).json()
    day = today(clock)
    customer = await customer_of(team.rep)

    async def create(user, amount):
        body = {
            "customer_id": customer.id if user is team.rep else (await customer_of(user)).id,
            "name": "f",
            "amount": amount,
            "pipeline_id": pipeline["id"],
        }
        r = await client.post("/v1/opportunities", json=body, headers=user.headers)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async def act(opp_id, user, path, body):
        r = await client.post(f"/v1/opportunities/{opp_id}/{path}", json=body, headers=user.headers)
        assert r.status_code == 200, r.text

    await create(team.rep, "1000.00")  # stays in the first stage
    jumps = await create(team.rep, "2000.00")
    wins = await create(team.rep, "3000.00")
    loses = await create(team.rep2, "4000.00")
    clock.advance(timedelta(days=2))
    await act(jumps, team.rep, "stage", {"stage_id": "s3"})
    await act(wins, team.rep, "stage", {"stage_id": "s2"})
    await act(loses, team.rep2, "stage", {"stage_id": "s2"})
    clock.advance(timedelta(days=4))
    await act(wins, team.rep, "win", {"reason": "ok"})
    await act(loses, team.rep2, "lose", {"reason": "no"})

    params = {"pipeline": pipeline["id"], "from": day.isoformat(), "to": day.isoformat()}
    r = await client.get("/v1/funnel", params=params, headers=team.manager.headers)
    assert r.status_code == 200, r.text
    funnel = r.json()
    stages = {s["stage_id"]: s for s in funnel["stages"]}
    assert [s["stage_id"] for s in funnel["stages"]] == ["s1", "s2", "s3", "won", "lost"]
    assert [stages[s]["reached"] for s in ("s1", "s2", "s3", "won", "lost")] == [4, 3, 2, 1, 1]
    assert [stages[s]["amount"] for s in ("s1", "s2", "s3", "won")] == ["10000.00", "9000.00", "5000.00", "3000.00"]
    assert [stages[s]["conversion_to_next"] for s in ("s1", "s2", "s3")] == [0.75, 0.6667, 0.5]
    assert stages["s1"]["average_days_in_stage"] == 2.0 and stages["s1"]["completed_stays"] == 3
    assert stages["s2"]["average_days_in_stage"] == 4.0 and stages["s3"]["average_days_in_stage"] is None
    assert (stages["s1"]["current"], stages["s3"]["current"], funnel["total"], funnel["win_rate"]) == (1, 1, 4, 0.5)
    assert (funnel["from"], funnel["to"]) == (day.isoformat(), day.isoformat())
    mine = (await client.get("/v1/funnel", params=params, headers=team.rep.headers)).json()
    assert mine["total"] == 3 and mine["lost"] == 0  # a rep's funnel is their own
    rep2 = (await client.get("/v1/funnel", params={**params, "rep": team.rep2.id}, headers=team.manager.headers)).json()
    assert rep2["total"] == 1 and rep2["lost"] == 1
    later = (
        await client.get(
            "/v1/funnel",
            params={
                **params,
                "from": (day + timedelta(days=1)).isoformat(),
                "to": (day + timedelta(days=30)).isoformat(),
            },
            headers=team.manager.headers,
        )
    ).json()
    assert later["total"] == 0 and later["stages"][0]["conversion_to_next"] is None
    expect_problem(
        await client.get("/v1/funnel", params={**params, "department": team.root}, headers=team.rep.headers), 403
    )
    expect_problem(await client.get("/v1/funnel", params={**params, "pipeline": "nope"}, headers=team.rep.headers), 422)
    expect_problem(
        await client.get(
            "/v1/funnel", params={**params, "from": "2026-12-01", "to": "2026-11-01"}, headers=team.rep.headers
        ),
        422,
    )


async def test_a_reps_target_takes_the_department_from_the_directory(client, team, clock, producer, pipeline_app):
    from crm_platform.testing.event_feed import EventFeed
    from crm_platform.testing.fixtures import eventually

    month, _, _, _ = periods(clock)
    known = unique("rep-known")
    await EventFeed(producer).user(known, "王五", team.rep.dept)
    users = pipeline_app.state.pipeline.targets.directory
    await eventually(lambda: users.user(known), timeout=30, message="directory copy")

    url = f"/v1/targets/rep/{known}/{month}"
    r = await client.put(url, json={"amount": "80000"}, headers=team.manager.headers)
    assert r.status_code == 200, r.text
    assert r.json()["department_path"] == team.rep.dept
    # Another department than the directory's is refused, naming the field; nothing is written.
    wrong = await client.put(
        url, json={"amount": "1", "department_path": team.root}, headers={**team.manager.headers, "If-Match": '"1"'}
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "department_path"
    unknown = await client.put(
        f"/v1/targets/rep/{unique('nobody')}/{month}", json={"amount": "1"}, headers=team.manager.headers
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "department_path"
    assert (await client.get(url, headers=team.manager.headers)).json()["amount"] == "80000.00"
