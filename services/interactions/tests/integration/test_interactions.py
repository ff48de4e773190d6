"""Logging, reading, changing and deleting interactions over HTTP, with their events on Kafka."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

CHANNELS = ("phone", "email", "meeting", "visit", "social", "note")


@pytest.mark.parametrize("channel", CHANNELS)
async def test_log_every_channel_publishes_logged_with_what_others_rely_on(
    client, world, team, clock, events, bodies, channel
):
    customer = await world.customer(team.rep)
    occurred = clock.now() - timedelta(hours=3)
    body = {**bodies(channel, customer.id, occurred), "contact_ids": customer.contact_ids[:1], "summary": "跟进"}
    r = await client.post("/v1/interactions", json=body, headers=team.rep.headers)
    assert r.status_code == 201, r.text
    got = r.json()
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/interactions/{got['id']}"
    assert (got["channel"], got["customer_id"], got["author_id"]) == (channel, customer.id, team.rep.id)
    assert got["contact_ids"] == customer.contact_ids[:1] and got["recorded_late"] is False
    assert datetime.fromisoformat(got["occurred_at"]) == occurred.replace(
        microsecond=occurred.microsecond // 1000 * 1000
    )
    assert datetime.fromisoformat(got["recorded_at"]) == clock.now()
    assert got["author_department_path"] == team.rep.dept
    if channel == "social":
        assert got["platform"] == "WeChat"  # 微信, stored with one spelling
    if channel == "phone":
        assert (got["direction"], got["duration_seconds"], got["objections"]) == ("out", 420, "价格偏高")

    [record] = await events.wait_for(type="crm.interaction.logged", subject=got["id"])
    assert record.key == got["id"].encode()
    data = record.event["data"]
    # The flat fields the customers and pool services and reports depend on.
    assert (data["customer_id"], data["author_id"], data["channel"]) == (customer.id, team.rep.id, channel)
    assert datetime.fromisoformat(data["occurred_at"]) == datetime.fromisoformat(got["occurred_at"])
    assert data["interaction"]["summary"] == "跟进" and record.event["aggregateversion"] == 1
    assert record.event["actor"] == team.rep.id and record.event["source"] == "/crm/interactions"


async def test_recorded_late_after_24_hours_is_on_the_record_and_filterable(client, world, team, clock, bodies):
    customer = await world.customer(team.rep)
    on_time = bodies("meeting", customer.id, clock.now() - timedelta(hours=23, minutes=59))
    late = bodies("meeting", customer.id, clock.now() - timedelta(hours=24, minutes=1))
    r1 = await client.post("/v1/interactions", json=on_time, headers=team.rep.headers)
    r2 = await client.post("/v1/interactions", json=late, headers=team.rep.headers)
    assert r1.json()["recorded_late"] is False and r2.json()["recorded_late"] is True
    assert r2.json()["late_by_seconds"] == 24 * 3600 + 60
    listed = await client.get(
        f"/v1/customers/{customer.id}/interactions", params={"recorded_late": "true"}, headers=team.rep.headers
    )
    assert [i["id"] for i in listed.json()["items"]] == [r2.json()["id"]]


async def test_refused_input_is_422_naming_the_field(client, world, team, clock, bodies, expect_problem):
    customer = await world.customer(team.rep)
    others = await world.customer(team.stranger)
    past = clock.now() - timedelta(hours=1)

    async def refused(body, field):
        problem = expect_problem(await client.post("/v1/interactions", json=body, headers=team.rep.headers), 422)
        assert field in [e["field"] for e in problem["errors"]], problem
        return problem

    await refused({**bodies("phone", "no-such-customer", past)}, "customer_id")
    # A customer the rep may not see reads exactly like an unknown one.
    hidden = await refused(bodies("phone", others.id, past), "customer_id")
    assert "may see" in hidden["errors"][0]["reason"]
    await refused({**bodies("phone", customer.id, past), "contact_ids": [others.contact_ids[0]]}, "contact_ids[0]")
    future = clock.now() + timedelta(hours=1)
    await refused(bodies("phone", customer.id, future), "occurred_at")
    await refused({**bodies("phone", customer.id, past), "occurred_at": "2026-01-05T10:00:00"}, "phone.occurred_at")
    no_direction = bodies("phone", customer.id, past)
    del no_direction["direction"]
    await refused(no_direction, "phone.direction")
    await refused({**bodies("phone", customer.id, past), "channel": "fax"}, "body")
    await refused({**bodies("email", customer.id, past), "participants": ["not-an-email"]}, "email.participants[0]")
    await refused({**bodies("note", customer.id, past), "content": "  "}, "note.content")
    await refused({**bodies("phone", customer.id, past), "subject": "x"}, "phone.subject")  # not a phone field


async def test_opportunity_must_be_the_customers_and_visible(client, world, team, clock, bodies, expect_problem):
    customer = await world.customer(team.rep)
    other = await world.customer(team.rep)
    opportunity = await world.opportunity(customer, team.rep)
    elsewhere = await world.opportunity(other, team.rep)
    gone = await world.opportunity(customer, team.rep, hidden=True)
    body = bodies("visit", customer.id, clock.now() - timedelta(hours=2))
    r = await client.post("/v1/interactions", json={**body, "opportunity_id": opportunity}, headers=team.rep.headers)
    assert r.status_code == 201 and r.json()["opportunity_id"] == opportunity
    for bad, reason in ((elsewhere, "another customer"), (gone, "may see"), ("nope", "may see")):
        problem = expect_problem(
            await client.post("/v1/interactions", json={**body, "opportunity_id": bad}, headers=team.rep.headers), 422
        )
        assert problem["errors"][0]["field"] == "opportunity_id" and reason in problem["errors"][0]["reason"]


async def test_customer_states_from_the_read_copy(client, world, team, clock, bodies, expect_problem):
    past = clock.now() - timedelta(hours=1)
    pool = await world.customer(None, in_pool=True)
    r = await client.post("/v1/interactions", json=bodies("phone", pool.id, past), headers=team.rep2.headers)
    assert r.status_code == 201, r.text  # the public pool is open to every rep
    binned = await world.customer(team.rep)
    await world.customer_event(binned, "deleted", status="deleted")
    problem = expect_problem(
        await client.post("/v1/interactions", json=bodies("phone", binned.id, past), headers=team.rep.headers), 422
    )
    assert "recycle bin" in problem["errors"][0]["reason"]


async def test_same_email_synced_twice_is_one_record(client, world, team, clock, bodies, events):
    customer = await world.customer(team.rep)
    message_id = f"<{customer.id}@mail.example.com>"
    body = {**bodies("email", customer.id, clock.now() - timedelta(minutes=5)), "message_id": message_id}
    first = await client.post("/v1/interactions", json=body, headers=team.rep.headers)
    assert first.status_code == 201, first.text
    assert first.json()["message_id"] == message_id.strip("<>")
    again = await client.post(
        "/v1/interactions", json={**body, "message_id": message_id.strip("<>")}, headers=team.rep.headers
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["etag"] == '"1"'

    # Two mail clients syncing another email at the same moment: still one record.
    racing = {**body, "message_id": f"race-{customer.id}@mail.example.com"}
    results = await asyncio.gather(
        *(client.post("/v1/interactions", json=racing, headers=team.rep.headers) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in results}) == 1
    await events.wait_for(type="crm.interaction.logged", subject=results[0].json()["id"])
    logged = [
        e for e in events.matching(type="crm.interaction.logged") if e.event["data"]["customer_id"] == customer.id
    ]
    assert len(logged) == 2


async def test_email_synced_by_someone_who_may_not_see_it_is_409(client, world, team, clock, bodies, expect_problem):
    customer = await world.customer(team.rep)
    theirs = await world.customer(team.stranger)
    body = {**bodies("email", customer.id, clock.now()), "message_id": f"{customer.id}@x.example"}
    assert (await client.post("/v1/interactions", json=body, headers=team.rep.headers)).status_code == 201
    problem = expect_problem(
        await client.post("/v1/interactions", json={**body, "customer_id": theirs.id}, headers=team.stranger.headers),
        409,
    )
    assert "already logged" in problem["detail"] and problem["existing_id"]


async def test_update_with_etags_and_history(client, world, team, clock, log, events, expect_problem):
    customer = await world.customer(team.rep)
    created = await log(team.rep, customer, "phone")
    path = f"/v1/interactions/{created['id']}"
    expect_problem(await client.patch(path, json={"key_points": "x"}, headers=team.rep.headers), 428)
    expect_problem(await client.patch(path, json={"key_points": "x"}, headers=team.rep.match('"7"')), 412)
    wrong = expect_problem(await client.patch(path, json={"minutes": "x"}, headers=team.rep.match('"1"')), 422)
    assert wrong["errors"][0] == {
        "field": "minutes",
        "reason": "a phone interaction has no minutes",
        "location": "body",
    }
    cleared = expect_problem(await client.patch(path, json={"direction": None}, headers=team.rep.match('"1"')), 422)
    assert cleared["errors"][0]["field"] == "direction"
    expect_problem(await client.patch(path, json={"channel": "note"}, headers=team.rep.match('"1"')), 422)

    earlier = clock.now() - timedelta(days=2)
    r = await client.patch(
        path,
        json={"key_points": "客户同意试用", "occurred_at": earlier.isoformat(), "contact_ids": customer.contact_ids},
        headers=team.rep.match('"1"'),
    )
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"' and r.json()["recorded_late"] is True  # now logged two days after
    assert r.json()["contact_ids"] == customer.contact_ids
    same = await client.patch(path, json={"key_points": "客户同意试用"}, headers=team.rep.match('"2"'))
    assert same.status_code == 200 and same.headers["etag"] == '"2"'  # nothing changed: no version, no event

    [updated] = await events.wait_for(type="crm.interaction.updated", subject=created["id"])
    fields = {c["field"] for c in updated.event["data"]["changes"]}
    assert fields == {"key_points", "occurred_at", "contact_ids"} and updated.event["aggregateversion"] == 2
    history = (await client.get(f"{path}/history", headers=team.rep.headers)).json()
    assert [h["type"] for h in history] == ["crm.interaction.logged", "crm.interaction.updated"]
    assert (
        history[1]["actor"] == team.rep.id
        and {"field": "key_points", "old": "预算已批", "new": "客户同意试用"} in (history[1]["changes"])
    )


async def test_who_sees_and_who_changes(client, world, team, log, expect_problem):
    customer = await world.customer(team.rep)
    by_manager = await log(team.manager, customer, "visit")
    path = f"/v1/interactions/{by_manager['id']}"
    # The customer's owner reads it (their customer) but may not change another's record.
    assert (await client.get(path, headers=team.rep.headers)).status_code == 200
    expect_problem(await client.patch(path, json={"minutes": "x"}, headers=team.rep.match('"1"')), 403)
    expect_problem(await client.delete(path, headers=team.rep.headers), 403)
    # Another rep, a manager elsewhere: 404, the record does not exist for them.
    for outsider in (team.rep2, team.outsider):
        expect_problem(await client.get(path, headers=outsider.headers), 404)
    assert (await client.get(path, headers=team.admin.headers)).status_code == 200
    # The author's manager may change the author's record.
    by_rep = await log(team.rep, customer, "note")
    r = await client.patch(
        f"/v1/interactions/{by_rep['id']}", json={"summary": "经理补充"}, headers=team.manager.match('"1"')
    )
    assert r.status_code == 200 and r.json()["updated_by"] == team.manager.id
    expect_problem(
        await client.patch(
            f"/v1/interactions/{by_rep['id']}", json={"summary": "x"}, headers=team.outsider.match('"2"')
        ),
        404,
    )


async def test_delete_hides_and_publishes(client, world, team, log, events, expect_problem):
    customer = await world.customer(team.rep)
    created = await log(team.rep, customer, "note")
    path = f"/v1/interactions/{created['id']}"
    expect_problem(await client.delete(path, headers=team.rep.match('"5"')), 412)
    r = await client.delete(path, params={"reason": "录错客户"}, headers=team.rep.match('"1"'))
    assert r.status_code == 204 and r.headers["etag"] == '"2"'
    expect_problem(await client.get(path, headers=team.rep.headers), 404)
    expect_problem(await client.delete(path, headers=team.rep.headers), 404)
    [deleted] = await events.wait_for(type="crm.interaction.deleted", subject=created["id"])
    assert deleted.event["data"]["reason"] == "录错客户"
    assert deleted.event["data"]["interaction"]["status"] == "deleted"
    listed = await client.get(f"/v1/customers/{customer.id}/interactions", headers=team.rep.headers)
    assert listed.json()["items"] == []


async def test_timezone_offsets_are_kept_as_instants(client, world, team, clock, bodies):
    customer = await world.customer(team.rep)
    at = (clock.now() - timedelta(hours=2)).astimezone(timezone(timedelta(hours=8)))
    r = await client.post("/v1/interactions", json=bodies("phone", customer.id, at), headers=team.rep.headers)
    assert datetime.fromisoformat(r.json()["occurred_at"]) == at.replace(microsecond=at.microsecond // 1000 * 1000)
