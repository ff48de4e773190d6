"""Moving departments: every path below follows, cycles are refused, and an interrupted move finishes."""

from __future__ import annotations

import asyncio
from typing import Any

from crm_directory.main import create_app
from crm_platform.auth import Principal, Role
from crm_platform.testing.fixtures import auth, unique


async def _paths(client: Any, api: Any, dept_ids: list[str], user_ids: list[str]) -> tuple[dict, dict]:
    depts = {}
    for d in dept_ids:
        depts[d] = (await client.get(f"/v1/departments/{d}", headers=api.admin)).json()["path"]
    users = {}
    for u in user_ids:
        users[u] = (await client.get(f"/v1/users/{u}", headers=api.admin)).json()["department_path"]
    return depts, users


async def test_a_move_rewrites_the_paths_of_every_department_and_user_below(api, client, directory_events):
    east = await api.department("East")
    west = await api.department("West")
    team = await api.department("Team", parent=east["id"])
    squad = await api.department("Squad", parent=team["id"])
    in_east = await api.user(department=east["id"])
    in_squad = await api.user(department=squad["id"])
    elsewhere = await api.user(department=west["id"])
    r = await client.post(f"/v1/departments/{east['id']}/move", json={"parent_id": west["id"]}, headers=api.admin)
    assert r.status_code == 200, r.text
    new_east = f"{api.root_path}/{west['id']}/{east['id']}"
    assert (r.json()["path"], r.json()["parent_id"], r.headers["etag"]) == (new_east, west["id"], '"2"')
    depts, users = await _paths(
        client, api, [team["id"], squad["id"]], [in_east["id"], in_squad["id"], elsewhere["id"]]
    )
    assert depts == {team["id"]: f"{new_east}/{team['id']}", squad["id"]: f"{new_east}/{team['id']}/{squad['id']}"}
    assert users[in_east["id"]] == new_east
    assert users[in_squad["id"]] == f"{new_east}/{team['id']}/{squad['id']}"
    assert users[elsewhere["id"]] == west["path"], "users outside the subtree are untouched"

    [moved] = await directory_events.wait_for(type="crm.department.moved", subject=east["id"])
    data = moved.event["data"]
    assert (data["old_parent_id"], data["new_parent_id"]) == (api.root, west["id"])
    assert (data["old_path"], data["new_path"]) == (east["path"], new_east)
    [below] = await directory_events.wait_for(type="crm.department.moved", subject=squad["id"])
    assert below.event["data"]["moved_department_id"] == east["id"]
    assert below.event["data"]["old_path"] == squad["path"]
    [user_event] = await directory_events.wait_for(type="crm.user.updated", subject=in_squad["id"])
    assert user_event.event["data"]["cause"] == f"department_moved:{east['id']}"
    assert user_event.event["data"]["user"]["department_path"] == users[in_squad["id"]]
    assert user_event.event["data"]["changes"] == [
        {"field": "department_path", "old": in_squad["department_path"], "new": users[in_squad["id"]]}
    ]
    assert not directory_events.matching(type="crm.user.updated", subject=elsewhere["id"])


async def test_cycles_are_refused(api, client):
    east = await api.department("East")
    team = await api.department("Team", parent=east["id"])
    for target in (east["id"], team["id"]):
        r = await client.post(f"/v1/departments/{east['id']}/move", json={"parent_id": target}, headers=api.admin)
        assert r.status_code == 409, r.text
        assert r.json()["errors"][0]["field"] == "parent_id"
    assert (await client.get(f"/v1/departments/{east['id']}", headers=api.admin)).json()["path"] == east["path"]


async def test_move_errors(api, client):
    east = await api.department("East")
    url = f"/v1/departments/{east['id']}/move"
    r = await client.post(url, json={"parent_id": unique("missing")}, headers=api.admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parent_id"
    r = await client.post(url, json={"parent_id": None}, headers={**api.admin, "If-Match": '"9"'})
    assert r.status_code == 412
    r = await client.post(url, json={"parent_id": None}, headers=auth(unique("m"), ["manager"], api.root_path))
    assert r.status_code == 403
    r = await client.post(f"/v1/departments/{unique('nope')}/move", json={"parent_id": None}, headers=api.admin)
    assert r.status_code == 404
    # To the top level: a new root.
    r = await client.post(url, json={"parent_id": None}, headers={**api.admin, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["path"] == f"/{east['id']}" and r.json()["parent_id"] is None


async def test_running_the_same_move_again_changes_nothing(api, client, directory_events):
    east = await api.department("East")
    west = await api.department("West")
    user = await api.user(department=east["id"])
    url = f"/v1/departments/{east['id']}/move"
    first = await client.post(url, json={"parent_id": west["id"]}, headers=api.admin)
    await directory_events.wait_for(type="crm.user.updated", subject=user["id"])
    again = await client.post(url, json={"parent_id": west["id"]}, headers=api.admin)
    assert again.status_code == 200 and again.json() == first.json()
    r = await client.get(f"/v1/users/{user['id']}", headers=api.admin)
    assert r.json()["version"] == 2, "one write for the move, none for the repeat"


async def _interrupted_move(directory: Any, department_id: str, parent: dict[str, Any], actor: str) -> None:
    """What a process that died right after moving the department itself leaves behind."""
    deps = directory.departments
    await directory.repo.add_tree_job(department_id, actor)
    parent_doc = await directory.repo.department(parent["id"])
    await directory.repo.department_store.mutate(department_id, deps._decide_move(department_id, parent_doc, actor))


async def test_an_interrupted_move_is_finished_by_running_it_again(api, client, directory_app):
    directory = directory_app.state.directory
    east = await api.department("East")
    west = await api.department("West")
    team = await api.department("Team", parent=east["id"])
    user = await api.user(department=team["id"])
    await _interrupted_move(directory, east["id"], west, "admin-x")
    depts, users = await _paths(client, api, [team["id"]], [user["id"]])
    assert depts[team["id"]] == team["path"], "the crash left the subtree behind"
    assert users[user["id"]] == team["path"]
    r = await client.post(f"/v1/departments/{east['id']}/move", json={"parent_id": west["id"]}, headers=api.admin)
    assert r.status_code == 200
    expected = f"{api.root_path}/{west['id']}/{east['id']}/{team['id']}"
    assert await _paths(client, api, [team["id"]], [user["id"]]) == ({team["id"]: expected}, {user["id"]: expected})
    assert await directory.repo.pending_tree_jobs() == []


async def test_an_interrupted_move_is_finished_by_the_repair_on_start_up(
    api, client, directory_app, directory_settings
):
    directory = directory_app.state.directory
    east = await api.department("East")
    west = await api.department("West")
    team = await api.department("Team", parent=east["id"])
    user = await api.user(department=team["id"])
    await _interrupted_move(directory, east["id"], west, "admin-x")
    # Another replica starts on the same database: its start-up finishes the move.
    replica = create_app(directory_settings)
    async with replica.router.lifespan_context(replica):
        pass
    expected = f"{api.root_path}/{west['id']}/{east['id']}/{team['id']}"
    assert await _paths(client, api, [team["id"]], [user["id"]]) == ({team["id"]: expected}, {user["id"]: expected})
    assert await directory.repo.pending_tree_jobs() == []
    history = (await client.get(f"/v1/users/{user['id']}/history", headers=api.admin)).json()
    assert history[-1]["summary"] == f"department path changed: department {east['id']} moved"


async def test_users_written_while_their_department_moves_end_up_with_its_new_path(api, client, directory_app):
    east = await api.department("East")
    west = await api.department("West")
    team = await api.department("Team", parent=east["id"])
    for _ in range(5):
        await api.user(department=team["id"])
    move = client.post(f"/v1/departments/{east['id']}/move", json={"parent_id": west["id"]}, headers=api.admin)
    creates = [api.user(department=team["id"]) for _ in range(8)]
    results = await asyncio.gather(move, *creates)
    assert results[0].status_code == 200
    expected = f"{api.root_path}/{west['id']}/{east['id']}/{team['id']}"
    r = await client.get("/v1/users", params={"department_id": api.root, "limit": 100}, headers=api.admin)
    paths = {u["id"]: u["department_path"] for u in r.json()["items"]}
    assert len(paths) == 13
    assert set(paths.values()) == {expected}


async def test_settle_fixes_a_user_written_with_a_path_read_before_a_move(api, directory_app):
    directory = directory_app.state.directory
    east = await api.department("East")
    user = await api.user(department=east["id"])
    # Simulate the race directly: the department moved after the user's path was copied.
    west = await api.department("West")
    admin = Principal(user_id="admin-y", roles=frozenset({Role.admin}))
    await directory.repo.department_store.mutate(
        east["id"], directory.departments._decide_move(east["id"], await directory.repo.department(west["id"]), "a")
    )
    stale = await directory.repo.user(user["id"])
    assert stale["department_path"] == east["path"]
    settled = await directory.users.settle_department_path(stale, admin.user_id)
    assert settled["department_path"] == f"{api.root_path}/{west['id']}/{east['id']}"
    assert settled["version"] == 2
