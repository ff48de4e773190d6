"""Interactions, tasks and feedback follow their customer's merge, delete and restore (idempotently).

The customers events come through the real broker (CustomerFeed publishes them with the
contracts), exactly as the customers service's outbox would.
"""

from __future__ import annotations

from datetime import timedelta

from crm_platform.metrics import EVENTS_CONSUMED
from crm_platform.testing.fixtures import eventually


def handled(app, event_type: str) -> float:
    group = app.state.services.kit.consumers[0].group_id
    return sum(EVENTS_CONSUMED.labels(group, event_type, o)._value.get() for o in ("ok", "dead_lettered"))


async def records_of(client, world, team, clock, log, customer):
    interaction = await log(team.rep, customer, "visit", contact_ids=customer.contact_ids[:1])
    due = clock.now() + timedelta(days=1)
    r = await client.post(
        "/v1/tasks",
        json={"title": "回访", "due_at": due.isoformat(), "customer_id": customer.id},
        headers=team.rep.headers,
    )
    assert r.status_code == 201, r.text
    task = r.json()
    r = await client.post(
        "/v1/feedback",
        json={"kind": "request", "title": "开发票", "description": "需要增值税专票", "customer_id": customer.id},
        headers=team.rep.headers,
    )
    assert r.status_code == 201, r.text
    return interaction, task, r.json()


async def test_a_merge_moves_everything_to_the_survivor_once(interactions_app, client, world, team, clock, log, events):
    survivor = await world.customer(team.rep)
    duplicate = await world.customer(team.rep)
    interaction, task, feedback = await records_of(client, world, team, clock, log, duplicate)
    away, merged = await world.feed.merged(survivor, duplicate)

    async def moved():
        got = (await client.get(f"/v1/customers/{survivor.id}/interactions", headers=team.rep.headers)).json()
        return [i["id"] for i in got["items"]] == [interaction["id"]]

    await eventually(moved, timeout=30, message="interaction moved to the survivor")
    await eventually(
        lambda: all(
            events.matching(type=t, subject=s)
            for t, s in (
                ("crm.interaction.updated", interaction["id"]),
                ("crm.task.updated", task["id"]),
                ("crm.feedback.updated", feedback["id"]),
            )
        ),
        message="update events",
    )
    got_task = (await client.get(f"/v1/tasks/{task['id']}", headers=team.rep.headers)).json()
    got_feedback = (await client.get(f"/v1/feedback/{feedback['id']}", headers=team.rep.headers)).json()
    assert got_task["customer_id"] == survivor.id and got_feedback["customer_id"] == survivor.id
    # Contacts keep their ids through a merge, so the interaction's contacts still resolve.
    moved_interaction = (await client.get(f"/v1/interactions/{interaction['id']}", headers=team.rep.headers)).json()
    assert moved_interaction["contact_ids"] == duplicate.contact_ids[:1] and moved_interaction["version"] == 2
    update = events.matching(type="crm.interaction.updated", subject=interaction["id"])[0].event
    assert update["data"]["changes"] == [{"field": "customer_id", "old": duplicate.id, "new": survivor.id}]
    assert update["data"]["reason"] == "customer merged" and update["actor"] == "feed"

    # The same events again (a redelivery): nothing moves twice, no new version, no new event.
    before = handled(interactions_app, "crm.customer.merged")
    await world.feed.publish(away)
    await world.feed.publish(merged)
    await eventually(
        lambda: handled(interactions_app, "crm.customer.merged") >= before + 1, message="redelivery handled"
    )
    again = (await client.get(f"/v1/interactions/{interaction['id']}", headers=team.rep.headers)).json()
    assert again["version"] == 2
    assert len(events.matching(type="crm.interaction.updated", subject=interaction["id"])) == 1


async def test_delete_hides_and_restore_shows_again(interactions_app, client, world, team, clock, log, events):
    customer = await world.customer(team.rep)
    interaction, task, feedback = await records_of(client, world, team, clock, log, customer)
    paths = (
        f"/v1/interactions/{interaction['id']}",
        f"/v1/tasks/{task['id']}",
        f"/v1/feedback/{feedback['id']}",
    )
    await world.customer_event(customer, "deleted", status="deleted")
    deleted_event = world.feed.published[-1]

    async def all_status(code: int) -> bool:
        return all([(await client.get(p, headers=team.rep.headers)).status_code == code for p in paths])

    await eventually(lambda: all_status(404), timeout=30, message="records hidden")
    assert (await client.get("/v1/tasks", headers=team.rep.headers)).json()["items"] == []
    listed = await client.get("/v1/interactions", params={"customer_id": customer.id}, headers=team.rep.headers)
    assert listed.json()["items"] == []
    # A hidden task sends no notices, even past its due time.
    clock.advance(timedelta(days=2))
    await world.customer_event(customer, "restored", status="active")
    await eventually(lambda: all_status(200), timeout=30, message="records shown again")
    # Restored, and past due: now its overdue notice goes out.
    [overdue] = await events.wait_for(type="crm.task.overdue", subject=task["id"])
    assert overdue.event["aggregateversion"] == 4  # created, hidden, shown: nothing went out while hidden
    hidden_changes = [e.event["data"]["changes"] for e in events.matching(type="crm.task.updated", subject=task["id"])]
    assert hidden_changes == [
        [{"field": "hidden", "old": False, "new": True}],
        [{"field": "hidden", "old": True, "new": False}],
    ]

    # The deleted event once more, now stale: the copy says active, so nothing is hidden again.
    before = handled(interactions_app, "crm.customer.deleted")
    await world.feed.publish(deleted_event)
    await eventually(lambda: handled(interactions_app, "crm.customer.deleted") >= before + 1, message="stale handled")
    assert await all_status(200)
    assert len(events.matching(type="crm.task.updated", subject=task["id"])) == 2
