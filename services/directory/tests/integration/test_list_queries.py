"""User and department lists served by indexed queries: a cursor walk across the visibility
alternatives (myself OR my subtree), equal sort keys across pages, filters with visibility."""

from __future__ import annotations

import uuid
from typing import Any

from pymongo import ASCENDING

from crm_directory.adapters.repository import DEPARTMENT_INDEXES, USER_INDEXES, DirectoryRepository
from crm_platform.clock import SystemClock
from crm_platform.testing.fixtures import auth, database


def fields(key: Any) -> tuple[str, ...]:
    """The indexed fields in order (a SON or a list of pairs)."""
    return tuple(name for name, _ in (key.items() if hasattr(key, "items") else key))


async def walk(client: Any, path: str, headers: dict[str, str], **params: Any) -> tuple[list[str], int | None]:
    """The ids of every item of a list, page by page, and the total the first page reported."""
    ids: list[str] = []
    cursor, total = None, None
    for _ in range(50):
        r = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert r.status_code == 200, r.text
        ids += [i["id"] for i in r.json()["items"]]
        total = r.json()["total"] if total is None else total
        cursor = r.json()["next_cursor"]
        if not cursor:
            return ids, total
    raise AssertionError("the cursor never ended")


async def test_a_managers_user_pages_merge_self_and_subtree_with_equal_names(api, client):
    east = await api.department("East")
    team = await api.department("Team", parent=east["id"])
    manager = await api.user(department=east["id"], roles=["manager"], name="Zhou Manager")
    same = [await api.user(department=team["id"], name="王芳") for _ in range(4)]
    other = await api.user(department=team["id"], name="Li Lei", language="en")
    await api.user(department=east["id"], name="王芳")  # the manager's department, not their token's subtree
    # A token for the team: the manager's own record (in East) is visible only as "myself".
    headers = auth(manager["id"], ["manager"], team["path"])
    by_name = sorted([*same, other], key=lambda u: (u["name"].casefold(), u["id"]))
    # Names compare by code point (as stored, case-folded), then the id breaks ties.
    expected = [u["id"] for u in sorted([*same, other, manager], key=lambda u: (u["name"].casefold(), u["id"]))]
    for limit in (1, 2, 3):
        ids, total = await walk(client, "/v1/users", headers, limit=limit, include_total=True)
        assert ids == expected and total == len(expected)
    ids, _ = await walk(client, "/v1/users", headers, limit=2, sort="-name")
    descending = sorted([*same, other, manager], key=lambda u: u["id"])
    descending.sort(key=lambda u: u["name"].casefold(), reverse=True)  # stable: ids ascending within a name
    assert ids == [u["id"] for u in descending]

    # Filters combined with the alternatives, over several pages.
    ids, total = await walk(client, "/v1/users", headers, limit=1, role="manager", include_total=True)
    assert ids == [manager["id"]] and total == 1
    ids, _ = await walk(client, "/v1/users", headers, limit=2, department_id=team["id"])
    assert ids == [u["id"] for u in by_name]
    ids, _ = await walk(client, "/v1/users", headers, limit=2, department_id=east["id"], q="王")
    assert ids == sorted(u["id"] for u in same)
    ids, _ = await walk(client, "/v1/users", headers, limit=1, language="en")
    assert ids == [other["id"]]


async def test_department_pages_with_equal_names_and_a_total(api, client):
    parent = await api.department("Parent")
    children = [await api.department("分部", parent=parent["id"]) for _ in range(3)]
    ids, total = await walk(
        client, "/v1/departments", api.admin, parent_id=parent["id"], sort="name", limit=2, include_total=True
    )
    assert ids == sorted(c["id"] for c in children) and total == 3
    # The department list's own bound (1000, the whole tree at once) is wider than PageParams' 500.
    r = await client.get("/v1/departments", params={"under": parent["id"], "limit": 1000}, headers=api.admin)
    assert r.status_code == 200 and [d["id"] for d in r.json()["items"]] == [
        parent["id"],
        *sorted(c["id"] for c in children),
    ]


async def test_renamed_indexes_replace_their_earlier_names(backend):
    async with database(backend.mongo_url, f"crm_directory_idx_{uuid.uuid4().hex[:8]}") as db:
        # An existing database from before the rename: MongoDB refuses the same keys under a new name.
        await db["users"].create_index([("department_id", ASCENDING)], name="department_id")
        await db["departments"].create_index([("s.name", ASCENDING)], name="sort_name")
        repo = DirectoryRepository(db, SystemClock(), lambda: None)
        await repo.ensure_indexes()
        users = await db["users"].index_information()
        departments = await db["departments"].index_information()
        assert "department_id" not in users and "sort_name" not in departments
        # By keys: the embedded store names every index after its keys, whatever name it is given.
        assert {fields(i.document["key"]) for i in USER_INDEXES} <= {fields(i["key"]) for i in users.values()}
        assert {fields(i.document["key"]) for i in DEPARTMENT_INDEXES} <= {
            fields(i["key"]) for i in departments.values()
        }
        await repo.ensure_indexes()  # and again: nothing to do
