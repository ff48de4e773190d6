"""Interaction lists served by one indexed query per visibility alternative: cursor walks over
several pages, equal sort keys across pages, filters combined with visibility."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


async def walk(client: Any, path: str, headers: dict[str, str], **params: Any) -> list[str]:
    """The ids of every item of a list, page by page, following next_cursor."""
    ids: list[str] = []
    cursor = None
    for _ in range(50):
        r = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert r.status_code == 200, r.text
        ids += [i["id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return ids
    raise AssertionError("the cursor never ended")


async def test_cross_customer_pages_merge_authored_and_owned_with_equal_times(client, world, team, log, clock):
    at = {"occurred_at": (clock.now() - timedelta(hours=3)).isoformat()}  # one time for all: ids break ties
    given_away = await world.customer(team.rep)
    authored_only = [
        (await log(team.rep, given_away, "phone", **at))["id"],
        (await log(team.rep, given_away, "note", **at))["id"],
    ]
    # The rep no longer owns it: only "I wrote it" shows those two to the rep now.
    await world.customer_event(given_away, "owner_changed", team.rep2.id, team.rep2.dept, owner_id=team.rep2.id)
    not_mine = (await log(team.rep2, given_away, "phone", **at))["id"]
    owned = await world.customer(team.rep)
    on_owned = [
        (await log(team.manager, owned, "phone", **at))["id"],
        (await log(team.manager, owned, "visit", **at))["id"],
        (await log(team.admin, owned, "note", **at))["id"],
    ]
    both = (await log(team.rep, owned, "phone", **at))["id"]  # matches both alternatives: listed once

    rep_sees = sorted([*authored_only, *on_owned, both])
    for limit in (1, 2, 3):
        assert await walk(client, "/v1/interactions", team.rep.headers, limit=limit) == rep_sees
    assert await walk(client, "/v1/interactions", team.rep.headers, limit=2, sort="occurred_at") == rep_sees
    assert not_mine not in rep_sees

    # A filter combined with the alternatives, over several pages.
    phones = sorted([authored_only[0], on_owned[0], both])
    assert await walk(client, "/v1/interactions", team.rep.headers, limit=1, channel="phone") == phones
    assert await walk(client, "/v1/interactions", team.rep.headers, limit=1, author_id=team.manager.id) == sorted(
        on_owned[:2]
    )

    # The manager: their own and their subtree's authors (not the admin's record on the rep's customer).
    manager_sees = sorted([*authored_only, not_mine, *on_owned[:2], both])
    assert await walk(client, "/v1/interactions", team.manager.headers, limit=2) == manager_sees
    assert await walk(client, "/v1/interactions", team.outsider.headers, limit=2, author_id=team.rep.id) == []


async def test_a_customers_history_pages_through_equal_times_for_an_author_only(client, world, team, log, clock):
    at = {"occurred_at": (clock.now() - timedelta(hours=2)).isoformat()}
    customer = await world.customer(team.rep)
    rep_wrote = [(await log(team.rep, customer, "phone", **at))["id"] for _ in range(3)]
    others = [(await log(team.manager, customer, "note", **at))["id"] for _ in range(2)]
    path = f"/v1/customers/{customer.id}/interactions"
    assert await walk(client, path, team.rep.headers, limit=2) == sorted([*rep_wrote, *others])
    # Once the customer is someone else's, the former owner still pages through what they wrote.
    await world.customer_event(customer, "owner_changed", team.rep2.id, team.rep2.dept, owner_id=team.rep2.id)
    assert await walk(client, path, team.rep.headers, limit=2) == sorted(rep_wrote)
    # Nothing of theirs matches and the customer is not theirs: as if it did not exist (unchanged rule).
    r = await client.get(path, params={"channel": "note"}, headers=team.rep.headers)
    assert r.status_code == 404, r.text
    assert await walk(client, path, team.rep2.headers, limit=2, channel="note") == sorted(others)
