"""Idempotency-Key on the customers service's creates: a retry gives the first outcome, never a second record.

Each test sends the same request twice (or several times at once) with one key and checks the
store holds one record, the answers match, and the retry says it is one (Idempotent-Replayed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from crm_platform.testing.fixtures import auth, unique

PROBLEM = "application/problem+json"
REPLAYED = "Idempotent-Replayed"


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def rep() -> dict[str, str]:
    return auth(unique("rep-idem"), department_path=f"/{unique('d')}")


def same_answer(first: Any, second: Any) -> None:
    assert second.status_code == first.status_code
    assert second.json() == first.json()
    for header in ("ETag", "Location"):
        assert second.headers.get(header) == first.headers.get(header)
    assert REPLAYED not in first.headers
    assert second.headers[REPLAYED] == "true"


async def test_same_key_twice_is_one_customer_and_the_same_answer(client, customers_db, customer_events):
    headers, key, name = rep(), unique("key"), unique("Idem 贸易") + " 有限公司"
    body = {"kind": "company", "name": name, "phones": ["13800138000"]}
    first = await client.post("/v1/customers", json=body, headers=keyed(headers, key))
    assert first.status_code == 201, first.text
    # The retry sends the same JSON with its keys in another order: still the same request.
    second = await client.post("/v1/customers", json=dict(reversed(body.items())), headers=keyed(headers, key))
    same_answer(first, second)
    assert await customers_db["customers"].count_documents({"name": name}) == 1
    assert "idempotency_fingerprint" not in first.json()
    customer_id = first.json()["id"]
    await customer_events.wait_for(type="crm.customer.created", subject=customer_id)
    # A later create's event has arrived too, so a second event for ours would have by now.
    marker = await client.post("/v1/customers", json={"kind": "company", "name": unique("Marker")}, headers=headers)
    await customer_events.wait_for(type="crm.customer.created", subject=marker.json()["id"])
    assert len(customer_events.matching(type="crm.customer.created", subject=customer_id)) == 1


async def test_same_key_with_another_body_is_refused_and_stores_nothing(client, customers_db):
    headers, key = rep(), unique("key")
    first = await client.post(
        "/v1/customers", json={"kind": "company", "name": unique("First")}, headers=keyed(headers, key)
    )
    assert first.status_code == 201
    other = unique("Other")
    refused = await client.post("/v1/customers", json={"kind": "company", "name": other}, headers=keyed(headers, key))
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert problem["title"] == "Idempotency-Key reused with a different request"
    assert problem["errors"][0]["field"] == "Idempotency-Key" and problem["errors"][0]["location"] == "header"
    assert await customers_db["customers"].count_documents({"name": other}) == 0


async def test_the_key_belongs_to_its_user(client, customers_db):
    key = unique("shared-key")
    a = await client.post("/v1/customers", json={"kind": "company", "name": unique("A")}, headers=keyed(rep(), key))
    b = await client.post("/v1/customers", json={"kind": "company", "name": unique("B")}, headers=keyed(rep(), key))
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"] and REPLAYED not in b.headers


async def test_a_bad_key_is_refused_naming_the_header(client):
    for bad in ("", "x" * 256, "tab\there"):
        response = await client.post(
            "/v1/customers", json={"kind": "company", "name": unique("Bad key")}, headers=keyed(rep(), bad)
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"][0] == {
            "field": "Idempotency-Key",
            "reason": "must be 1 to 255 printable ASCII characters",
            "location": "header",
        }


async def test_a_refused_first_attempt_is_evaluated_again(client, customers_db):
    headers, key, name = rep(), unique("key"), unique("Retry after 422")
    refused = await client.post(
        "/v1/customers", json={"kind": "company", "name": name, "tier": "Z"}, headers=keyed(headers, key)
    )
    assert refused.status_code == 422
    fixed = await client.post("/v1/customers", json={"kind": "company", "name": name}, headers=keyed(headers, key))
    assert fixed.status_code == 201 and REPLAYED not in fixed.headers
    assert await customers_db["customers"].count_documents({"name": name}) == 1


async def test_racing_attempts_with_one_key_make_one_customer(client, customers_db):
    headers, key, name = rep(), unique("key"), unique("Race")
    body = {"kind": "company", "name": name}
    answers = await asyncio.gather(
        *(client.post("/v1/customers", json=body, headers=keyed(headers, key)) for _ in range(6))
    )
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(REPLAYED in a.headers for a in answers) == 5
    assert await customers_db["customers"].count_documents({"name": name}) == 1


async def test_copy_with_a_key(client, customers_db):
    headers = rep()
    original = await client.post("/v1/customers", json={"kind": "company", "name": unique("Original")}, headers=headers)
    key, name = unique("key"), unique("Copy")
    path = f"/v1/customers/{original.json()['id']}/copy"
    first = await client.post(path, json={"name": name}, headers=keyed(headers, key))
    assert first.status_code == 201, first.text
    same_answer(first, await client.post(path, json={"name": name}, headers=keyed(headers, key)))
    assert await customers_db["customers"].count_documents({"name": name}) == 1


async def test_contact_with_a_key_is_added_once(client, customers_db):
    headers = rep()
    customer = await client.post("/v1/customers", json={"kind": "company", "name": unique("Contacts")}, headers=headers)
    path, key = f"/v1/customers/{customer.json()['id']}/contacts", unique("key")
    sent = {**keyed(headers, key), "If-Match": customer.headers["ETag"]}
    first = await client.post(path, json={"name": "王经理", "role": "decision_maker"}, headers=sent)
    assert first.status_code == 201, first.text
    # The retry carries the If-Match the first attempt made stale: it still gets the first outcome.
    second = await client.post(path, json={"name": "王经理", "role": "decision_maker"}, headers=sent)
    assert second.status_code == 201 and second.json() == first.json() and second.headers[REPLAYED] == "true"
    racing = await asyncio.gather(
        *(client.post(path, json={"name": "李工"}, headers=keyed(headers, "race-" + key)) for _ in range(4))
    )
    assert {r.status_code for r in racing} == {201} and len({r.json()["contact_id"] for r in racing}) == 1
    stored = await customers_db["customers"].find_one({"_id": customer.json()["id"]})
    assert sorted(c["name"] for c in stored["contacts"]) == ["李工", "王经理"]
    other = await client.post(path, json={"name": "赵总"}, headers=keyed(headers, key))
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_import_with_a_key_imports_once_even_after_an_interrupted_attempt(client, customers_db):
    headers, key, tag = rep(), unique("key"), unique("imp")
    names = [unique("导入") + " 有限公司" for _ in range(3)]
    csv = ("名称,标签\n" + "".join(f"{n},{tag}\n" for n in names)).encode()
    sent = {**keyed(headers, key), "Content-Type": "text/csv"}
    first = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=csv, headers=sent)
    assert first.status_code == 200, first.text
    assert first.json()["imported"] == 3
    second = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=csv, headers=sent)
    assert second.json() == first.json() and second.headers[REPLAYED] == "true"

    # An attempt killed after its rows were stored but before its report was kept: the retry
    # counts those rows as imported, by the same ids, and creates none again.
    await customers_db["customer_imports"].delete_many({"report.created_ids": first.json()["created_ids"][0]})
    resumed = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=csv, headers=sent)
    assert resumed.status_code == 200 and resumed.json() == first.json(), resumed.text
    # Recorded for the audit log once (crm.customer_import.completed), under the key's id.
    assert await customers_db["import_records"].count_documents({"by": _sub(headers)}) == 1
    assert await customers_db["customers"].count_documents({"tags": {"$in": [tag]}}) == 3

    other = csv + f"{unique('另一家')},{tag}\n".encode()
    refused = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=other, headers=sent)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_every_creating_post_declares_the_header(client):
    spec = (await client.get("/openapi.json")).json()
    for path in (
        "/v1/customers",
        "/v1/customers/import",
        "/v1/customers/{customer_id}/copy",
        "/v1/customers/{customer_id}/contacts",
    ):
        params = spec["paths"][path]["post"]["parameters"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params), path


def _sub(headers: dict[str, str]) -> str:
    """The user id in a test token."""
    import jwt

    token = headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])
