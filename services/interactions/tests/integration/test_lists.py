"""A customer's full history in time order (what a rep reads before a visit), and lists across customers."""

from __future__ import annotations

from datetime import timedelta

import pytest


@pytest.fixture
async def history(client, world, team, clock, bodies):
    """A customer with six interactions over six days, by the owner and by the manager."""
    customer = await world.customer(team.rep)
    opportunity = await world.opportunity(customer, team.rep)
    plan = [
        ("phone", team.rep, 6, [customer.contact_ids[0]], opportunity),
        ("email", team.rep, 5, [customer.contact_ids[1]], None),
        ("visit", team.manager, 4, customer.contact_ids, opportunity),
        ("note", team.rep, 3, [], None),
        ("social", team.rep, 2, [customer.contact_ids[0]], None),
        ("meeting", team.manager, 1, [], opportunity),
    ]
    made = []
    for channel, author, days_ago, contacts, opp in plan:
        body = {
            **bodies(channel, customer.id, clock.now() - timedelta(days=days_ago)),
            "contact_ids": contacts,
            "opportunity_id": opp,
        }
        r = await client.post("/v1/interactions", json=body, headers=author.headers)
        assert r.status_code == 201, r.text
        made.append(r.json())
    return customer, opportunity, made


async def listed(client, path, user, **params):
    r = await client.get(path, params=params, headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_time_order_filters_and_cursor(client, team, clock, history):
    customer, opportunity, made = history
    path = f"/v1/customers/{customer.id}/interactions"
    newest_first = [m["id"] for m in reversed(made)]
    assert [i["id"] for i in (await listed(client, path, team.rep))["items"]] == newest_first
    oldest_first = await listed(client, path, team.rep, sort="occurred_at")
    assert [i["id"] for i in oldest_first["items"]] == newest_first[::-1]

    async def ids(**params):
        return [i["id"] for i in (await listed(client, path, team.rep, **params))["items"]]

    assert await ids(channel="phone,visit") == [made[2]["id"], made[0]["id"]]
    assert await ids(opportunity_id=opportunity) == [made[5]["id"], made[2]["id"], made[0]["id"]]
    assert await ids(contact_id=customer.contact_ids[1]) == [made[2]["id"], made[1]["id"]]
    assert await ids(author_id=team.manager.id) == [made[5]["id"], made[2]["id"]]
    window = {
        "from": (clock.now() - timedelta(days=4, hours=1)).isoformat(),
        "to": (clock.now() - timedelta(days=1, hours=12)).isoformat(),
    }
    assert await ids(**window) == [made[4]["id"], made[3]["id"], made[2]["id"]]

    seen, cursor = [], None
    while True:
        page = await listed(client, path, team.rep, limit=4, **({"cursor": cursor} if cursor else {}))
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == newest_first


async def test_bad_list_parameters_are_422(client, team, history, expect_problem):
    customer, _, _ = history
    path = f"/v1/customers/{customer.id}/interactions"
    for params, field in (
        ({"channel": "fax"}, "channel"),
        ({"sort": "author"}, "sort"),
        ({"cursor": "garbage"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"bogus": 1}, "bogus"),
    ):
        problem = expect_problem(await client.get(path, params=params, headers=team.rep.headers), 422)
        assert problem["errors"][0]["field"] == field, (params, problem)
        assert problem["errors"][0]["location"] == "query"


async def test_who_reads_a_customers_history(client, world, team, history, bodies, clock, expect_problem):
    customer, _, made = history
    path = f"/v1/customers/{customer.id}/interactions"
    everything = {m["id"] for m in made}
    for reader in (team.rep, team.manager, team.admin):
        assert {i["id"] for i in (await listed(client, path, reader))["items"]} == everything
    # A manager of another department, a rep of another: nothing of this customer exists for them.
    expect_problem(await client.get(path, headers=team.outsider.headers), 404)
    expect_problem(await client.get(path, headers=team.rep2.headers), 404)
    expect_problem(await client.get("/v1/customers/no-such/interactions", headers=team.admin.headers), 404)

    # After the customer is released to the pool, a rep who logged a call there sees their own only.
    await world.customer_event(customer, "released", in_pool=True)
    r = await client.post("/v1/interactions", json=bodies("phone", customer.id, clock.now()), headers=team.rep2.headers)
    assert r.status_code == 201, r.text
    assert [i["id"] for i in (await listed(client, path, team.rep2))["items"]] == [r.json()["id"]]
    # The manager still sees their team's work on it (authored in their department).
    assert {i["id"] for i in (await listed(client, path, team.manager))["items"]} == everything | {r.json()["id"]}


async def test_merged_customer_history_points_at_the_survivor(client, world, team, expect_problem):
    survivor = await world.customer(team.rep)
    duplicate = await world.customer(team.rep)
    await world.feed.merged(survivor, duplicate)
    await world.arrived("customers", duplicate.id, duplicate.version, status="merged")
    problem = expect_problem(
        await client.get(f"/v1/customers/{duplicate.id}/interactions", headers=team.rep.headers), 404
    )
    assert problem["merged_into"] == survivor.id


async def test_list_across_customers(client, world, team, log, history):
    customer, _, made = history
    mine = await listed(client, "/v1/interactions", team.rep, customer_id=customer.id)
    # The owner sees the manager's interactions on their customer too.
    assert {i["id"] for i in mine["items"]} == {m["id"] for m in made}
    other = await world.customer(team.rep2)
    theirs = await log(team.rep2, other, "phone")
    rep_view = {i["id"] for i in (await listed(client, "/v1/interactions", team.rep, limit=500))["items"]}
    assert theirs["id"] not in rep_view
    manager_view = await listed(client, "/v1/interactions", team.manager, author_id=team.rep2.id)
    assert [i["id"] for i in manager_view["items"]] == [theirs["id"]]
    assert (await listed(client, "/v1/interactions", team.outsider, author_id=team.rep2.id))["items"] == []
    admin_view = await listed(client, "/v1/interactions", team.admin, author_id=team.rep2.id)
    assert [i["id"] for i in admin_view["items"]] == [theirs["id"]]
