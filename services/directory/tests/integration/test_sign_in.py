"""Sign-in, refresh rotation with reuse detection, sign-out, password changes and deactivation."""

from __future__ import annotations

from datetime import timedelta

import jwt

from crm_platform.auth import TokenVerifier
from crm_platform.store import Change
from crm_platform.testing.fixtures import TEST_JWT_SECRET, unique

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a much better passphrase"


async def test_sign_in_returns_a_platform_token_and_a_refresh_token(api, client, directory_settings):
    team = await api.department("Team")
    user = await api.user(department=team["id"], roles=["manager", "rep"], name="钱七")
    r = await api.sign_in(user["email"].upper())
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["refresh_expires_in"] == 14 * 86400 and len(body["refresh_token"]) >= 40
    claims = jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"], audience="crm")
    assert (claims["sub"], claims["name"], claims["roles"]) == (user["id"], "钱七", ["manager", "rep"])
    assert (claims["dept"], claims["dept_path"]) == (team["id"], team["path"])
    assert claims["iss"] == "crm-directory" and claims["exp"] - claims["iat"] == 900 and claims["jti"]
    # Every service verifies it with the platform's verifier and the same settings.
    principal = await TokenVerifier(directory_settings).verify(body["access_token"])
    assert principal.reaches_path(f"{team['path']}/sub-team", "customers")
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["last_sign_in_at"] is not None


async def test_unknown_email_and_wrong_password_get_the_same_answer(api, client):
    user = await api.user()
    wrong = await api.sign_in(user["email"], "not the password at all")
    unknown = await api.sign_in(f"{unique('nobody')}@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"
    assert {k: v for k, v in wrong.json().items()} == {k: v for k, v in unknown.json().items()}
    assert wrong.json()["detail"] == "The email or password is incorrect."
    assert 'error="invalid_grant"' in wrong.headers["www-authenticate"]
    nonsense = await api.sign_in("not an email", PASSWORD)
    assert nonsense.status_code == 401 and nonsense.json() == wrong.json()
    empty = await client.post("/v1/auth/token", json={"email": user["email"]})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "password"


async def test_refresh_rotates_and_a_reused_token_ends_the_whole_family(api, client):
    user = await api.user()
    first = await api.tokens(user["email"])
    other_session = await api.tokens(user["email"])
    r = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        jwt.decode(second["access_token"], TEST_JWT_SECRET, algorithms=["HS256"], audience="crm")["sub"] == user["id"]
    )
    third = (await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})).json()
    # The first token comes back: someone kept a copy. The family ends, for the thief and the owner.
    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401 and "revoked" in reuse.json()["detail"]
    after = await client.post("/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert after.status_code == 401, "the newest token of the family is revoked too"
    untouched = await client.post("/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
    assert untouched.status_code == 200, "another sign-in of the same user is another family"
    garbage = await client.post("/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert garbage.status_code == 401 and "not valid" in garbage.json()["detail"]


async def test_refresh_picks_up_changes_to_the_user(api, client):
    user = await api.user()
    tokens = await api.tokens(user["email"])
    other = await api.department("Other")
    r = await client.patch(
        f"/v1/users/{user['id']}",
        json={"roles": ["manager"], "department_id": other["id"]},
        headers={**api.admin, "If-Match": '"1"'},
    )
    assert r.status_code == 200
    refreshed = (await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
    claims = jwt.decode(refreshed["access_token"], TEST_JWT_SECRET, algorithms=["HS256"], audience="crm")
    assert (claims["roles"], claims["dept_path"]) == (["manager"], other["path"])


async def test_logout_revokes_the_session_and_is_idempotent(api, client):
    user = await api.user()
    tokens = await api.tokens(user["email"])
    assert (await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})).status_code == 204
    assert (await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})).status_code == 204
    assert (await client.post("/v1/auth/logout", json={"refresh_token": "unknown"})).status_code == 204
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_changing_my_password_needs_the_current_one_and_signs_out_everywhere(
    api, client, directory_events, directory_app
):
    user = await api.user()
    sessions = [await api.tokens(user["email"]) for _ in range(2)]
    headers = {"Authorization": f"Bearer {sessions[0]['access_token']}", "X-Forwarded-For": api.ip}
    url = "/v1/me/password"
    r = await client.post(
        url, json={"current_password": "wrong password", "new_password": NEW_PASSWORD}, headers=headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "current_password"
    r = await client.post(url, json={"current_password": PASSWORD, "new_password": PASSWORD}, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "new_password"
    r = await client.post(url, json={"current_password": PASSWORD, "new_password": user["email"]}, headers=headers)
    assert r.status_code == 422 and "email" in r.json()["errors"][-1]["reason"]
    r = await client.post(url, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers)
    assert r.status_code == 204, r.text
    tokens = directory_app.state.directory.tokens
    assert await tokens.live_count(user["id"], directory_app.state.kit.clock.now()) == 0
    for session in sessions:
        refused = await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
        assert refused.status_code == 401
    assert (await api.sign_in(user["email"])).status_code == 401
    assert (await api.sign_in(user["email"], NEW_PASSWORD)).status_code == 200
    [event] = await directory_events.wait_for(type="crm.user.password_changed", subject=user["id"])
    assert event.event["data"]["by"] == "self" and NEW_PASSWORD not in event.value.decode()
    history = (await client.get("/v1/me/history", headers=headers)).json()
    assert history[-1]["summary"] == "password changed by the user"


async def test_deactivation_refuses_sign_in_and_revokes_refresh_tokens(api, client, directory_app):
    user = await api.user()
    tokens = await api.tokens(user["email"])
    r = await client.post(f"/v1/users/{user['id']}/deactivate", json={"reason": "left"}, headers=api.admin)
    assert r.status_code == 200
    directory = directory_app.state.directory
    assert await directory.tokens.live_count(user["id"], directory.clock.now()) == 0
    refused = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refused.status_code == 401
    signed = await api.sign_in(user["email"])
    assert signed.status_code == 403 and "deactivated" in signed.json()["detail"]
    wrong = await api.sign_in(user["email"], "not the password at all")
    assert wrong.status_code == 401, "a wrong password says nothing about the account"
    await client.post(f"/v1/users/{user['id']}/reactivate", headers=api.admin)
    assert (await api.sign_in(user["email"])).status_code == 200


async def test_refresh_is_refused_even_if_revoking_was_interrupted(api, client, directory_app):
    """The revocation write comes after the user's write; refresh checks the user anyway."""
    directory = directory_app.state.directory
    user = await api.user()
    tokens = await api.tokens(user["email"])
    # Change the password through the store only: as if the process died before revoking.
    new_hash = directory.passwords.hash(NEW_PASSWORD)
    now = directory.clock.now()

    def decide(doc, version):
        doc["password"] = {"hash": new_hash, "changed_at": now + timedelta(seconds=1)}
        return Change(doc, [])

    await directory.repo.user_store.mutate(user["id"], decide)
    assert await directory.tokens.live_count(user["id"], now) == 1
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401 and "password has changed" in r.json()["detail"]


async def test_hashes_made_with_older_argon2_parameters_are_upgraded_at_sign_in(api, directory_app, directory_events):
    from crm_directory.domain.passwords import Argon2Parameters, Passwords

    directory = directory_app.state.directory
    user = await api.user()
    old_hash = Passwords(Argon2Parameters(time_cost=1, memory_kib=512, parallelism=1)).hash(PASSWORD)

    def decide(doc, version):
        doc["password"] = {**doc["password"], "hash": old_hash}
        return Change(doc, [])

    await directory.repo.user_store.mutate(user["id"], decide)
    assert (await api.sign_in(user["email"])).status_code == 200
    stored = (await directory.repo.user(user["id"]))["password"]["hash"]
    assert stored != old_hash and "m=256,t=1,p=1" in stored, "rehashed with today's parameters"
    assert directory.passwords.verify(stored, PASSWORD)
    assert (await api.sign_in(user["email"])).status_code == 200
    assert (await directory.repo.user(user["id"]))["password"]["hash"] == stored, "only once"
    await directory_events.wait_for(type="crm.user.created", subject=user["id"])
    # The rehash changes no user: no user event (the two sign-ins publish crm.directory.signed_in).
    types = [r.event["type"] for r in directory_events.matching(subject=user["id"])]
    assert [t for t in types if t.startswith("crm.user.")] == ["crm.user.created"]
