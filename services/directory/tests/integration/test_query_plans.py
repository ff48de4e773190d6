"""Every write path, sign-in and list page of the directory is index lookups on the embedded store
(its SQLite query plans, see crm_platform.testing.query_plans). The directory consumes no events.

The service runs against the traced store with a few hundred users and departments already
stored (so SQLite prefers a good index to a scan); each path runs inside a capture and any
statement whose cost grows with the collection fails the test, printed with its plan.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_directory.domain import departments as dept_rules
from crm_directory.domain import users as user_rules
from crm_directory.main import create_app
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, database, unique
from crm_platform.testing.plans import keys_before_epoch_ms, start_and_stop
from crm_platform.testing.query_plans import Capture, Statement, TracedStore
from crm_platform.testing.roles import define_role

from ..conftest import PASSWORD, directory_settings_for

ROWS = 300
ROOT = "plans"
ADMIN = auth("admin-plans", ["admin"], f"/{ROOT}")
#: A custom role whose users scope is "department": its user list is an equality on the path.
DEPT_ROLE = "plans-department"


@pytest.fixture(scope="module")
async def app(backend: Backend, traced_store: TracedStore) -> AsyncIterator[FastAPI]:
    settings = directory_settings_for(
        backend, mongo_url=traced_store.url, mongo_database=f"crm_directory_plans_{uuid.uuid4().hex[:8]}"
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await define_role(application, DEPT_ROLE, ["users:view"], {"users": "department"})
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://directory.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI, traced_store: TracedStore) -> AsyncIterator[Any]:
    async with database(traced_store.url, app.state.kit.settings.mongo_database) as db_:
        yield db_


def bounded(statement: Statement) -> bool:
    """Statements that read a whole table whose size does not grow with users or departments:
    the embedded store's own TTL emulation (its table of TTL indexes, and its sweep of expired
    sign-in throttle rows: a TTL needs a date on MongoDB, so it cannot be an epoch integer; the
    table holds only the last 15 minutes' failed sign-ins), and the pending department moves
    (tree_jobs: a job is deleted when its move is finished, so it holds only moves in flight)."""
    return (
        "_neosqlite_ttl_indexes" in statement.sql
        or statement.sql.startswith("DELETE FROM signin_throttle WHERE datetime(")
        or "FROM tree_jobs " in statement.sql
    )


def assert_indexed(capture: Capture, *, sorted_results: bool = False) -> None:
    assert capture.statements, "nothing was recorded: the capture did not see the store"
    scans = [s for s in capture.scans(sorted_results=sorted_results, row_filters=True) if not bounded(s)]
    assert not scans, "\n".join(s.describe() for s in scans)


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document without its pending events (a copy must not be published)."""
    return {k: v for k, v in doc.items() if not k.startswith("outbox")}


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = await client.post(url, json=body, headers=headers or ADMIN)
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def user_body(department: str) -> dict[str, Any]:
    return {
        "email": f"{unique('user')}@example.com",
        "name": "张三",
        "roles": ["rep"],
        "department_id": department,
        "password": PASSWORD,
    }


@pytest.fixture(scope="module")
async def filled(client: httpx.AsyncClient, db: Any) -> str:
    """A root department, a few hundred departments under it and users in them (stored shapes)."""
    await post(client, "/v1/departments", {"id": ROOT, "name": "Org plans"})
    team = await post(client, "/v1/departments", {"id": unique("d"), "name": "一组", "parent_id": ROOT})
    dept = stored(await db["departments"].find_one({"_id": team["id"]}))
    await db["departments"].insert_many(
        [
            {
                **dept,
                "_id": f"{dept['_id']}-{i}",
                "path": f"{dept['path']}-{i}",
                "name": f"组{i}",
                "s": {**dept["s"], "id": f"{dept['_id']}-{i}"},  # the tie-breaker follows the id
            }
            for i in range(ROWS)
        ]
    )
    user = await post(client, "/v1/users", user_body(team["id"]))
    doc = stored(await db["users"].find_one({"_id": user["id"]}))
    await db["users"].insert_many(
        [
            {
                **doc,
                "_id": f"{doc['_id']}-{i}",
                "email": f"clone-{i}-{doc['email']}",
                "s": {**doc["s"], "id": f"{doc['_id']}-{i}"},
            }
            for i in range(ROWS)
        ]
    )
    return str(team["id"])


async def test_user_and_department_writes_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: str, traced_store: TracedStore
) -> None:
    with traced_store.capture() as capture:
        department = await post(client, "/v1/departments", {"id": unique("d"), "name": "二组", "parent_id": ROOT})
        target = await post(client, "/v1/departments", {"id": unique("d"), "name": "三组", "parent_id": ROOT})
        await post(client, f"/v1/departments/{department['id']}/move", {"parent_id": target["id"]})
        user = await post(client, "/v1/users", user_body(filled))
        r = await client.patch(
            f"/v1/users/{user['id']}", json={"name": "李四"}, headers={**ADMIN, "If-Match": f'"{user["version"]}"'}
        )
        assert r.status_code == 200, r.text
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_sign_in_and_refresh_are_index_lookups(
    client: httpx.AsyncClient, filled: str, traced_store: TracedStore
) -> None:
    user = await post(client, "/v1/users", user_body(filled))
    with traced_store.capture() as capture:
        tokens = await post(
            client, "/v1/auth/token", {"email": user["email"], "password": PASSWORD}, **{"X-Forwarded-For": "10.9.9.9"}
        )
        await post(
            client, "/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, **{"X-Forwarded-For": "10.9.9.9"}
        )
    assert_indexed(capture)


LISTS = [
    *(("/v1/users", "users", s) for s in user_rules.SORT_FIELDS),
    *(("/v1/departments", "departments", s) for s in dept_rules.SORT_FIELDS),
]


MANAGER = auth("mgr-plans", ["manager"], f"/{ROOT}")
#: The users' department_path sort is in: a manager's page 2 put the subtree regex and the cursor's
#: condition on department_path in a literal $and, which the store filtered in Python (no WHERE).
PARAMS = [(u, c, f"{d}{s}") for u, c, s in LISTS for d in ("", "-")]


@pytest.mark.parametrize("url,collection,sort", PARAMS)
async def test_list_pages_are_index_lookups(
    client: httpx.AsyncClient, filled: str, traced_store: TracedStore, url: str, collection: str, sort: str
) -> None:
    """Page 1 and the page after it, for every sort each list offers, as an admin and as a manager
    (a rep's user list is themselves), and the users as a custom role whose users scope is
    "department" (the filled department's): each is an index walk in sort order."""
    callers = [ADMIN, MANAGER]
    if url == "/v1/users":
        path = (await client.get(f"/v1/departments/{filled}", headers=ADMIN)).json()["path"]
        callers.append(auth("dept-plans", [DEPT_ROLE], path))
    for headers in callers:
        with traced_store.capture() as capture:
            first = await client.get(url, params={"sort": sort, "limit": 20}, headers=headers)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            assert cursor, "a second page exists"
            second = await client.get(url, params={"sort": sort, "limit": 20, "cursor": cursor}, headers=headers)
        assert second.status_code == 200 and len(second.json()["items"]) == 20, second.text
        assert not {i["id"] for i in first.json()["items"]} & {i["id"] for i in second.json()["items"]}
        assert_indexed(capture, sorted_results=True)


async def test_start_up_rewrites_sort_keys_stored_in_the_old_shape(
    app: FastAPI, client: httpx.AsyncClient, db: Any, filled: str
) -> None:
    """A user and a department stored before the epoch-ms sort keys (dates in ``s``, no ``s.v``,
    no ``s.id``) get the new keys when the service starts, and lists page through them."""
    parent = await post(client, "/v1/departments", {"id": unique("d"), "name": "旧部门", "parent_id": ROOT})
    departments = [
        (await post(client, "/v1/departments", {"id": unique("d"), "name": n, "parent_id": parent["id"]}))["id"]
        for n in ("甲", "乙")
    ]
    users = [(await post(client, "/v1/users", user_body(departments[0])))["id"] for _ in "ab"]
    for collection, record_id in (("users", users[0]), ("departments", departments[0])):
        stored = await db[collection].find_one({"_id": record_id})
        await db[collection].update_one({"_id": record_id}, {"$set": {"s": keys_before_epoch_ms(stored["s"])}})
    await db["migrations"].delete_many({})  # a database from before the upgrade existed

    await start_and_stop(create_app(app.state.kit.settings))

    user = await db["users"].find_one({"_id": users[0]})
    assert user["s"] == user_rules.sort_keys(user)
    department = await db["departments"].find_one({"_id": departments[0]})
    assert department["s"] == dept_rules.sort_keys(department)
    for url, params, expected in (
        ("/v1/users", {"department_id": departments[0]}, users),
        ("/v1/departments", {"parent_id": parent["id"]}, departments),
    ):
        for sort in ("-updated_at", "created_at", "name"):
            seen, cursor = [], None
            for _ in range(3):
                page = {**params, "sort": sort, "limit": 1, **({"cursor": cursor} if cursor else {})}
                r = await client.get(url, params=page, headers=ADMIN)
                assert r.status_code == 200, r.text
                seen += [i["id"] for i in r.json()["items"]]
                cursor = r.json()["next_cursor"]
                if cursor is None:
                    break
            assert sorted(seen) == sorted(expected), (url, sort)


async def test_role_paths_are_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, db: Any, filled: str, traced_store: TracedStore
) -> None:
    """Defining, editing and deleting a role, giving it to users and taking it away again, with the
    checks those run (is the role defined, who holds it, does someone keep roles:manage): each is an
    ``_id`` lookup or an indexed search, with a few hundred holdings of a role stored."""
    held = {d["user_id"] async for d in db["role_holders"].find({"role_id": "rep"})}
    ids = [d["_id"] async for d in db["users"].find({}, projection={"_id": 1}) if d["_id"] not in held][:ROWS]
    if ids:  # a start-up's backfill (an earlier test restarts the service) may have written them already
        await db["role_holders"].insert_many(
            [{"_id": f"rep|{user_id}", "role_id": "rep", "user_id": user_id, "nonce": "n"} for user_id in ids]
        )
    assert await db["role_holders"].count_documents({"role_id": "rep"}) >= ROWS
    role = {"id": unique("role"), "names": {"zh-CN": "角色", "en": "Role"}, "permissions": ["customers:view"]}
    admins = [await post(client, "/v1/users", {**user_body(filled), "roles": ["admin"]}) for _ in range(2)]
    with traced_store.capture() as capture:
        created = await post(client, "/v1/roles", role)
        assert (await client.get("/v1/roles", headers=ADMIN)).status_code == 200
        assert (await client.get(f"/v1/roles/{created['id']}", headers=ADMIN)).status_code == 200
        user = await post(client, "/v1/users", {**user_body(filled), "roles": ["rep", created["id"]]})
        r = await client.patch(f"/v1/users/{user['id']}", json={"roles": ["rep"]}, headers={**ADMIN, "If-Match": '"1"'})
        assert r.status_code == 200, r.text
        r = await client.patch(
            f"/v1/roles/{created['id']}", json={"permissions": ["reports:view"]}, headers={**ADMIN, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
        r = await client.patch(
            f"/v1/users/{admins[0]['id']}", json={"roles": ["rep"]}, headers={**ADMIN, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text  # the other admin keeps roles:manage
        assert (await client.delete(f"/v1/roles/{created['id']}", headers=ADMIN)).status_code == 204
        await app.state.kit.relay.drain()
    assert_indexed(capture)


async def test_the_user_list_by_role_reads_the_role_s_holders(
    client: httpx.AsyncClient, db: Any, filled: str, traced_store: TracedStore
) -> None:
    """``GET /v1/users?role=`` finds the holders on ``role_holders`` (its index), then reads those
    users by ``_id``: a test of the roles array would read every user on the embedded store."""
    role = {"id": unique("role"), "names": {"zh-CN": "角色", "en": "Role"}, "permissions": ["customers:view"]}
    created = await post(client, "/v1/roles", role)
    holders = [await post(client, "/v1/users", {**user_body(filled), "roles": ["rep", created["id"]]}) for _ in "abc"]
    with traced_store.capture() as capture:
        r = await client.get("/v1/users", params={"role": created["id"], "limit": 2}, headers=ADMIN)
        assert r.status_code == 200, r.text
        first = r.json()
        r = await client.get(
            "/v1/users", params={"role": created["id"], "limit": 2, "cursor": first["next_cursor"]}, headers=ADMIN
        )
        listed = [u["id"] for u in [*first["items"], *r.json()["items"]]]
        none = await client.get("/v1/users", params={"role": unique("nobody")}, headers=ADMIN)
        assert none.status_code == 200 and none.json()["items"] == []
    assert sorted(listed) == sorted(u["id"] for u in holders)
    assert_indexed(capture)
    # A test of every user's roles array (a subquery per row) is what this replaced.
    row_filters = [s for s in capture.scans(row_filters=True) if not bounded(s)]
    assert not row_filters, "\n".join(s.describe() for s in row_filters)


async def test_counting_active_admins_is_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: str, traced_store: TracedStore
) -> None:
    """The bootstrap's "is there an administrator" reads the admin role's holdings (an equality on
    role_id) and each holder by _id: ``$in`` on the users' roles array read every user."""
    admin = await post(client, "/v1/users", {**user_body(filled), "roles": ["admin"]})
    repo = app.state.directory.repo
    with traced_store.capture() as capture:
        count = await repo.count_active_admins()
        without = await repo.count_active_admins(excluding=admin["id"])
    assert count >= 1 and without == count - 1
    assert_indexed(capture)
    # Served by an index on "status" alone, the $in walked every active user testing each one's
    # roles array with a subquery: a row filter no index serves.
    row_filters = [s for s in capture.scans(row_filters=True) if not bounded(s)]
    assert not row_filters, "\n".join(s.describe() for s in row_filters)


async def test_the_sign_in_records_retention_purge_is_index_lookups(
    app: FastAPI, client: httpx.AsyncClient, filled: str, db: Any, traced_store: TracedStore
) -> None:
    """The retention purge of the sign-in records (CRM_RECORD_RETENTION_DAYS): a record past the
    retention, once its event has left, is deleted, a recent one kept; a range on ``at_ms``'s
    index and a delete by ``_id`` per batch."""
    user = await post(client, "/v1/users", user_body(filled))
    for _ in range(3):
        await post(client, "/v1/auth/token", {"email": user["email"], "password": PASSWORD})
    await app.state.kit.relay.drain()
    records = db["sign_in_events"]
    mine = [doc async for doc in records.find({"outcome": "signed_in"}).sort("at_ms", -1).limit(3)]
    assert len(mine) == 3 and not any("outbox_pending_ms" in doc for doc in mine)
    for doc in mine[1:]:  # written 100 days ago, as far as the purge can tell
        await records.update_one({"_id": doc["_id"]}, {"$inc": {"at_ms": -100 * 86_400_000}})
    with traced_store.capture() as capture:
        deleted = await app.state.directory.repo.purge_sign_in_records(retention_days=90, batch_size=1)
    assert deleted >= 2
    left = {doc["_id"] async for doc in records.find({"_id": {"$in": [d["_id"] for d in mine]}})}
    assert left == {mine[0]["_id"]}
    assert_indexed(capture, sorted_results=True)
    ranges = [s for s in capture.statements if "json_extract(data, '$.at_ms') <" in s.sql]
    assert ranges and all(any("USING INDEX idx_sign_in_events_at_ms" in line for line in s.plan) for s in ranges)
