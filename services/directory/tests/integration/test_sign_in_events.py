"""Sign-ins publish events for the audit log: who, from which address, and for a refusal nothing
that tells whether the account exists. Read from the topic with a plain consumer."""

from __future__ import annotations

from typing import Any

from crm_platform.testing.fixtures import unique

from ..conftest import PASSWORD, random_ip


async def test_a_sign_in_publishes_who_and_from_where(api: Any, directory_events: Any) -> None:
    user = await api.user(name="孙八")
    ip = random_ip()
    assert (await api.sign_in(user["email"], ip=ip)).status_code == 200
    [record] = await directory_events.wait_for(type="crm.directory.signed_in", subject=user["id"])
    event = record.event
    assert event["actor"] == user["id"]
    # The client behind the trusted proxy (X-Forwarded-For), in the data and in the envelope.
    assert event["clientaddress"] == ip
    assert event["data"] == {"user_id": user["id"], "email": user["email"], "client_address": ip}
    assert PASSWORD.encode() not in record.value


async def test_a_wrong_password_and_an_unknown_email_publish_the_same_refusal(api: Any, directory_events: Any) -> None:
    user = await api.user()
    ip = random_ip()
    nobody = f"{unique('nobody')}@example.com"
    assert (await api.sign_in(user["email"], "not the password at all", ip=ip)).status_code == 401
    assert (await api.sign_in(nobody.upper(), PASSWORD, ip=ip)).status_code == 401
    failures: list[dict[str, Any]] = []
    for email in (user["email"], nobody):
        [record] = await directory_events.wait_for(type="crm.directory.sign_in_failed", data=_data(email, ip))
        assert PASSWORD.encode() not in record.value and b"not the password" not in record.value
        failures.append(record.event)
    for event in failures:
        assert event.get("actor") is None
        assert event["subject"] not in (user["id"], user["email"])  # an id of the attempt, not of a user
        assert event["clientaddress"] == ip
    assert failures[0].keys() == failures[1].keys()


async def test_a_deactivated_account_is_refused_as_such_only_after_the_right_password(
    api: Any, client: Any, directory_events: Any
) -> None:
    user = await api.user()
    r = await client.post(f"/v1/users/{user['id']}/deactivate", json={"reason": "left"}, headers=api.admin)
    assert r.status_code == 200, r.text
    ip = random_ip()
    assert (await api.sign_in(user["email"], ip=ip)).status_code == 403
    await directory_events.wait_for(
        type="crm.directory.sign_in_failed", data={**_data(user["email"], ip), "reason": "deactivated"}
    )
    other_ip = random_ip()
    assert (await api.sign_in(user["email"], "not the password at all", ip=other_ip)).status_code == 401
    await directory_events.wait_for(type="crm.directory.sign_in_failed", data=_data(user["email"], other_ip))


async def test_a_throttled_attempt_makes_no_event(api: Any, directory_db: Any) -> None:
    user = await api.user()
    ip = random_ip()
    for _ in range(5):
        assert (await api.sign_in(user["email"], "not the password at all", ip=ip)).status_code == 401
    before = await directory_db["sign_in_events"].count_documents({})
    assert (await api.sign_in(user["email"], "not the password at all", ip=ip)).status_code == 429
    assert (await api.sign_in(user["email"], ip=ip)).status_code == 429  # the right one waits too
    assert await directory_db["sign_in_events"].count_documents({}) == before


def _data(email: str, ip: str) -> dict[str, Any]:
    return {"email": email, "reason": "invalid_credentials", "client_address": ip}
