"""Reminders and overdue notices: each published once, with the clock moved by hand (no sleeping).

The app runs its scheduler loop on the session's ManualClock; the racing test stops it
and drives two independent scheduler instances (each with its own repository over the
same database, as two replicas would) over the same due tasks at the same moment.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from crm_interactions.adapters.repository import Repository
from crm_interactions.application.scheduler import TaskScheduler
from crm_platform.events import EventFactory
from crm_platform.testing.fixtures import eventually


async def create(client, user, **fields):
    r = await client.post("/v1/tasks", json=fields, headers=user.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_reminder_then_overdue_once_each_and_rescheduling_rearms(client, team, clock, events):
    now = clock.now()
    task = await create(
        client,
        team.rep,
        title="回电话",
        due_at=(now + timedelta(hours=1)).isoformat(),
        remind_at=(now + timedelta(minutes=10)).isoformat(),
    )
    subject = task["id"]
    clock.advance(timedelta(minutes=11))
    [reminder] = await events.wait_for(type="crm.task.reminder_due", subject=subject)
    assert reminder.event["actor"] == "system:interactions-scheduler"
    assert reminder.event["data"]["task"]["assignee_id"] == team.rep.id
    assert events.matching(type="crm.task.overdue", subject=subject) == []

    clock.advance(timedelta(hours=1))
    await events.wait_for(type="crm.task.overdue", subject=subject)
    got = (await client.get(f"/v1/tasks/{subject}", headers=team.rep.headers)).json()
    assert got["overdue"] is True and got["reminder_sent_at"] and got["overdue_since"]
    history = (await client.get(f"/v1/tasks/{subject}/history", headers=team.rep.headers)).json()
    assert [h["type"] for h in history] == ["crm.task.created", "crm.task.reminder_due", "crm.task.overdue"]

    # Rescheduling arms both notices again, for the new times.
    later = clock.now() + timedelta(hours=2)
    r = await client.post(
        f"/v1/tasks/{subject}/reschedule",
        json={"due_at": later.isoformat(), "remind_at": (later - timedelta(hours=1)).isoformat()},
        headers=team.rep.headers,
    )
    assert r.json()["reminder_sent_at"] is None and r.json()["overdue_since"] is None and r.json()["overdue"] is False
    clock.advance(timedelta(hours=3))
    await events.wait_for(2, type="crm.task.reminder_due", subject=subject)
    await events.wait_for(2, type="crm.task.overdue", subject=subject)
    versions = [e.event["aggregateversion"] for e in events.matching(subject=subject)]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)  # one event per version, in order


async def test_done_and_deleted_tasks_send_nothing(client, team, clock, events):
    now = clock.now()
    due = {"due_at": (now + timedelta(minutes=30)).isoformat(), "remind_at": (now + timedelta(minutes=5)).isoformat()}
    done = await create(client, team.rep, title="done", **due)
    dropped = await create(client, team.rep, title="dropped", **due)
    watched = await create(client, team.rep, title="watched", **due)
    await client.post(f"/v1/tasks/{done['id']}/complete", headers=team.rep.headers)
    await client.delete(f"/v1/tasks/{dropped['id']}", headers=team.rep.headers)
    clock.advance(timedelta(hours=1))
    await events.wait_for(type="crm.task.overdue", subject=watched["id"])
    await events.wait_for(type="crm.task.deleted", subject=dropped["id"])
    for quiet in (done, dropped):
        notices = [
            e
            for e in events.matching(subject=quiet["id"])
            if e.event["type"] in ("crm.task.reminder_due", "crm.task.overdue")
        ]
        assert notices == []
    # Reopening a task that was done before its due time: it is overdue now, so that notice goes out once.
    await client.post(f"/v1/tasks/{done['id']}/reopen", headers=team.rep.headers)
    await events.wait_for(type="crm.task.overdue", subject=done["id"])
    await events.wait_for(type="crm.task.reminder_due", subject=done["id"])


async def test_two_schedulers_racing_send_each_notice_once(interactions_app, client, team, clock, events, db):
    kit = interactions_app.state.services.kit
    app_scheduler = interactions_app.state.scheduler
    await app_scheduler.stop()  # only the two below race now
    try:
        now = clock.now()
        tasks = [
            await create(
                client,
                team.rep,
                title=f"race {i}",
                due_at=(now + timedelta(minutes=20)).isoformat(),
                remind_at=(now + timedelta(minutes=10)).isoformat(),
            )
            for i in range(12)
        ]
        ids = {t["id"] for t in tasks}
        replicas = [
            TaskScheduler(Repository(kit.db, clock, kit.wake_relay), clock, EventFactory(kit.source, clock))
            for _ in range(2)
        ]
        clock.advance(timedelta(minutes=30))
        sent = await asyncio.gather(*(s.tick() for s in replicas for _ in range(2)))
        assert sum(sent) == 2 * len(ids)  # a reminder and an overdue notice per task, no more

        # A scheduler started afterwards (a restart, a new replica) finds nothing left to send.
        restarted = TaskScheduler(Repository(kit.db, clock, kit.wake_relay), clock, EventFactory(kit.source, clock))
        assert await restarted.tick() == 0
        assert sum(await asyncio.gather(*(s.tick() for s in replicas))) == 0

        for kind in ("crm.task.reminder_due", "crm.task.overdue"):
            await eventually(
                lambda kind=kind: {e.event["subject"] for e in events.matching(type=kind)} >= ids,
                timeout=30,
                message=f"{kind} for every task",
            )

        # Every outbox is drained, so nothing more can come: count what was published and archived.
        async def drained() -> bool:
            query = {"_id": {"$in": list(ids)}, "outbox_pending_ms": {"$exists": True}}
            return await db["tasks"].count_documents(query) == 0

        await eventually(drained, message="outboxes drained")
        for kind in ("crm.task.reminder_due", "crm.task.overdue"):
            published = [e.event["subject"] for e in events.matching(type=kind) if e.event["subject"] in ids]
            assert sorted(published) == sorted(ids), kind
            archived = await db["event_log"].count_documents({"subject": {"$in": list(ids)}, "type": kind})
            assert archived == len(ids)
    finally:
        app_scheduler.start()


async def test_the_scheduler_reports_its_passes_in_readyz(client):
    from crm_platform.testing.fixtures import eventually

    async def reported():
        body = (await client.get("/readyz")).json()
        status = body["checks"].get("background", {}).get("task-scheduler")
        return status if status and status["runs"] >= 1 else None

    status = await eventually(reported, timeout=30, message="a scheduler pass in /readyz")
    assert status["last_error"] is None and status["stalled"] is False
    assert status["last_finished_at"] is not None
