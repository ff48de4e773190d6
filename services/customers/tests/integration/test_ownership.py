"""Who sees what (rep / manager subtree / admin), the public pool (公海), the per-rep limit and assignment."""

from __future__ import annotations

import asyncio
from typing import Any

from crm_platform.testing.fixtures import auth, unique

PROBLEM = "application/problem+json"


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.roles = roles or ["rep"]
        self.headers = auth(self.id, self.roles, department_path=dept)


async def create(client: Any, user: User, **fields: Any) -> dict[str, Any]:
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": unique("Own"), **fields}, headers=user.headers
    )
    assert r.status_code == 201, r.text
    return r.json()


async def listed_ids(client: Any, user: User, **params: Any) -> set[str]:
    r = await client.get("/v1/customers", params={"limit": 500, **params}, headers=user.headers)
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()["items"]}


async def test_visibility_rep_manager_admin(client):
    root = f"/{unique('x')}"
    rep_a, rep_b = User(f"{root}/y"), User(f"{root}/y")
    rep_z = User(f"/{unique('z')}")
    manager_x = User(root, ["manager"], "mgr")
    manager_y = User(f"{root}/y", ["manager"], "mgr")
    manager_other = User(f"{root}-other", ["manager"], "mgr")  # a sibling whose path shares the prefix text
    admin = User("/", ["admin"], "admin")

    a = await create(client, rep_a)
    b = await create(client, rep_b)
    z = await create(client, rep_z)

    async def status(user: User, customer: dict[str, Any]) -> int:
        return (await client.get(f"/v1/customers/{customer['id']}", headers=user.headers)).status_code

    assert await status(rep_a, a) == 200
    assert await status(rep_a, b) == 404  # rep A cannot see rep B's customer, even in the same team
    assert await status(rep_b, a) == 404
    assert await status(manager_x, a) == 200 and await status(manager_x, b) == 200
    assert await status(manager_y, a) == 200
    assert await status(manager_x, z) == 404
    assert await status(manager_other, a) == 404
    assert await status(admin, z) == 200 and await status(admin, a) == 200
    missing = await client.get(f"/v1/customers/{unique('nope')}", headers=admin.headers)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)

    # Lists apply the same rule.
    name_filter = {"q": "Own"}
    assert {a["id"]} <= await listed_ids(client, rep_a, **name_filter)
    assert not {b["id"], z["id"]} & await listed_ids(client, rep_a, owner_id=rep_b.id)
    assert {a["id"], b["id"]} <= await listed_ids(client, manager_x, q="own")
    assert z["id"] not in await listed_ids(client, manager_x, owner_id=rep_z.id)
    assert await listed_ids(client, admin, owner_id=rep_z.id) == {z["id"]}

    # An invisible customer cannot be changed either: 404, not 403.
    r = await client.patch(f"/v1/customers/{b['id']}", json={"tier": "A"}, headers={**rep_a.headers, "If-Match": '"1"'})
    assert r.status_code == 404
    # A manager edits in their subtree.
    r = await client.patch(
        f"/v1/customers/{b['id']}", json={"tier": "A"}, headers={**manager_x.headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200


async def test_release_and_claim(client, customer_events, customers_db):
    dept = f"/{unique('d')}"
    owner, other, third = User(dept), User(f"/{unique('d')}"), User(f"/{unique('d')}")
    c = await create(client, owner)

    no_reason = await client.post(f"/v1/customers/{c['id']}/release", json={}, headers=owner.headers)
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
    empty_reason = await client.post(f"/v1/customers/{c['id']}/release", json={"reason": ""}, headers=owner.headers)
    assert empty_reason.status_code == 422
    not_mine = await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "x"}, headers=other.headers)
    assert not_mine.status_code == 404

    r = await client.post(
        f"/v1/customers/{c['id']}/release", json={"reason": "无预算，半年后再联系"}, headers=owner.headers
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["in_pool"] is True and body["owner_id"] is None and body["previous_owner_id"] == owner.id
    assert body["release_reason"] == "无预算，半年后再联系" and body["pool_since"] is not None
    [released] = await customer_events.wait_for(type="crm.customer.released", subject=c["id"])
    assert released.event["data"]["previous_owner_id"] == owner.id
    assert released.event["data"]["reason"] == "无预算，半年后再联系"
    assert released.event["data"]["customer"]["in_pool"] is True and released.event["aggregateversion"] == 2

    again = await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "x"}, headers=owner.headers)
    assert again.status_code == 409

    # Any rep sees it now (by id and in the pool list), but must claim it before editing.
    assert (await client.get(f"/v1/customers/{c['id']}", headers=other.headers)).status_code == 200
    assert c["id"] in await listed_ids(client, other, in_pool="true", q=c["name"])
    edit = await client.patch(
        f"/v1/customers/{c['id']}", json={"tier": "A"}, headers={**other.headers, "If-Match": '"2"'}
    )
    assert edit.status_code == 403

    claimed = await client.post(f"/v1/customers/{c['id']}/claim", headers=other.headers)
    assert claimed.status_code == 200, claimed.text
    body = claimed.json()
    assert body["owner_id"] == other.id and body["in_pool"] is False and body["department_path"] == other.dept
    [event] = await customer_events.wait_for(type="crm.customer.claimed", subject=c["id"])
    assert event.event["data"]["owner_id"] == other.id and event.event["actor"] == other.id

    # Gone from the pool: the previous owner and a third rep no longer see it.
    assert (await client.get(f"/v1/customers/{c['id']}", headers=owner.headers)).status_code == 404
    assert (await client.get(f"/v1/customers/{c['id']}", headers=third.headers)).status_code == 404
    mine = await client.post(f"/v1/customers/{c['id']}/claim", headers=other.headers)
    assert mine.status_code == 409
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["owner_id"] == other.id and stored["in_pool"] is False and stored["version"] == 3


async def test_reps_claiming_at_once_exactly_one_wins_and_the_others_hear_who(client, customer_events):
    dept = f"/{unique('d')}"
    owner = User(dept)
    for _ in range(3):  # a few rounds: the race must hold every time
        c = await create(client, owner)
        r = await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "pool"}, headers=owner.headers)
        assert r.status_code == 200
        # 20 reps of other departments: a loser whose claim arrives after the winner's write can
        # no longer see the customer, and must still be told who won (409), never 404.
        reps = [User(f"/{unique('d')}") for _ in range(20)]
        results = await asyncio.gather(
            *(client.post(f"/v1/customers/{c['id']}/claim", headers=u.headers) for u in reps)
        )
        assert sorted(r.status_code for r in results) == [200] + [409] * 19, [r.text for r in results]
        winner = next(u for u, r in zip(reps, results, strict=True) if r.status_code == 200)
        for loser in (r for r in results if r.status_code == 409):
            assert loser.headers["content-type"].startswith(PROBLEM)
            assert loser.json()["owner_id"] == winner.id
            assert winner.id in loser.json()["detail"]
        events = await customer_events.wait_for(type="crm.customer.claimed", subject=c["id"])
        assert len(events) == 1 and events[0].event["data"]["owner_id"] == winner.id


async def test_per_rep_limit_on_create_and_claim(client, customers_settings, customers_db):
    limit = customers_settings.max_customers_per_rep
    assert limit == 25
    dept = f"/{unique('d')}"
    rep = User(dept)
    results = await asyncio.gather(
        *(
            client.post("/v1/customers", json={"kind": "company", "name": unique("Limit")}, headers=rep.headers)
            for _ in range(limit)
        )
    )
    assert [r.status_code for r in results] == [201] * limit
    over = await client.post("/v1/customers", json={"kind": "company", "name": unique("Limit")}, headers=rep.headers)
    assert over.status_code == 409, over.text
    assert over.headers["content-type"].startswith(PROBLEM)
    body = over.json()
    assert body["held"] == limit and body["limit"] == limit and body["owner_id"] == rep.id
    assert await customers_db["customers"].count_documents({"owner_id": rep.id}) == limit
    # A full rep entering a customer that exists already hears that it exists, not about the limit.
    taken = await client.post("/v1/customers", json={"kind": "company", "name": results[2].json()["name"]},
                              headers=rep.headers)  # fmt: skip
    assert taken.status_code == 409 and taken.json()["type"].endswith("duplicate"), taken.text
    assert taken.json()["existing"][0]["customer_id"] == results[2].json()["id"]

    # Claiming from the pool counts too.
    other = User(f"/{unique('d')}")
    pooled = await create(client, other)
    assert (
        await client.post(f"/v1/customers/{pooled['id']}/release", json={"reason": "r"}, headers=other.headers)
    ).status_code == 200
    claim = await client.post(f"/v1/customers/{pooled['id']}/claim", headers=rep.headers)
    assert claim.status_code == 409 and claim.json()["held"] == limit
    assert (await client.get(f"/v1/customers/{pooled['id']}", headers=rep.headers)).json()["in_pool"] is True

    # ... and assigning to a full rep too.
    manager = User(dept, ["manager"], "mgr")
    mine = await create(client, User(dept))
    assign = await client.post(
        f"/v1/customers/{mine['id']}/assign",
        json={"owner_id": rep.id, "department_path": dept},
        headers=manager.headers,
    )
    assert assign.status_code == 409 and assign.json()["limit"] == limit

    # ... and restoring one of their customers from the recycle bin.
    binned = results[1].json()
    assert (await client.delete(f"/v1/customers/{binned['id']}", headers=manager.headers)).status_code in (200, 204)
    refill = await create(client, rep)
    restore = await client.post(f"/v1/customers/{binned['id']}/restore", headers=manager.headers)
    assert restore.status_code == 409 and restore.json()["held"] == limit, restore.text
    assert (await client.get(f"/v1/customers/{binned['id']}", headers=manager.headers)).json()["status"] == "deleted"
    assert (await client.delete(f"/v1/customers/{refill['id']}", headers=manager.headers)).status_code in (200, 204)
    restore = await client.post(f"/v1/customers/{binned['id']}/restore", headers=manager.headers)
    assert restore.status_code == 200 and restore.json()["status"] == "active"

    # Releasing one makes room again.
    first = results[0].json()
    assert (
        await client.post(f"/v1/customers/{first['id']}/release", json={"reason": "room"}, headers=rep.headers)
    ).status_code == 200
    assert (await client.post(f"/v1/customers/{pooled['id']}/claim", headers=rep.headers)).status_code == 200


async def test_per_rep_limit_holds_under_concurrent_creates(client, customers_settings, customers_db):
    limit = customers_settings.max_customers_per_rep
    rep = User(f"/{unique('d')}")
    results = await asyncio.gather(
        *(
            client.post("/v1/customers", json={"kind": "company", "name": unique("Burst")}, headers=rep.headers)
            for _ in range(limit + 5)
        )
    )
    held = await customers_db["customers"].count_documents({"owner_id": rep.id, "status": "active"})
    assert sum(r.status_code == 201 for r in results) == held
    assert held <= limit, f"{held} customers held, limit {limit}"


async def test_assign_within_and_outside_the_managers_subtree(client, customer_events):
    root = f"/{unique('x')}"
    rep = User(f"{root}/east")
    target = User(f"{root}/west")
    manager = User(root, ["manager"], "mgr")
    c = await create(client, rep)

    by_rep = await client.post(
        f"/v1/customers/{c['id']}/assign",
        json={"owner_id": target.id, "department_path": target.dept},
        headers=rep.headers,
    )
    assert by_rep.status_code == 403 and by_rep.headers["content-type"].startswith(PROBLEM)

    outside = await client.post(
        f"/v1/customers/{c['id']}/assign",
        json={"owner_id": unique("far"), "department_path": f"/{unique('z')}"},
        headers=manager.headers,
    )
    assert outside.status_code == 403

    # A manager of another subtree cannot take it either (it is not theirs to give).
    foreign = User(f"/{unique('z')}", ["manager"], "mgr")
    stolen = await client.post(
        f"/v1/customers/{c['id']}/assign",
        json={"owner_id": foreign.id, "department_path": foreign.dept},
        headers=foreign.headers,
    )
    assert stolen.status_code == 404

    r = await client.post(
        f"/v1/customers/{c['id']}/assign",
        json={"owner_id": target.id, "department_path": target.dept, "reason": "territory change"},
        headers={**manager.headers, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["owner_id"] == target.id and r.json()["department_path"] == target.dept
    assert r.json()["previous_owner_id"] == rep.id
    [event] = await customer_events.wait_for(type="crm.customer.owner_changed", subject=c["id"])
    data = event.event["data"]
    assert (data["previous_owner_id"], data["owner_id"], data["reason"]) == (rep.id, target.id, "territory change")
    assert event.event["actor"] == manager.id

    assert (await client.get(f"/v1/customers/{c['id']}", headers=target.headers)).status_code == 200
    assert (await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)).status_code == 404

    # Assigning to the current owner changes nothing.
    same = await client.post(
        f"/v1/customers/{c['id']}/assign",
        json={"owner_id": target.id, "department_path": target.dept},
        headers=manager.headers,
    )
    assert same.status_code == 200 and same.json()["version"] == 2

    # Admins assign anywhere.
    admin = User("/", ["admin"], "admin")
    far = User(f"/{unique('far')}")
    r = await client.post(
        f"/v1/customers/{c['id']}/assign", json={"owner_id": far.id, "department_path": far.dept}, headers=admin.headers
    )
    assert r.status_code == 200 and r.json()["owner_id"] == far.id
    await customer_events.wait_for(type="crm.customer.owner_changed", subject=c["id"], count=2)


async def test_manager_assigns_from_the_pool(client, customer_events):
    root = f"/{unique('x')}"
    rep = User(f"{root}/a")
    manager = User(root, ["manager"], "mgr")
    c = await create(client, rep)
    assert (
        await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "r"}, headers=rep.headers)
    ).status_code == 200
    target = User(f"{root}/b")
    r = await client.post(
        f"/v1/customers/{c['id']}/assign",
        json={"owner_id": target.id, "department_path": target.dept},
        headers=manager.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["in_pool"] is False and r.json()["owner_id"] == target.id
    [event] = await customer_events.wait_for(type="crm.customer.owner_changed", subject=c["id"])
    assert event.event["data"]["previous_owner_id"] is None


async def publish_user(producer: Any, user_id: str, department_path: str, status: str = "active", version: int = 1):
    from datetime import UTC, datetime

    from crm_platform.contracts import directory
    from crm_platform.events import to_kafka

    now = datetime.now(UTC)
    snapshot = directory.UserSnapshot(
        user_id=user_id,
        email=f"{user_id}@example.com",
        name=user_id,
        roles=["rep"],
        department_id=department_path.rsplit("/", 1)[-1],
        department_path=department_path,
        status=status,
        created_at=now,
        updated_at=now,
    )
    if status == "active":
        envelope = directory.USER_CREATED.build(
            source="/crm/directory",
            subject=user_id,
            data=directory.UserCreated(user=snapshot),
            aggregate_version=version,
            time=now,
            actor="admin",
        )
    else:
        envelope = directory.USER_DEACTIVATED.build(
            source="/crm/directory",
            subject=user_id,
            data=directory.UserDeactivated(user=snapshot),
            aggregate_version=version,
            time=now,
            actor="admin",
        )
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(directory.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])


async def test_assigning_takes_the_new_owners_department_from_the_directory(client, customers_app, producer):
    root = f"/{unique('x')}"
    rep = User(f"{root}/east")
    manager = User(root, ["manager"], "mgr")
    target_id, leaver_id = unique("west-rep"), unique("leaver")
    await publish_user(producer, target_id, f"{root}/west")
    await publish_user(producer, leaver_id, f"{root}/west")
    await publish_user(producer, leaver_id, f"{root}/west", status="deactivated", version=2)
    users = customers_app.state.customers.directory

    async def known() -> bool:
        leaver = await users.user(leaver_id)
        return await users.user(target_id) is not None and leaver is not None and leaver["status"] != "active"

    from crm_platform.testing.fixtures import eventually

    await eventually(known, timeout=30, message="directory copy")
    c = await create(client, rep)
    url = f"/v1/customers/{c['id']}/assign"

    # A known user: the department comes from the directory; another one given is refused.
    wrong = await client.post(url, json={"owner_id": target_id, "department_path": root}, headers=manager.headers)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "department_path"
    assert f"{root}/west" in wrong.json()["errors"][0]["reason"]
    gone = await client.post(url, json={"owner_id": leaver_id}, headers=manager.headers)
    assert gone.status_code == 422 and gone.json()["errors"][0]["field"] == "owner_id"
    unknown = await client.post(url, json={"owner_id": unique("nobody")}, headers=manager.headers)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "department_path"

    r = await client.post(url, json={"owner_id": target_id}, headers=manager.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["owner_id"], r.json()["department_path"]) == (target_id, f"{root}/west")
    assert r.json()["version"] == 2  # the refused attempts wrote nothing
