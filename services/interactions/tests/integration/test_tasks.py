"""Follow-up tasks over HTTP: create, assign, change, reschedule, complete, reopen, delete, lists."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crm_platform.testing.fixtures import unique

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def create(client, user, **fields):
    r = await client.post("/v1/tasks", json=fields, headers=user.headers)
    assert r.status_code == 201, r.text
    return r.json()


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def test_create_defaults_to_me_and_publishes(client, world, team, clock, log, events):
    customer = await world.customer(team.rep)
    interaction = await log(team.rep, customer, "visit")
    due = clock.now() + timedelta(days=2)
    task = await create(
        client,
        team.rep,
        title="  发送报价单 ",
        due_at=iso(due),
        remind_at=iso(due - timedelta(hours=2)),
        interaction_id=interaction["id"],
        notes="含税价",
    )
    assert (task["title"], task["assignee_id"], task["created_by"]) == ("发送报价单", team.rep.id, team.rep.id)
    assert task["customer_id"] == customer.id  # taken from the interaction it follows up
    assert task["status"] == "open" and task["overdue"] is False and task["version"] == 1
    assert task["assignee_department_path"] == team.rep.dept
    [created] = await events.wait_for(type="crm.task.created", subject=task["id"])
    assert created.event["data"]["task"]["due_at"] == task["due_at"]


async def test_refused_tasks(client, world, team, clock, expect_problem):
    due = clock.now() + timedelta(days=1)
    for body, status, field in (
        ({"title": "x", "due_at": iso(due), "remind_at": iso(due + timedelta(minutes=1))}, 422, "remind_at"),
        ({"title": "x", "due_at": iso(clock.now() - timedelta(hours=1))}, 422, "due_at"),
        ({"title": "x", "due_at": "2030-01-01T10:00:00"}, 422, "due_at"),
        ({"title": "", "due_at": iso(due)}, 422, "title"),
        ({"title": "x", "due_at": iso(due), "customer_id": "nope"}, 422, "customer_id"),
        ({"title": "x", "due_at": iso(due), "assignee_id": team.rep2.id}, 422, "assignee_id"),  # not in directory
        ({"title": "x", "due_at": iso(due), "opportunity_id": "o-1"}, 422, "customer_id"),
    ):
        problem = expect_problem(await client.post("/v1/tasks", json=body, headers=team.rep.headers), status)
        assert problem["errors"][0]["field"] == field, (body, problem)
    # A rep gives tasks to themselves only; a manager to people in their subtree.
    await world.user(team.rep2)
    expect_problem(
        await client.post(
            "/v1/tasks", json={"title": "x", "due_at": iso(due), "assignee_id": team.rep2.id}, headers=team.rep.headers
        ),
        403,
    )
    expect_problem(
        await client.post(
            "/v1/tasks",
            json={"title": "x", "due_at": iso(due), "assignee_id": team.rep2.id},
            headers=team.outsider.headers,
        ),
        403,
    )
    await world.user(team.stranger, status="deactivated")
    problem = expect_problem(
        await client.post(
            "/v1/tasks",
            json={"title": "x", "due_at": iso(due), "assignee_id": team.stranger.id},
            headers=team.admin.headers,
        ),
        422,
    )
    assert "deactivated" in problem["errors"][0]["reason"]


async def test_a_manager_assigns_and_sees_the_team(client, world, team, clock, expect_problem):
    await world.user(team.rep2)
    due = clock.now() + timedelta(days=3)
    task = await create(client, team.manager, title="回访客户", due_at=iso(due), assignee_id=team.rep2.id)
    assert task["assignee_id"] == team.rep2.id and task["assignee_department_path"] == team.rep2.dept
    mine = (await client.get("/v1/tasks", headers=team.rep2.headers)).json()["items"]
    assert [t["id"] for t in mine] == [task["id"]]
    team_view = await client.get("/v1/tasks", params={"scope": "team"}, headers=team.manager.headers)
    assert task["id"] in [t["id"] for t in team_view.json()["items"]]
    created = await client.get("/v1/tasks", params={"scope": "created"}, headers=team.manager.headers)
    assert [t["id"] for t in created.json()["items"]] == [task["id"]]
    expect_problem(await client.get("/v1/tasks", params={"scope": "team"}, headers=team.rep.headers), 403)
    expect_problem(await client.get("/v1/tasks", params={"scope": "all"}, headers=team.manager.headers), 403)
    all_view = await client.get(
        "/v1/tasks", params={"scope": "all", "assignee_id": team.rep2.id}, headers=team.admin.headers
    )
    assert [t["id"] for t in all_view.json()["items"]] == [task["id"]]
    outsider_view = await client.get("/v1/tasks", params={"scope": "team"}, headers=team.outsider.headers)
    assert task["id"] not in [t["id"] for t in outsider_view.json()["items"]]
    # Who sees one task: assignee, creator, their managers, admins; not a colleague.
    path = f"/v1/tasks/{task['id']}"
    for reader in (team.rep2, team.manager, team.admin):
        assert (await client.get(path, headers=reader.headers)).status_code == 200
    for outsider in (team.rep, team.outsider):
        expect_problem(await client.get(path, headers=outsider.headers), 404)


async def test_change_complete_reopen_reschedule_delete(client, team, clock, events, expect_problem):
    due = clock.now() + timedelta(days=2)
    task = await create(client, team.rep, title="准备方案", due_at=iso(due), remind_at=iso(due - timedelta(hours=3)))
    path = f"/v1/tasks/{task['id']}"
    expect_problem(await client.patch(path, json={"title": "y"}, headers=team.rep.headers), 428)
    expect_problem(await client.patch(path, json={"title": "y"}, headers=team.rep.match('"9"')), 412)
    expect_problem(await client.patch(path, json={"title": None}, headers=team.rep.match('"1"')), 422)
    r = await client.patch(path, json={"title": "准备技术方案", "notes": "附架构图"}, headers=team.rep.match('"1"'))
    assert r.status_code == 200 and r.headers["etag"] == '"2"'

    new_due = due + timedelta(days=1)
    r = await client.post(
        f"{path}/reschedule", json={"due_at": iso(new_due), "reason": "客户改期"}, headers=team.rep.headers
    )
    assert r.status_code == 200, r.text
    moved = r.json()
    # The reminder kept its lead time of three hours.
    assert datetime.fromisoformat(moved["remind_at"]) == new_due.replace(
        microsecond=new_due.microsecond // 1000 * 1000
    ) - timedelta(hours=3)
    r = await client.post(
        f"{path}/reschedule", json={"due_at": iso(new_due), "remind_at": None}, headers=team.rep.match('"3"')
    )
    assert r.json()["remind_at"] is None
    bad = await client.post(
        f"{path}/reschedule",
        json={"due_at": iso(new_due), "remind_at": iso(new_due + timedelta(hours=1))},
        headers=team.rep.headers,
    )
    assert expect_problem(bad, 422)["errors"][0]["field"] == "remind_at"

    r = await client.post(f"{path}/complete", json={"note": "已发送"}, headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "done" and r.json()["completed_by"] == team.rep.id
    conflict = expect_problem(await client.post(f"{path}/complete", headers=team.rep.headers), 409)
    assert conflict["status"] == 409 and "done" in conflict["detail"]
    expect_problem(
        await client.post(f"{path}/reschedule", json={"due_at": iso(new_due)}, headers=team.rep.headers), 409
    )
    r = await client.post(f"{path}/reopen", json={"note": "客户要求修改"}, headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["status"] == "open" and r.json()["completed_at"] is None
    expect_problem(await client.post(f"{path}/reopen", headers=team.rep.headers), 409)

    r = await client.delete(path, params={"reason": "重复"}, headers=team.rep.headers)
    assert r.status_code == 204
    expect_problem(await client.get(path, headers=team.rep.headers), 404)

    types = ["created", "updated", "rescheduled", "rescheduled", "completed", "reopened", "deleted"]
    await events.wait_for(type="crm.task.deleted", subject=task["id"])
    got = [e.event["type"] for e in events.matching(subject=task["id"])]
    assert got == [f"crm.task.{t}" for t in types]
    rescheduled = events.matching(subject=task["id"], type="crm.task.rescheduled")[0].event["data"]
    assert rescheduled["reason"] == "客户改期" and rescheduled["previous_due_at"] == task["due_at"]


async def test_history_of_a_task(client, team, clock):
    due = clock.now() + timedelta(days=1)
    task = await create(client, team.rep, title="打电话", due_at=iso(due))
    await client.post(f"/v1/tasks/{task['id']}/complete", headers=team.rep.headers)
    history = (await client.get(f"/v1/tasks/{task['id']}/history", headers=team.rep.headers)).json()
    assert [h["type"] for h in history] == ["crm.task.created", "crm.task.completed"]
    assert history[1]["changes"] == [{"field": "status", "old": "open", "new": "done"}]


async def test_my_tasks_overdue_today_this_week_in_a_time_zone(client, new_user, clock, expect_problem):
    rep = new_user(f"/{unique('tz')}/sales")
    # Move to the next Wednesday, 10:00 in Shanghai (at least a day ahead: time only moves forward).
    local = (clock.now() + timedelta(days=1)).astimezone(SHANGHAI)
    wednesday = local.date() + timedelta(days=(2 - local.weekday()) % 7)
    start = datetime(wednesday.year, wednesday.month, wednesday.day, 10, tzinfo=SHANGHAI)
    clock.set(start)

    def at(days: int, hour: int, minute: int = 0) -> str:
        day = wednesday + timedelta(days=days)
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).isoformat()

    overdue = await create(client, rep, title="overdue", due_at=at(0, 10, 30))
    today = await create(client, rep, title="today", due_at=at(0, 20))
    tomorrow = await create(client, rep, title="tomorrow", due_at=at(1, 9))
    next_week = await create(client, rep, title="next week", due_at=at(5, 9))  # Monday
    done = await create(client, rep, title="done today", due_at=at(0, 21))
    await client.post(f"/v1/tasks/{done['id']}/complete", headers=rep.headers)
    clock.set(start + timedelta(hours=1))  # 11:00: the first one is past due

    async def view(name: str, **params: str) -> list[str]:
        r = await client.get("/v1/tasks", params={"view": name, **params}, headers=rep.headers)
        assert r.status_code == 200, r.text
        return [t["title"] for t in r.json()["items"]]

    assert await view("overdue") == ["overdue"]
    assert await view("today") == ["overdue", "today"]
    assert await view("week") == ["overdue", "today", "tomorrow"]
    assert await view("all") == ["overdue", "today", "tomorrow", "next week"]
    assert await view("today", status="all") == ["overdue", "today", "done today"]
    assert await view("today", status="done") == ["done today"]
    # In New York it is still Tuesday evening: "today" ends before Shanghai's Wednesday afternoon,
    # and "this week" (Monday to Monday, New York time) reaches Shanghai's next Monday morning.
    assert await view("today", tz="America/New_York") == ["overdue"]
    assert await view("week", tz="America/New_York") == ["overdue", "today", "tomorrow", "next week"]
    flagged = (await client.get(f"/v1/tasks/{overdue['id']}", headers=rep.headers)).json()
    assert flagged["overdue"] is True
    problem = expect_problem(
        await client.get("/v1/tasks", params={"view": "today", "tz": "Mars/Olympus"}, headers=rep.headers), 422
    )
    assert problem["errors"][0]["field"] == "tz"
    expect_problem(await client.get("/v1/tasks", params={"view": "yesterday"}, headers=rep.headers), 422)
    assert today["id"] and tomorrow["id"] and next_week["id"]
