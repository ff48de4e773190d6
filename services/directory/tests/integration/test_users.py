"""Users over HTTP against the real broker and store: create, read, edit, lists, deactivation, sync, history."""

from __future__ import annotations

from crm_platform.testing.fixtures import auth, unique

PASSWORD = "correct horse battery"  # what the api fixture gives its users
PROBLEM = "application/problem+json"


async def test_create_returns_the_user_without_secrets_and_publishes_a_snapshot(api, client, directory_events):
    r = await client.post(
        "/v1/users",
        json={
            "email": f"  Wang.Wu.{unique('x')}@Example.COM ",
            "name": " 王五 ",
            "phone": "138 0013 8000",
            "language": "en",
            "roles": ["rep", "manager", "rep"],
            "department_id": api.root,
            "password": PASSWORD,
        },
        headers=api.admin,
    )
    assert r.status_code == 201, r.text
    user = r.json()
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/users/{user['id']}"
    assert user["email"] == user["email"].lower() and user["email"].startswith("wang.wu.")
    assert (user["name"], user["phone"], user["language"]) == ("王五", "+8613800138000", "en")
    assert user["roles"] == ["manager", "rep"] and user["department_path"] == api.root_path
    assert user["has_password"] and user["active"] and user["last_sign_in_at"] is None
    assert "password" not in user and PASSWORD not in r.text and "argon2" not in r.text
    [record] = await directory_events.wait_for(type="crm.user.created", subject=user["id"])
    snapshot = record.event["data"]["user"]
    assert (snapshot["email"], snapshot["language"], snapshot["department_path"]) == (
        user["email"],
        "en",
        api.root_path,
    )
    assert "argon2" not in record.value.decode() and PASSWORD not in record.value.decode()


async def test_invalid_users_are_refused_field_by_field(api, client):
    base = {"name": "赵六", "roles": ["rep"], "department_id": api.root}
    cases = [
        ({**base, "email": "not-an-email"}, "email"),
        ({**base, "email": f"{unique('a')}@example.com", "phone": "12345"}, "phone"),
        ({**base, "email": f"{unique('a')}@example.com", "roles": []}, "roles"),
        ({**base, "email": f"{unique('a')}@example.com", "roles": ["boss"]}, "roles[0]"),
        ({**base, "email": f"{unique('a')}@example.com", "language": "fr"}, "language"),
        ({**base, "email": f"{unique('a')}@example.com", "department_id": unique("none")}, "department_id"),
        ({**base, "email": f"{unique('a')}@example.com", "password": "short"}, "password"),
        ({**base, "email": "same.as@example.com", "password": "Same.As@example.com"}, "password"),
    ]
    for body, field in cases:
        r = await client.post("/v1/users", json=body, headers=api.admin)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())


async def test_emails_are_unique_whatever_their_case(api, client):
    user = await api.user()
    body = {"email": user["email"].upper(), "name": "x", "roles": ["rep"], "department_id": api.root}
    r = await client.post("/v1/users", json=body, headers=api.admin)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "email"
    other = await api.user()
    r = await client.patch(
        f"/v1/users/{other['id']}", json={"email": user["email"].title()}, headers={**api.admin, "If-Match": '"1"'}
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "email"


async def test_who_sees_what(api, client):
    east = await api.department("East")
    team = await api.department("Team", parent=east["id"])
    west = await api.department("West")
    manager = await api.user(department=east["id"], roles=["manager"])
    rep = await api.user(department=team["id"])
    colleague = await api.user(department=team["id"])
    outsider = await api.user(department=west["id"])
    as_manager, as_rep = api.headers_for(manager), api.headers_for(rep)

    full = await client.get(f"/v1/users/{rep['id']}", headers=as_manager)
    assert full.json()["view"] == "full" and full.json()["email"] == rep["email"]
    card = await client.get(f"/v1/users/{outsider['id']}", headers=as_manager)
    assert card.status_code == 200 and card.json() == {
        "view": "public",
        "id": outsider["id"],
        "name": outsider["name"],
        "department_id": west["id"],
        "department_path": west["path"],
        "active": True,
    }
    mine = await client.get(f"/v1/users/{rep['id']}", headers=as_rep)
    assert mine.json()["view"] == "full"
    card = await client.get(f"/v1/users/{colleague['id']}", headers=as_rep)
    assert card.json()["view"] == "public" and "email" not in card.json()
    await client.post(f"/v1/users/{colleague['id']}/deactivate", headers=api.admin)
    assert (await client.get(f"/v1/users/{colleague['id']}", headers=as_rep)).status_code == 404
    assert (await client.get(f"/v1/users/{colleague['id']}", headers=as_manager)).json()["status"] == "deactivated"
    assert (await client.get(f"/v1/users/{unique('u')}", headers=api.admin)).status_code == 404

    r = await client.get("/v1/users", headers=as_rep)
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    r = await client.get("/v1/users", params={"department_id": api.root}, headers=as_manager)
    assert {u["id"] for u in r.json()["items"]} == {manager["id"], rep["id"], colleague["id"]}
    me = await client.get("/v1/me", headers=as_rep)
    assert me.status_code == 200 and me.json()["id"] == rep["id"] and me.headers["etag"] == '"1"'
    assert (await client.get(f"/v1/users/{rep['id']}/history", headers=auth(unique("r"), ["rep"]))).status_code == 404


async def test_lists_filter_sort_and_page(api, client):
    east = await api.department("East")
    team = await api.department("Team", parent=east["id"])
    west = await api.department("West")
    a = await api.user(department=east["id"], roles=["manager"], name="Alice Chen")
    b = await api.user(department=team["id"], name="Bob Li", language="en")
    c = await api.user(department=team["id"], name="Carol Wang")
    d = await api.user(department=west["id"], name="Dave Zhou", roles=["admin"])
    await client.post(f"/v1/users/{c['id']}/deactivate", headers=api.admin)

    async def ids(**params: object) -> list[str]:
        r = await client.get("/v1/users", params={"department_id": api.root, **params}, headers=api.admin)
        assert r.status_code == 200, r.text
        return [u["id"] for u in r.json()["items"]]

    assert await ids() == [a["id"], b["id"], c["id"], d["id"]], "by name by default"
    assert await ids(sort="-name") == [d["id"], c["id"], b["id"], a["id"]]
    assert await ids(department_id=east["id"]) == [a["id"], b["id"], c["id"]], "a subtree"
    assert await ids(department_id=east["id"], subtree=False) == [a["id"]]
    assert await ids(role="manager") == [a["id"]]
    assert await ids(role="admin") == [d["id"]]
    assert await ids(active=False) == [c["id"]]
    assert await ids(active=True, language="en") == [b["id"]]
    assert await ids(q="WANG") == [c["id"]]
    assert await ids(q=b["email"].split("@")[0].upper()) == [b["id"]]
    by_path = sorted([a, b, c, d], key=lambda u: u["name"], reverse=True)
    by_path.sort(key=lambda u: u["department_path"])  # stable: -name within each path
    assert await ids(sort="department_path,-name") == [u["id"] for u in by_path]
    seen, cursor, total = [], None, None
    while True:
        params: dict[str, object] = {"department_id": api.root, "limit": 3, "sort": "email", "include_total": True}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/users", params=params, headers=api.admin)).json()
        seen += [u["id"] for u in page["items"]]
        total, cursor = page["total"], page["next_cursor"]
        if not cursor:
            break
    assert total == 4 and sorted(seen) == sorted([a["id"], b["id"], c["id"], d["id"]]) and len(seen) == 4
    bad = await client.get("/v1/users", params={"cursor": "garbage"}, headers=api.admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    bad = await client.get("/v1/users", params={"department_id": unique("x")}, headers=api.admin)
    assert bad.status_code == 422


async def test_admin_edits_need_if_match_and_record_each_change(api, client, directory_events):
    user = await api.user()
    other = await api.department("Other")
    url = f"/v1/users/{user['id']}"
    assert (await client.patch(url, json={"name": "新名字"}, headers=api.admin)).status_code == 428
    r = await client.patch(url, json={"name": "新名字"}, headers={**api.admin, "If-Match": '"5"'})
    assert r.status_code == 412 and r.json()["current_version"] == 1
    r = await client.patch(
        url,
        json={"name": "新名字", "roles": ["manager"], "department_id": other["id"], "phone": "+86 10 6552 9988"},
        headers={**api.admin, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["roles"], body["department_path"], body["phone"]) == (
        "新名字",
        ["manager"],
        other["path"],
        "+861065529988",
    )
    assert r.headers["etag"] == '"2"'
    [event] = await directory_events.wait_for(type="crm.user.updated", subject=user["id"])
    changed = {c["field"]: (c["old"], c["new"]) for c in event.event["data"]["changes"]}
    assert changed == {
        "name": ("张三", "新名字"),
        "phone": (None, "+861065529988"),
        "roles": (["rep"], ["manager"]),
        "department_id": (api.root, other["id"]),
        "department_path": (api.root_path, other["path"]),
    }
    r = await client.patch(url, json={"name": None}, headers={**api.admin, "If-Match": '"2"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
    history = (await client.get(f"{url}/history", headers=api.admin)).json()
    assert [h["type"] for h in history] == ["crm.user.created", "crm.user.updated"]
    assert history[1]["actor"] and {"field": "name", "old": "张三", "new": "新名字"} in history[1]["changes"]


async def test_users_edit_their_own_name_phone_and_language_only(api, client, directory_events):
    user = await api.user()
    mine = api.headers_for(user)
    r = await client.patch(
        "/v1/me", json={"language": "en", "phone": "13900139000"}, headers={**mine, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and (r.json()["language"], r.json()["phone"]) == ("en", "+8613900139000")
    r = await client.patch(f"/v1/users/{user['id']}", json={"roles": ["admin"]}, headers={**mine, "If-Match": '"2"'})
    assert r.status_code == 403 and "roles" in r.json()["detail"]
    r = await client.patch("/v1/me", json={"roles": ["admin"]}, headers={**mine, "If-Match": '"2"'})
    assert r.status_code == 422, "not even a field of /v1/me"
    r = await client.patch(f"/v1/users/{user['id']}", json={"name": "Me"}, headers={**mine, "If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["name"] == "Me"
    manager = await api.user(roles=["manager"])
    r = await client.patch(
        f"/v1/users/{user['id']}", json={"name": "x"}, headers={**api.headers_for(manager), "If-Match": '"3"'}
    )
    assert r.status_code == 403
    await directory_events.wait_for(2, type="crm.user.updated", subject=user["id"])
    assert (await client.get("/v1/me/history", headers=mine)).json()[-1]["changes"] == [
        {"field": "name", "old": "张三", "new": "Me"}
    ]


async def test_deactivate_and_reactivate(api, client, directory_events):
    user = await api.user()
    url = f"/v1/users/{user['id']}"
    r = await client.post(f"{url}/deactivate", json={"reason": "left the company"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "deactivated" and not r.json()["active"]
    assert r.json()["deactivated"]["reason"] == "left the company"
    again = await client.post(f"{url}/deactivate", headers=api.admin)
    assert again.status_code == 200 and again.headers["etag"] == r.headers["etag"], "idempotent"
    [event] = await directory_events.wait_for(type="crm.user.deactivated", subject=user["id"])
    assert event.event["data"]["reason"] == "left the company"
    assert event.event["data"]["user"]["status"] == "deactivated"
    assert event.event["data"]["user"]["email"] == user["email"], "history and read copies keep the user"
    r = await client.post(f"{url}/reactivate", headers={**api.admin, "If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["active"] and r.json()["deactivated"] is None
    await directory_events.wait_for(type="crm.user.reactivated", subject=user["id"])
    assert (await client.post(f"{url}/deactivate", headers=api.headers_for(user))).status_code == 403
    admin_id = (await client.post(f"{url}/deactivate", headers=api.admin)).json()["updated_by"]
    r = await client.post(f"/v1/users/{admin_id}/deactivate", headers=api.admin)
    assert r.status_code == 409 and "yourself" in r.json()["detail"]


async def test_put_is_an_idempotent_upsert_for_directory_sync(api, client, directory_events):
    user_id = f"idp|{unique('sub')}".replace("|", ":")
    body = {
        "email": f"{unique('sync')}@corp.example.com",
        "name": "同步用户",
        "roles": ["rep"],
        "department_id": api.root,
        "language": "zh-CN",
    }
    created = await client.put(f"/v1/users/{user_id}", json=body, headers=api.admin)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == user_id and not created.json()["has_password"]
    same = await client.put(f"/v1/users/{user_id}", json=body, headers=api.admin)
    assert same.status_code == 200 and same.headers["etag"] == '"1"', "same state: no write, no event"
    team = await api.department("Team")
    changed = await client.put(
        f"/v1/users/{user_id}", json={**body, "department_id": team["id"], "active": False}, headers=api.admin
    )
    assert changed.status_code == 200 and changed.headers["etag"] == '"2"'
    assert (changed.json()["department_path"], changed.json()["status"]) == (team["path"], "deactivated")
    [created_event] = await directory_events.wait_for(type="crm.user.created", subject=user_id)
    assert created_event.event["data"]["via"] == "sync"
    [updated] = await directory_events.wait_for(type="crm.user.updated", subject=user_id)
    [deactivated] = await directory_events.wait_for(type="crm.user.deactivated", subject=user_id)
    assert updated.event["aggregateversion"] == deactivated.event["aggregateversion"] == 2
    assert updated.event["data"]["user"]["status"] == "deactivated", "each event carries the final snapshot"
    reactivated = await client.put(
        f"/v1/users/{user_id}", json={**body, "department_id": team["id"]}, headers=api.admin
    )
    assert reactivated.json()["active"]
    await directory_events.wait_for(type="crm.user.reactivated", subject=user_id)
    assert (
        await client.put(f"/v1/users/{user_id}", json=body, headers=api.headers_for(created.json()))
    ).status_code == 403
    assert (await client.put("/v1/users/bad id", json=body, headers=api.admin)).status_code == 422
    stale = await client.put(f"/v1/users/{user_id}", json=body, headers={**api.admin, "If-Match": '"1"'})
    assert stale.status_code == 412


async def test_admins_set_passwords(api, client, directory_events):
    user = await api.user(password=None)
    assert not user["has_password"]
    assert (await api.sign_in(user["email"])).status_code == 401
    r = await client.post(f"/v1/users/{user['id']}/password", json={"new_password": "short"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "new_password"
    r = await client.post(f"/v1/users/{user['id']}/password", json={"new_password": PASSWORD}, headers=api.admin)
    assert r.status_code == 200 and r.json()["has_password"] and r.json()["password_changed_at"]
    assert (await api.sign_in(user["email"])).status_code == 200
    [event] = await directory_events.wait_for(type="crm.user.password_changed", subject=user["id"])
    assert event.event["data"]["by"] == "admin" and PASSWORD not in event.value.decode()
    assert "hash" not in event.value.decode()
    other = await api.user()
    r = await client.post(
        f"/v1/users/{user['id']}/password", json={"new_password": PASSWORD}, headers=api.headers_for(other)
    )
    assert r.status_code == 403


async def test_a_user_keeps_their_time_zone_and_a_wrong_one_is_the_callers_422(api, client):
    user = await api.user(time_zone="Europe/Berlin")
    assert user["time_zone"] == "Europe/Berlin"
    mine = api.headers_for(user)
    me = await client.get("/v1/me", headers=mine)
    assert me.json()["time_zone"] == "Europe/Berlin"
    changed = await client.patch(
        "/v1/me", json={"time_zone": "Asia/Shanghai"}, headers={**mine, "If-Match": me.headers["ETag"]}
    )
    assert changed.status_code == 200, changed.text
    assert (await client.get("/v1/me", headers=mine)).json()["time_zone"] == "Asia/Shanghai"
    history = await client.get(f"/v1/users/{user['id']}/history", headers=api.admin)
    assert history.status_code == 200 and "time_zone" in history.text  # recorded with the other fields
    for wrong in ("Mars/Olympus", "../etc/passwd", "", "UTC+8" * 20):
        answer = await client.patch(
            "/v1/me", json={"time_zone": wrong}, headers={**mine, "If-Match": changed.headers["ETag"]}
        )
        assert answer.status_code == 422, (wrong, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == ["time_zone"], answer.json()
    no_zone = await api.user()
    assert no_zone["time_zone"] is None
