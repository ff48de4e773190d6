"""Idempotency-Key on POST /v1/users: a retry gives the first user and never a second one."""

from __future__ import annotations

from typing import Any

from crm_platform.testing.fixtures import unique
from crm_platform.testing.idempotency import assert_create_is_idempotent, assert_declares_key, assert_same_outcome

PASSWORD = "correct horse battery staple 42"


async def test_create_user_with_a_key(api, client, directory_db):
    def body() -> dict[str, Any]:
        email = f"{unique('idem')}@example.com"
        return {"email": email, "name": "李四", "roles": ["rep"], "department_id": api.root, "password": PASSWORD}

    async def count(sent: dict[str, Any]) -> int:
        return int(await directory_db["users"].count_documents({"email": sent["email"]}))

    first = await assert_create_is_idempotent(client, "/v1/users", api.admin, body, count)
    assert first.headers["Location"] == f"/v1/users/{first.json()['id']}"
    assert "idempotency_fingerprint" not in first.json()
    assert_declares_key((await client.get("/openapi.json")).json(), "/v1/users")


async def test_a_retry_differing_only_in_the_password_is_the_same_request(api, client):
    """Secrets are not fingerprinted (a plain hash of one would be a weak password hash): the retry
    answers with the first user, whose password stays the first one."""
    body = {"email": f"{unique('pw')}@example.com", "name": "王五", "roles": ["rep"], "department_id": api.root}
    headers = {**api.admin, "Idempotency-Key": unique("key")}
    first = await client.post("/v1/users", json={**body, "password": PASSWORD}, headers=headers)
    assert first.status_code == 201, first.text
    retry = await client.post("/v1/users", json={**body, "password": "another password 1234"}, headers=headers)
    assert_same_outcome(first, retry)
    assert (await api.sign_in(body["email"], PASSWORD)).status_code == 200
