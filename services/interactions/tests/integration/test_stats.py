"""Counts per rep and channel per day / week / month, in a time zone, with recorded-late counts."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def activity(client, world, team, clock, bodies):
    """Interactions on chosen local days, each logged on time or late by moving the clock forward."""
    customer = await world.customer(None, in_pool=True)  # in the public pool: both reps may log on it
    theirs = await world.customer(team.stranger)
    local = (clock.now() + timedelta(days=2)).astimezone(SHANGHAI).date()

    def at(days: int, hour: int, minute: int = 0) -> datetime:
        d = local + timedelta(days=days)
        return datetime(d.year, d.month, d.day, hour, minute, tzinfo=SHANGHAI)

    plan = [  # (author, customer, channel, happened, logged)
        (team.rep, customer, "phone", at(0, 9), at(0, 10)),
        (team.rep, customer, "phone", at(0, 23, 30), at(1, 0, 30)),
        (team.stranger, theirs, "phone", at(1, 10), at(1, 11)),
        (team.rep2, customer, "email", at(1, 8), at(2, 9)),  # 25 hours later: recorded late
        (team.rep, customer, "visit", at(2, 10), at(2, 10, 30)),
        (team.rep2, customer, "note", at(8, 10), at(8, 10, 5)),
        (team.rep, customer, "phone", at(8, 11), at(8, 11, 5)),  # deleted below: not counted
    ]
    made = []
    for author, whose, channel, happened, logged in plan:
        clock.set(logged)
        r = await client.post("/v1/interactions", json=bodies(channel, whose.id, happened), headers=author.headers)
        assert r.status_code == 201, r.text
        made.append(r.json())
    r = await client.delete(f"/v1/interactions/{made[-1]['id']}", headers=team.rep.headers)
    assert r.status_code == 204
    return local, at(0, 0), at(9, 0)


async def stats(client, user, **params):
    r = await client.get("/v1/interactions/stats", params=params, headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_per_rep_and_channel_per_day_week_month(client, team, activity):
    local, start, end = activity
    window = {"from": start.isoformat(), "to": end.isoformat(), "department": team.root}
    daily = await stats(client, team.manager, group_by="day", **window)
    assert set(daily) == {"group_by", "tz", "from", "to", "rows", "by_rep", "by_period", "total"}
    assert daily["tz"] == "Asia/Shanghai" and daily["group_by"] == "day"
    day = lambda n: (local + timedelta(days=n)).isoformat()  # noqa: E731
    assert [(r["period"], r["rep_id"], r["channel"], r["count"], r["recorded_late"]) for r in daily["rows"]] == sorted(
        [
            (day(0), team.rep.id, "phone", 2, 0),
            (day(1), team.rep2.id, "email", 1, 1),
            (day(2), team.rep.id, "visit", 1, 0),
            (day(8), team.rep2.id, "note", 1, 0),
        ]
    )
    assert [r["period_start"] for r in daily["by_period"]] == [day(0), day(1), day(2), day(8)]
    assert daily["total"] == {
        "count": 5,
        "recorded_late": 1,
        "by_channel": {"phone": 2, "email": 1, "visit": 1, "note": 1},
    }
    by_rep = {r["rep_id"]: r for r in daily["by_rep"]}
    assert by_rep[team.rep.id] == {
        "rep_id": team.rep.id,
        "count": 3,
        "recorded_late": 0,
        "by_channel": {"phone": 2, "visit": 1},
    }
    assert by_rep[team.rep2.id]["count"] == 2 and by_rep[team.rep2.id]["recorded_late"] == 1

    weekly = await stats(client, team.manager, group_by="week", **window)
    expected: dict[str, int] = {}
    for n, count in ((0, 2), (1, 1), (2, 1), (8, 1)):
        year, week, _ = (local + timedelta(days=n)).isocalendar()
        label = f"{year}-W{week:02d}"
        expected[label] = expected.get(label, 0) + count
    assert {p["period"]: p["count"] for p in weekly["by_period"]} == expected
    for p in weekly["by_period"]:
        assert date.fromisoformat(p["period_start"]).weekday() == 0  # weeks start on Monday

    monthly = await stats(client, team.manager, group_by="month", **window)
    months: dict[str, int] = {}
    for n, count in ((0, 2), (1, 1), (2, 1), (8, 1)):
        d = local + timedelta(days=n)
        months[f"{d.year}-{d.month:02d}"] = months.get(f"{d.year}-{d.month:02d}", 0) + count
    assert {p["period"]: p["count"] for p in monthly["by_period"]} == months

    # In Los Angeles the 09:00 Shanghai call happened the day before.
    west = await stats(client, team.manager, group_by="day", tz="America/Los_Angeles", rep=team.rep.id, **window)
    phones = [(r["period"], r["count"]) for r in west["rows"] if r["channel"] == "phone"]
    assert phones == [(day(-1), 1), (day(0), 1)]


async def test_who_counts_what(client, team, activity, expect_problem):
    _, start, end = activity
    window = {"from": start.isoformat(), "to": end.isoformat()}
    # A rep counts their own work; a manager their subtree's; an admin everyone's.
    own = await stats(client, team.rep2, **window)
    assert own["total"]["count"] == 2 and {r["rep_id"] for r in own["rows"]} == {team.rep2.id}
    managed = await stats(client, team.manager, **window)
    assert managed["total"]["count"] == 5  # not the stranger's call in another department
    everyone = await stats(client, team.admin, **window)
    assert everyone["total"]["count"] >= 6
    expect_problem(
        await client.get("/v1/interactions/stats", params={**window, "rep": team.rep.id}, headers=team.rep2.headers),
        403,
    )
    expect_problem(
        await client.get(
            "/v1/interactions/stats", params={**window, "department": team.root}, headers=team.rep.headers
        ),
        403,
    )
    expect_problem(
        await client.get(
            "/v1/interactions/stats", params={**window, "department": team.root}, headers=team.outsider.headers
        ),
        403,
    )
    only_email = await stats(client, team.manager, channel="email", **window)
    assert only_email["total"] == {"count": 1, "recorded_late": 1, "by_channel": {"email": 1}}


async def test_bad_stats_parameters(client, team, expect_problem):
    for params, field in (
        ({"group_by": "year"}, "group_by"),
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"tz": "Nowhere/Land"}, "tz"),
    ):
        problem = expect_problem(
            await client.get("/v1/interactions/stats", params=params, headers=team.rep.headers), 422
        )
        assert problem["errors"][0]["field"] == field, (params, problem)
