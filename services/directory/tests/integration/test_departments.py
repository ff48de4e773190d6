"""Departments over HTTP against the real broker and store: create, rename, manager, lists, tree, delete."""

from __future__ import annotations

from crm_platform.testing.fixtures import auth, unique

PROBLEM = "application/problem+json"


async def test_create_returns_the_department_with_an_etag_and_publishes_it(api, client, directory_events):
    east = await api.department("华东区")
    assert east["path"] == f"{api.root_path}/{east['id']}" and east["parent_id"] == api.root
    r = await client.get(f"/v1/departments/{east['id']}", headers=auth(unique("rep"), ["rep"]))
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    [record] = await directory_events.wait_for(type="crm.department.created", subject=east["id"])
    event = record.event
    assert record.key == east["id"].encode()
    assert event["source"] == "/crm/directory" and event["aggregateversion"] == 1
    assert event["data"]["department"]["path"] == east["path"]
    assert event["actor"] is not None


async def test_ids_are_generated_from_the_name_when_omitted(api, client):
    name = f"Sales {unique('x')}"
    r = await client.post("/v1/departments", json={"name": name, "parent_id": api.root}, headers=api.admin)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == name.lower().replace(" ", "-")
    again = await client.post("/v1/departments", json={"name": name, "parent_id": api.root}, headers=api.admin)
    assert again.status_code == 201, "a taken generated id gets a suffix"
    assert again.json()["id"].startswith(r.json()["id"] + "-")
    chinese = await client.post("/v1/departments", json={"name": "深圳一组", "parent_id": api.root}, headers=api.admin)
    assert chinese.json()["id"].startswith("dept-")


async def test_bad_input_is_a_problem_naming_the_field(api, client):
    cases = [
        ({"id": "Bad/Id", "name": "x", "parent_id": api.root}, "id", 422),
        ({"id": unique("d"), "name": "  ", "parent_id": api.root}, "name", 422),
        ({"id": unique("d"), "name": "x", "parent_id": unique("missing")}, "parent_id", 422),
        ({"id": unique("d"), "name": "x", "parent_id": api.root, "manager_id": unique("nobody")}, "manager_id", 422),
        ({"id": api.root, "name": "again"}, "id", 409),
        ({"id": unique("d"), "name": "x", "colour": "red"}, "colour", 422),
    ]
    for body, field, status in cases:
        r = await client.post("/v1/departments", json=body, headers=api.admin)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert field in [e["field"] for e in r.json()["errors"]], r.json()


async def test_only_admins_change_departments_and_everyone_needs_a_token(api, client):
    body = {"id": unique("d"), "name": "x", "parent_id": api.root}
    assert (await client.post("/v1/departments", json=body)).status_code == 401
    for role in ("rep", "manager"):
        r = await client.post("/v1/departments", json=body, headers=auth(unique(role), [role]))
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    r = await client.get(f"/v1/departments/{api.root}", headers=auth(unique("rep"), ["rep"]))
    assert r.status_code == 200, "everyone may read the organisation chart"


async def test_rename_and_manager_change_need_if_match_and_publish_their_events(api, client, directory_events):
    east = await api.department("East")
    manager = await api.user(department=east["id"], roles=["manager"])
    url = f"/v1/departments/{east['id']}"
    assert (await client.patch(url, json={"name": "East China"}, headers=api.admin)).status_code == 428
    stale = await client.patch(url, json={"name": "East China"}, headers={**api.admin, "If-Match": '"7"'})
    assert stale.status_code == 412 and stale.headers["etag"] == '"1"'
    r = await client.patch(
        url, json={"name": "East China", "manager_id": manager["id"]}, headers={**api.admin, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["manager_id"], r.headers["etag"]) == ("East China", manager["id"], '"2"')
    [renamed] = await directory_events.wait_for(type="crm.department.renamed", subject=east["id"])
    assert (renamed.event["data"]["old_name"], renamed.event["data"]["new_name"]) == ("East", "East China")
    [changed] = await directory_events.wait_for(type="crm.department.manager_changed", subject=east["id"])
    assert changed.event["data"]["new_manager_id"] == manager["id"]
    assert changed.event["data"]["department"]["manager_id"] == manager["id"]
    same = await client.patch(url, json={"name": "East China"}, headers={**api.admin, "If-Match": '"2"'})
    assert same.status_code == 200 and same.headers["etag"] == '"2"', "no change, no new version"
    rep = await api.user(department=east["id"])
    r = await client.patch(url, json={"manager_id": rep["id"]}, headers={**api.admin, "If-Match": '"2"'})
    assert r.status_code == 422 and "manager role" in r.json()["errors"][0]["reason"]
    r = await client.patch(url, json={"manager_id": None}, headers={**api.admin, "If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["manager_id"] is None


async def test_flat_list_filters_sorts_and_pages(api, client):
    east = await api.department("East")
    west = await api.department("West")
    teams = [await api.department(f"Team {i}", parent=east["id"], manager_id=None) for i in range(3)]
    headers = auth(unique("rep"), ["rep"])
    r = await client.get("/v1/departments", params={"under": api.root}, headers=headers)
    items = r.json()["items"]
    assert {d["id"] for d in items} == {api.root, east["id"], west["id"], *(t["id"] for t in teams)}
    assert [d["path"] for d in items] == sorted(d["path"] for d in items), "sorted by path by default"
    r = await client.get("/v1/departments", params={"parent_id": east["id"], "sort": "-name"}, headers=headers)
    assert [d["name"] for d in r.json()["items"]] == ["Team 2", "Team 1", "Team 0"]
    r = await client.get("/v1/departments", params={"under": api.root, "q": "team"}, headers=headers)
    assert len(r.json()["items"]) == 3
    seen, cursor = [], None
    while True:
        params = {"under": api.root, "limit": 2, "sort": "name", "include_total": True}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/departments", params=params, headers=headers)).json()
        assert page["total"] == 6
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 6
    bad = await client.get("/v1/departments", params={"sort": "colour"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "sort"


async def test_tree_nests_the_departments(api, client):
    east = await api.department("East")
    team = await api.department("Team", parent=east["id"])
    west = await api.department("West")
    r = await client.get("/v1/departments/tree", params={"root": api.root}, headers=auth(unique("r"), ["rep"]))
    assert r.status_code == 200
    [root] = r.json()
    assert root["id"] == api.root
    assert [c["id"] for c in root["children"]] == [east["id"], west["id"]]
    assert root["children"][0]["children"][0]["id"] == team["id"]
    assert root["children"][0]["children"][0]["path"] == team["path"]


async def test_only_empty_departments_are_deleted(api, client, directory_events):
    east = await api.department("East")
    team = await api.department("Team", parent=east["id"])
    user = await api.user(department=team["id"])
    r = await client.delete(f"/v1/departments/{east['id']}", headers=api.admin)
    assert r.status_code == 409 and r.json()["sub_departments"] == 1
    r = await client.delete(f"/v1/departments/{team['id']}", headers=api.admin)
    assert r.status_code == 409 and r.json()["users"] == 1
    # A deactivated user still belongs to the department: still refused.
    await client.post(f"/v1/users/{user['id']}/deactivate", headers=api.admin)
    assert (await client.delete(f"/v1/departments/{team['id']}", headers=api.admin)).status_code == 409
    other = await api.department("Other")
    patched = await client.patch(
        f"/v1/users/{user['id']}", json={"department_id": other["id"]}, headers={**api.admin, "If-Match": '"2"'}
    )
    assert patched.status_code == 200, patched.text
    assert (await client.delete(f"/v1/departments/{team['id']}", headers=api.admin)).status_code == 204
    [deleted] = await directory_events.wait_for(type="crm.department.deleted", subject=team["id"])
    assert deleted.event["data"]["department"]["status"] == "deleted"
    rep = auth(unique("rep"), ["rep"])
    assert (await client.get(f"/v1/departments/{team['id']}", headers=rep)).status_code == 404
    assert (await client.get(f"/v1/departments/{team['id']}", headers=api.admin)).json()["status"] == "deleted"
    assert (await client.delete(f"/v1/departments/{team['id']}", headers=api.admin)).status_code == 404
    listed = await client.get("/v1/departments", params={"under": api.root}, headers=rep)
    assert team["id"] not in [d["id"] for d in listed.json()["items"]]
    # Its id can be used again: the same aggregate lives on, at a higher version.
    again = await client.post(
        "/v1/departments", json={"id": team["id"], "name": "Team again", "parent_id": api.root}, headers=api.admin
    )
    assert again.status_code == 201 and again.json()["version"] == 3
    assert again.json()["path"] == f"{api.root_path}/{team['id']}"


async def test_history_lists_every_change_of_a_department(api, client):
    east = await api.department("East")
    west = await api.department("West")
    await client.patch(
        f"/v1/departments/{east['id']}", json={"name": "East China"}, headers={**api.admin, "If-Match": '"1"'}
    )
    await client.post(f"/v1/departments/{east['id']}/move", json={"parent_id": west["id"]}, headers=api.admin)
    r = await client.get(f"/v1/departments/{east['id']}/history", headers=auth(unique("rep"), ["rep"]))
    assert r.status_code == 200
    entries = r.json()
    assert [e["type"] for e in entries] == ["crm.department.created", "crm.department.renamed", "crm.department.moved"]
    assert entries[1]["changes"] == [{"field": "name", "old": "East", "new": "East China"}]
    assert {"field": "parent_id", "old": api.root, "new": west["id"]} in entries[2]["changes"]
    assert [e["version"] for e in entries] == [1, 2, 3]
