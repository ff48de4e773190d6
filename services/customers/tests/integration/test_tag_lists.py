"""Tag-filtered lists, answered from the tag memberships (``customer_tags``): every scope, all-of
and any-of, and every change that moves a customer in or out of a tag's list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm_customers.adapters import tag_index
from crm_customers.adapters.tag_index import ORPHAN_AFTER_MS, memberships_of
from crm_customers.domain import rules
from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings
from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.plans import start_and_stop


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)


async def create(client: Any, user: User, **fields: Any) -> dict[str, Any]:
    body = {"kind": "company", "name": unique("Tagged"), **fields}
    r = await client.post("/v1/customers", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def walk(client: Any, user: User, path: str = "/v1/customers", **params: Any) -> list[str]:
    """Every page of a list, in order (ids may repeat only if the paging is wrong)."""
    seen: list[str] = []
    query: dict[str, Any] = {"limit": 2, **params}
    while True:
        r = await client.get(path, params=query, headers=user.headers)
        assert r.status_code == 200, r.text
        seen += [c["id"] for c in r.json()["items"]]
        if not r.json()["next_cursor"]:
            return seen
        query["cursor"] = r.json()["next_cursor"]


async def listed(client: Any, user: User, **params: Any) -> set[str]:
    ids = await walk(client, user, **params)
    assert len(ids) == len(set(ids)), "a customer listed twice"
    return set(ids)


async def test_every_scope_all_of_and_any_of(client: Any) -> None:
    root = f"/{unique('t')}"
    a, b = User(f"{root}/a"), User(f"{root}/b")
    outsider = User(f"/{unique('o')}")
    manager, admin = User(root, ["manager"], "mgr"), User("/hq", ["admin"], "admin")
    red, blue = unique("red"), unique("blue")
    both = await create(client, a, tags=[red, blue], tier="A")
    only_red = await create(client, a, tags=[red], tier="B")
    only_blue = await create(client, b, tags=[blue])
    elsewhere = await create(client, outsider, tags=[red, blue])
    pooled = await create(client, outsider, tags=[red])
    r = await client.post(f"/v1/customers/{pooled['id']}/release", json={"reason": "池"}, headers=outsider.headers)
    assert r.status_code == 200, r.text

    assert await listed(client, admin, tags_any=red) == {both["id"], only_red["id"], elsewhere["id"], pooled["id"]}
    assert await listed(client, admin, tags_all=f"{red},{blue}") == {both["id"], elsewhere["id"]}
    # A customer with both tags is one row of an any-of list, and one in its total.
    r = await client.get(
        "/v1/customers", params={"tags_any": f"{red},{blue}", "include_total": "true"}, headers=admin.headers
    )
    body = r.json()
    assert body["total"] == 5 and len(body["items"]) == 5
    # Manager: the department subtree (and the pool), not the outsider's.
    assert await listed(client, manager, tags_any=f"{red},{blue}") == {
        both["id"],
        only_red["id"],
        only_blue["id"],
        pooled["id"],
    }
    assert await listed(client, manager, tags_all=f"{blue},{red}") == {both["id"]}
    assert await listed(client, manager, tags_any=red, tier="A") == {both["id"]}
    # Rep: own and the pool.
    assert await listed(client, a, tags_any=red) == {both["id"], only_red["id"], pooled["id"]}
    assert await listed(client, b, tags_any=red) == {pooled["id"]}
    assert await listed(client, b, tags_all=blue) == {only_blue["id"]}
    r = await client.get("/v1/customers", params={"tags_any": red, "include_total": "true"}, headers=a.headers)
    assert r.json()["total"] == 3


async def test_changes_move_customers_in_and_out_of_tag_lists(client: Any) -> None:
    dept = f"/{unique('t')}"
    rep, other = User(dept), User(dept)
    admin = User("/hq", ["admin"], "admin")
    tag, new_tag = unique("tag"), unique("new")
    c = await create(client, rep, tags=[tag])
    dup = await create(client, rep, tags=[tag])
    assert await listed(client, rep, tags_any=tag) == {c["id"], dup["id"]}

    # A tag removed, another added.
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"tags": [new_tag]}, headers={**rep.headers, "If-Match": f'"{c["version"]}"'}
    )
    assert r.status_code == 200, r.text
    assert await listed(client, rep, tags_any=tag) == {dup["id"]}
    assert await listed(client, rep, tags_all=new_tag) == {c["id"]}
    r = await client.patch(
        f"/v1/customers/{c['id']}",
        json={"tags": [new_tag, tag]},
        headers={**rep.headers, "If-Match": f'"{r.json()["version"]}"'},
    )
    assert r.status_code == 200, r.text
    assert await listed(client, rep, tags_any=tag) == {c["id"], dup["id"]}

    # Deleted: gone from the list, in the recycle bin's tag list; restored: back.
    r = await client.delete(f"/v1/customers/{dup['id']}", headers=admin.headers)
    assert r.status_code in (200, 204), r.text
    assert await listed(client, rep, tags_any=tag) == {c["id"]}
    assert dup["id"] in set(await walk(client, admin, "/v1/recycle-bin", tags_any=tag))
    r = await client.post(f"/v1/customers/{dup['id']}/restore", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert await listed(client, rep, tags_any=tag) == {c["id"], dup["id"]}
    assert dup["id"] not in set(await walk(client, admin, "/v1/recycle-bin", tags_any=tag))

    # Released to the pool: another rep sees it under the tag; claimed by them: the first does not.
    r = await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "pool"}, headers=rep.headers)
    assert r.status_code == 200, r.text
    assert c["id"] in await listed(client, other, tags_any=tag)
    r = await client.post(f"/v1/customers/{c['id']}/claim", headers=other.headers)
    assert r.status_code == 200, r.text
    assert await listed(client, rep, tags_any=tag) == {dup["id"]}
    assert await listed(client, other, tags_any=tag) == {c["id"]}

    # Merged: the duplicate leaves every tag list, the survivor stays.
    r = await client.post(f"/v1/customers/{c['id']}/merge", json={"duplicate_id": dup["id"]}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert await listed(client, admin, tags_any=tag) == {c["id"]}
    assert await listed(client, rep, tags_any=tag) == set()


async def test_cursor_walks_ties_without_gaps_or_repeats(client: Any) -> None:
    """Rows that tie on every sort key but the id, found by two tags' memberships at once."""
    dept = f"/{unique('t')}"
    rep = User(dept)
    x, y = unique("x"), unique("y")
    made = {(await create(client, rep, tier="A", tags=[x, y] if i % 2 else [x]))["id"] for i in range(5)}
    made |= {(await create(client, rep, tier="B", tags=[y]))["id"] for _ in range(3)}
    for sort in ("-tier,name", "tier", "-updated_at", "kind,-tier"):
        walked = await walk(client, rep, tags_any=f"{x},{y}", sort=sort)
        assert sorted(walked) == sorted(made), sort  # each once, none missing
    tiers = [t for t in await tiers_in_order(client, rep, tags_any=f"{x},{y}", sort="-tier,name")]
    assert tiers == ["B"] * 3 + ["A"] * 5


async def tiers_in_order(client: Any, user: User, **params: Any) -> list[str]:
    r = await client.get("/v1/customers", params={"limit": 100, **params}, headers=user.headers)
    assert r.status_code == 200, r.text
    return [c["tier"] for c in r.json()["items"]]


async def test_stale_and_missing_memberships_are_repaired(
    client: Any, customers_settings: CustomersSettings, customers_db: Any
) -> None:
    """A crash between the customer's write and its memberships' leaves them behind: a page shows
    what the customer says (and resyncs it); start-up resyncs customers whose write was noted and
    never finished, and builds memberships for customers stored before they existed."""
    rep = User(f"/{unique('t')}")
    tag, gone = unique("tag"), unique("gone")
    c = await create(client, rep, tags=[tag, gone])
    memberships = customers_db["customer_tags"]
    # The customer lost a tag, but its memberships were never rewritten (the process died).
    await customers_db["customers"].update_one({"_id": c["id"]}, {"$set": {"tags": [tag]}})
    assert await listed(client, rep, tags_any=gone) == set()
    assert await memberships.find_one({"_id": f"{c['id']}:{gone}"}) is None  # resynced by the page
    assert await listed(client, rep, tags_any=tag) == {c["id"]}

    # A write noted, the customer written, the memberships not: start-up finishes it.
    added = unique("added")
    await customers_db["customers"].update_one({"_id": c["id"]}, {"$set": {"tags": [tag, added]}})
    await customers_db["customer_tags_pending"].insert_one({"_id": c["id"]})
    await start_and_stop(create_app(customers_settings))  # a replica (re)starting
    assert await listed(client, rep, tags_any=added) == {c["id"]}
    assert await customers_db["customer_tags_pending"].find_one({"_id": c["id"]}) is None

    # Customers stored before memberships existed: built once at start-up.
    await memberships.delete_many({"cid": c["id"]})
    assert await listed(client, rep, tags_any=added) == set()
    marker = f"customer_tags_v{tag_index.VERSION}_s{rules.SORT_KEYS_VERSION}"
    await customers_db["migrations"].delete_one({"_id": marker})
    # A start before it was killed mid-build had got past customers sorting before this one.
    before = f"{c['id'][:1]}"  # ids are uuids: every id sorts after its first character alone
    await customers_db["migrations"].insert_one({"_id": f"{marker}_progress", "last_id": before})
    await start_and_stop(create_app(customers_settings))  # a replica (re)starting
    assert await listed(client, rep, tags_any=added) == {c["id"]}
    assert await customers_db["migrations"].find_one({"_id": marker}) is not None
    assert await customers_db["migrations"].find_one({"_id": f"{marker}_progress"}) is None
    current = await customers_db["customers"].find_one({"_id": c["id"]})
    assert {m["_id"] async for m in memberships.find({"cid": c["id"]})} == {m["_id"] for m in memberships_of(current)}


async def test_a_create_in_flight_is_skipped_and_its_orphans_removed(client: Any, customers_db: Any) -> None:
    """A new customer's memberships are written just before the customer. A page that meets them
    before the customer is stored skips them and leaves them (removing them would lose the
    customer from its tag lists once stored); one left by a create that died between the two
    writes, older than ORPHAN_AFTER_MS, is removed by the page that meets it."""
    rep = User(f"/{unique('t')}")
    tag = unique("tag")
    c = await create(client, rep, tags=[tag])
    memberships = customers_db["customer_tags"]
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    now = rules.epoch_ms(datetime.now(UTC))

    def unstored(created_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """A customer like ``c`` (its own id and name) not stored yet, and its membership."""
        name = unique("inflight")
        doc = {**stored, "_id": unique("cid"), "name": name, "name_normalised": name.lower(), "unique_name": name}
        doc["s"] = {**stored["s"], "created_at": created_ms}
        [m] = memberships_of(doc)
        return doc, m

    customer, in_flight = unstored(now - 1_000)
    _, orphan = unstored(now - ORPHAN_AFTER_MS - 60_000)
    await memberships.insert_many([in_flight, orphan])

    assert await listed(client, rep, tags_any=tag) == {c["id"]}
    assert await memberships.find_one({"_id": in_flight["_id"]}) is not None  # left for its create
    assert await memberships.find_one({"_id": orphan["_id"]}) is None  # removed by the page

    # The create in flight lands: the customer is listed under its tag, from the membership written first.
    await customers_db["customers"].insert_one(customer)
    assert await listed(client, rep, tags_any=tag) == {c["id"], in_flight["cid"]}


async def test_an_older_state_synced_late_removes_nothing_the_newer_one_wrote(
    client: Any, customers_app: Any, customers_db: Any
) -> None:
    """Two writers of one customer sync its memberships in the wrong order: the older state neither
    deletes the newer one's memberships nor overwrites them; what it adds back is caught by a page."""
    rep = User(f"/{unique('t')}")
    kept, dropped = unique("kept"), unique("dropped")
    c = await create(client, rep, tags=[kept])
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"tags": [dropped]}, headers={**rep.headers, "If-Match": f'"{c["version"]}"'}
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/v1/customers/{c['id']}",
        json={"tags": [kept, "x"]},
        headers={**rep.headers, "If-Match": f'"{r.json()["version"]}"'},
    )
    assert r.status_code == 200, r.text
    newest = await customers_db["customers"].find_one({"_id": c["id"]})
    older = {**newest, "version": newest["version"] - 1, "tags": [dropped], "s": {**newest["s"], "name": "zzz"}}
    tags = customers_app.state.customers.repo.tags
    await tags.sync(older, c["id"])  # the slower writer of the state before
    held = {m["_id"]: m async for m in customers_db["customer_tags"].find({"cid": c["id"]})}
    assert f"{c['id']}:{kept}" in held and held[f"{c['id']}:{kept}"]["s"] == newest["s"]
    assert f"{c['id']}:x" in held
    assert await listed(client, rep, tags_any=kept) == {c["id"]}
    assert await listed(client, rep, tags_any=dropped) == set()  # the late row: stale, dropped, resynced
    assert await customers_db["customer_tags"].find_one({"_id": f"{c['id']}:{dropped}"}) is None
