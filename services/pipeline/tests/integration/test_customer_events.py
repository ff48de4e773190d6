"""Customers events on crm.customers.v1 feed the read copy; opportunities follow merges, deletes and restores."""

from __future__ import annotations

from crm_platform.testing.fixtures import eventually


async def test_customer_events_make_opportunities_possible(client, team, feed, arrives, pipeline_db, expect_problem):
    customer = await feed.created(
        owner_id=team.rep.id, department_path=team.rep.dept, name="上海示例贸易有限公司", contacts=["王经理"]
    )
    copy = await arrives(customer)
    assert (copy["name"], copy["owner_id"], copy["department_path"], copy["status"]) == (
        "上海示例贸易有限公司",
        team.rep.id,
        team.rep.dept,
        "active",
    )
    assert [c["name"] for c in copy["contacts"]] == ["王经理"] and copy["contacts_complete"]
    added = await feed.contact_added(customer, "赵工")
    await arrives(customer)
    r = await client.post(
        "/v1/opportunities",
        json={"customer_id": customer.id, "name": "x", "contact_ids": [added.contact_id]},
        headers=team.rep.headers,
    )
    assert r.status_code == 201, r.text
    await feed.contact_removed(customer, added.contact_id)
    await arrives(customer)
    r = await client.post(
        "/v1/opportunities",
        json={"customer_id": customer.id, "name": "x", "contact_ids": [added.contact_id]},
        headers=team.rep.headers,
    )
    assert expect_problem(r, 422)["errors"][0]["field"] == "contact_ids[0]"
    # Given to another rep in the customers service: no longer ours to sell to.
    await feed.owner_changed(customer, team.rep2.id, team.rep2.dept)
    await arrives(customer, owner_id=team.rep2.id)
    r = await client.post("/v1/opportunities", json={"customer_id": customer.id, "name": "x"}, headers=team.rep.headers)
    expect_problem(r, 422)
    assert (
        await client.post(
            "/v1/opportunities", json={"customer_id": customer.id, "name": "x"}, headers=team.rep2.headers
        )
    ).status_code == 201


async def test_deleted_customers_hide_their_opportunities_until_restored(
    client, team, feed, arrives, customer_of, new_opportunity, pipeline_events, expect_problem
):
    customer = await customer_of(team.rep)
    opps = [await new_opportunity(team.rep, customer, name=f"删除测试-{i}") for i in range(2)]
    won = await new_opportunity(
        team.rep,
        customer,
        amount="1.00",
        quotation_amount="1.00",
        stage_id="negotiation",
        documents=[{"kind": "requirements", "name": "r", "url": "https://x.example/r"}],
    )
    await client.post(f"/v1/opportunities/{won['id']}/win", json={"reason": "ok"}, headers=team.rep.headers)
    ids = {o["id"] for o in opps} | {won["id"]}

    async def listed() -> set[str]:
        page = (
            await client.get("/v1/opportunities", params={"customer_id": customer.id}, headers=team.manager.headers)
        ).json()
        return {o["id"] for o in page["items"]}

    assert await listed() == ids
    await feed.deleted(customer)
    await eventually(lambda: _all_hidden(client, team, ids), timeout=30, message="hidden")
    assert await listed() == set()
    expect_problem(await client.get(f"/v1/opportunities/{opps[0]['id']}", headers=team.rep.headers), 404)
    expect_problem(
        await client.post(
            f"/v1/opportunities/{opps[0]['id']}/stage", json={"stage_id": "needs_confirmed"}, headers=team.rep.headers
        ),
        404,
    )
    hidden_events = await pipeline_events.wait_for(type="crm.opportunity.updated", subject=opps[0]["id"])
    data = hidden_events[-1].event["data"]
    assert data["changes"] == [{"field": "hidden", "old": False, "new": True}] and data["reason"] == "customer deleted"
    assert data["opportunity"]["hidden"] is True
    await feed.restored(customer)
    await eventually(lambda: _listed_again(client, team, customer.id, ids), timeout=30, message="shown again")
    got = (await client.get(f"/v1/opportunities/{won['id']}", headers=team.rep.headers)).json()
    assert got["status"] == "won"  # nothing lost while hidden


async def _all_hidden(client, team, ids) -> bool:
    codes = [(await client.get(f"/v1/opportunities/{i}", headers=team.manager.headers)).status_code for i in ids]
    return all(c == 404 for c in codes)


async def _listed_again(client, team, customer_id, ids) -> bool:
    page = (
        await client.get("/v1/opportunities", params={"customer_id": customer_id}, headers=team.manager.headers)
    ).json()
    return {o["id"] for o in page["items"]} == ids


async def test_purged_customers_keep_their_opportunities_hidden(
    client, team, feed, arrives, customer_of, new_opportunity, pipeline_db
):
    customer = await customer_of(team.rep)
    opp = await new_opportunity(team.rep, customer)
    await feed.deleted(customer)
    await feed.purged(customer)
    copy = await arrives(customer, status="purged")
    assert "name" not in copy and copy["contacts"] == []  # the personal data is gone from the copy too
    stored = await eventually(
        lambda: pipeline_db["opportunities"].find_one({"_id": opp["id"], "hidden": True}), timeout=30
    )
    assert stored["customer_id"] == customer.id  # kept, not lost


async def test_a_merge_moves_opportunities_to_the_survivor_once(
    client, team, feed, arrives, customer_of, new_opportunity, pipeline_events, pipeline_db
):
    survivor = await customer_of(team.rep)
    duplicate = await customer_of(team.rep)
    opps = [await new_opportunity(team.rep, duplicate, contact_ids=duplicate.contact_ids[:1]) for _ in range(2)]
    away, merged = await feed.merged(survivor, duplicate)
    moved = await eventually(
        lambda: _count(pipeline_db, {"customer_id": survivor.id, "_id": {"$in": [o["id"] for o in opps]}}, 2),
        timeout=30,
        message="moved",
    )
    assert moved
    for opp in opps:
        [event] = await pipeline_events.wait_for(type="crm.opportunity.customer_changed", subject=opp["id"])
        data = event.event["data"]
        assert (data["previous_customer_id"], data["customer_id"], data["reason"]) == (
            duplicate.id,
            survivor.id,
            "merged",
        )
        assert data["opportunity"]["customer_id"] == survivor.id
        got = (await client.get(f"/v1/opportunities/{opp['id']}", headers=team.rep.headers)).json()
        assert (
            got["customer_id"] == survivor.id and got["contact_ids"] == duplicate.contact_ids[:1]
        )  # moved contacts keep their ids
        assert got["version"] == 2
    copy = await arrives(survivor)
    assert set(duplicate.contact_ids) <= {c["contact_id"] for c in copy["contacts"]}
    # Redelivery of both events (a consumer restart, a rebalance) changes nothing.
    await feed.publish(away)
    await feed.publish(merged)
    # A later event under each key: once the copy has it, the repeats before it were handled
    # (one key, one partition, in order).
    await feed.updated(survivor, tier="A")
    await feed.updated(duplicate, tier="B")
    await arrives(survivor, tier="A")
    await arrives(duplicate, tier="B")
    for opp in opps:
        doc = await pipeline_db["opportunities"].find_one({"_id": opp["id"]})
        assert doc["version"] == 2
        assert len(pipeline_events.matching(type="crm.opportunity.customer_changed", subject=opp["id"])) == 1
    # New opportunities for the merged-away customer are refused, naming the survivor.
    r = await client.post(
        "/v1/opportunities", json={"customer_id": duplicate.id, "name": "x"}, headers=team.rep.headers
    )
    assert survivor.id in r.json()["errors"][0]["reason"]


async def _count(db, query, expected) -> bool:
    return await db["opportunities"].count_documents(query) == expected


async def test_stale_redelivered_delete_does_not_hide_a_restored_customer(
    client, team, feed, arrives, customer_of, new_opportunity, pipeline_db
):
    customer = await customer_of(team.rep)
    opp = await new_opportunity(team.rep, customer)
    deleted = await feed.deleted(customer)
    await feed.restored(customer)
    await arrives(customer, status="active")
    await eventually(
        lambda: _count(pipeline_db, {"_id": opp["id"], "hidden": False, "version": 3}, 1),
        timeout=30,
        message="hidden then shown",
    )
    await feed.publish(deleted)  # the old delete again
    await feed.updated(customer, tier="A")  # after the repeat, under the same key: handled once the copy has it
    await arrives(customer, tier="A")
    doc = await pipeline_db["opportunities"].find_one({"_id": opp["id"]})
    assert doc["hidden"] is False and doc["version"] == 3
