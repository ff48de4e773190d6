"""Duplicate checks (查重) and "first entered owns" (谁先录入归谁)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from crm_customers.domain.uscc import organisation_code_check_character, uscc_check_character
from crm_platform.testing.fixtures import auth, unique

PROBLEM = "application/problem+json"
FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def new_uscc() -> str:
    head = "91" + "".join(random.choices("0123456789", k=6))
    org = "".join(random.choices("0123456789ABCDEFGHJKLMNPQRTUWXY", k=8))
    first17 = head + org + organisation_code_check_character(org)
    return first17 + uscc_check_character(first17)


def new_mobile() -> str:
    return "139" + "".join(random.choices("0123456789", k=8))


def cjk(n: int) -> str:
    """Random common ideographs: names whose character bigrams no other test shares."""
    return "".join(chr(random.randint(0x4E00, 0x9FA5)) for _ in range(n))


def rep_headers(user: str | None = None, dept: str | None = None, roles: list[str] | None = None) -> dict[str, str]:
    return auth(user or unique("rep"), roles, department_path=dept or f"/{unique('d')}")


async def create(client: Any, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    r = await client.post("/v1/customers", json=payload, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def assert_duplicate(r: Any, existing: dict[str, Any], matched_on: str) -> dict[str, Any]:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["type"] == "urn:crm:problem:duplicate"
    first = body["existing"][0]
    assert first["customer_id"] == existing["id"]
    assert first["owner_id"] == existing["owner_id"]
    assert matched_on in first["matched_on"], first
    assert existing["id"] in body["detail"]
    if existing["owner_id"]:
        assert f"owned by {existing['owner_id']}" in body["detail"]
    return body


async def test_same_company_name_written_differently_is_a_duplicate(client, customers_db):
    owner = unique("rep")
    core = unique("huaxin").replace("-", "")  # e.g. huaxin3f9a0c...
    first = await create(client, {"kind": "company", "name": f"华信{core}科技有限公司"}, rep_headers(owner))
    variants = [
        f"华信{core.upper()}科技有限公司",  # case
        "华信" + "".join(FULL_WIDTH[c] for c in core) + "科技有限公司",  # full-width letters and digits
        f"华信{core}科技",  # no legal form
        f"华信{core}科技股份有限公司",  # another legal form
        f"华信 {core} 科技（有限公司）",  # spaces and full-width brackets
        f"华信{core}科技 Co., Ltd.",  # English legal form
    ]
    for name in variants:
        r = await client.post("/v1/customers", json={"kind": "company", "name": name}, headers=rep_headers())
        body = assert_duplicate(r, first, "name")
        assert {"field": "name", "reason": f"matches existing customer {first['id']}", "location": "body"} in body[
            "errors"
        ]
    assert (
        await customers_db["customers"].count_documents({"kind": "company", "name": {"$regex": core, "$options": "i"}})
        == 1
    )


async def test_branch_is_not_a_duplicate_of_its_parent(client):
    core = cjk(4)
    await create(client, {"kind": "company", "name": f"{core}有限公司"}, rep_headers())
    await create(client, {"kind": "company", "name": f"{core}有限公司上海分公司"}, rep_headers())


async def test_same_uscc_is_a_duplicate(client):
    uscc = new_uscc()
    first = await create(client, {"kind": "company", "name": unique("Alpha"), "uscc": uscc}, rep_headers())
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Totally Different"), "uscc": uscc.lower()},
        headers=rep_headers(),
    )
    assert_duplicate(r, first, "uscc")


async def test_same_phone_is_a_duplicate_including_a_contacts_phone(client):
    customer_phone, contact_phone = new_mobile(), new_mobile()
    first = await create(
        client,
        {
            "kind": "company",
            "name": unique("Beta"),
            "phones": [customer_phone],
            "contacts": [{"name": "赵六", "phones": [contact_phone]}],
        },
        rep_headers(),
    )
    # The customer's own phone, typed differently, on a person.
    r = await client.post(
        "/v1/customers",
        json={
            "kind": "person",
            "name": unique("Someone"),
            "phones": [f"+86-{customer_phone[:3]}-{customer_phone[3:]}"],
        },
        headers=rep_headers(),
    )
    assert_duplicate(r, first, "phones")
    # The contact's phone as the new customer's phone.
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Gamma"), "phones": [contact_phone]},
        headers=rep_headers(),
    )
    assert_duplicate(r, first, "phones")
    # The contact's phone on one of the new customer's contacts.
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Delta"), "contacts": [{"name": "x", "phones": [contact_phone]}]},
        headers=rep_headers(),
    )
    assert_duplicate(r, first, "phones")


async def test_same_email_is_a_duplicate(client):
    email = f"{unique('buyer')}@example.com"
    first = await create(client, {"kind": "person", "name": unique("Buyer"), "emails": [email]}, rep_headers())
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Epsilon"), "emails": [email.upper()]},
        headers=rep_headers(),
    )
    assert_duplicate(r, first, "emails")


async def test_second_rep_is_told_the_owner_even_without_seeing_the_record(client, customer_events):
    owner_a, dept_a = unique("rep-a"), f"/{unique('d')}"
    rep_b, dept_b = unique("rep-b"), f"/{unique('d')}"
    name = unique("Zeta") + " Co., Ltd."
    first = await create(client, {"kind": "company", "name": name}, rep_headers(owner_a, dept_a))
    assert (await client.get(f"/v1/customers/{first['id']}", headers=rep_headers(rep_b, dept_b))).status_code == 404
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": name.upper()}, headers=rep_headers(rep_b, dept_b)
    )
    body = assert_duplicate(r, first, "name")
    assert body["existing"][0]["status"] == "active" and body["existing"][0]["in_pool"] is False
    # Nothing was created for rep B.
    listed = await client.get("/v1/customers", params={"owner_id": rep_b}, headers=rep_headers(rep_b, dept_b))
    assert listed.status_code == 200 and listed.json()["items"] == []
    # ... and the only created event for that name is rep A's.
    await customer_events.wait_for(type="crm.customer.created", subject=first["id"])
    marker = await create(client, {"kind": "company", "name": unique("Marker")}, rep_headers(rep_b, dept_b))
    await customer_events.wait_for(type="crm.customer.created", subject=marker["id"])
    named = [
        r
        for r in customer_events.matching(type="crm.customer.created")
        if r.event["data"]["customer"]["name"].lower() == name.lower()
    ]
    assert [r.event["subject"] for r in named] == [first["id"]]


async def test_duplicate_check_endpoint_reports_exact_and_similar(client):
    core = cjk(6)
    uscc, phone, email = new_uscc(), new_mobile(), f"{unique('dc')}@example.com"
    owner = unique("rep")
    exact = await create(
        client,
        {"kind": "company", "name": f"{core}有限公司", "uscc": uscc, "phones": [phone], "emails": [email]},
        rep_headers(owner),
    )
    similar = await create(client, {"kind": "company", "name": f"{core}发展有限公司"}, rep_headers())
    unrelated = await create(client, {"kind": "company", "name": f"{cjk(6)}有限公司"}, rep_headers())

    r = await client.post(
        "/v1/customers/duplicate-check",
        json={
            "kind": "company",
            "name": f"{core}（有限公司）",
            "uscc": uscc,
            "phones": [phone],
            "emails": [email.upper()],
        },
        headers=rep_headers(),
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert [m["customer_id"] for m in report["exact"]] == [exact["id"]]
    assert set(report["exact"][0]["matched_on"]) == {"name", "uscc", "phones", "emails"}
    assert report["exact"][0]["owner_id"] == owner
    similar_ids = [m["customer_id"] for m in report["similar"]]
    assert similar["id"] in similar_ids
    assert exact["id"] not in similar_ids and unrelated["id"] not in similar_ids
    score = next(m["similarity"] for m in report["similar"] if m["customer_id"] == similar["id"])
    assert 85 <= score < 100

    # A name alone: the fuzzy match still finds both, the exact one with score 100 not repeated as similar.
    r = await client.post("/v1/customers/duplicate-check", json={"name": f"{core}发展"}, headers=rep_headers())
    assert r.status_code == 200
    assert [m["customer_id"] for m in r.json()["exact"]] == []  # no kind given: names match companies only by kind
    assert {similar["id"], exact["id"]} <= {m["customer_id"] for m in r.json()["similar"]}

    # Nothing to check with → 422; a bad phone → 422 naming it.
    r = await client.post("/v1/customers/duplicate-check", json={}, headers=rep_headers())
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    r = await client.post(
        "/v1/customers/duplicate-check", json={"phones": ["12"], "uscc": "123"}, headers=rep_headers()
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"phones[0]", "uscc"}


async def test_concurrent_creates_of_the_same_company_one_wins(client, customers_db, customer_events):
    name = unique("Race") + " 有限公司"
    headers = [rep_headers() for _ in range(5)]
    responses = await asyncio.gather(
        *(client.post("/v1/customers", json={"kind": "company", "name": name}, headers=h) for h in headers)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 409:
            assert r.headers["content-type"].startswith(PROBLEM)
            body = r.json()
            assert winner["id"] in body["detail"], body
            assert body["existing"][0]["customer_id"] == winner["id"]
            assert body["existing"][0]["owner_id"] == winner["owner_id"]
    assert await customers_db["customers"].count_documents({"name": name}) == 1
    await customer_events.wait_for(type="crm.customer.created", subject=winner["id"])


async def test_concurrent_creates_with_the_same_uscc_one_wins(client, customers_db):
    uscc = new_uscc()
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/customers", json={"kind": "company", "name": unique("U"), "uscc": uscc}, headers=rep_headers()
            )
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409], [r.text for r in responses]
    assert await customers_db["customers"].count_documents({"uscc": uscc}) == 1
    for r in responses:
        assert r.headers["content-type"].startswith(PROBLEM if r.status_code == 409 else "application/json")


async def test_customer_in_the_recycle_bin_still_counts_as_existing(client):
    dept = f"/{unique('d')}"
    rep = unique("rep")
    name = unique("Recycled") + " Ltd"
    first = await create(client, {"kind": "company", "name": name}, rep_headers(rep, f"{dept}/team"))
    deleted = await client.delete(
        f"/v1/customers/{first['id']}", params={"reason": "test"}, headers=rep_headers(unique("mgr"), dept, ["manager"])
    )
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "deleted"
    r = await client.post("/v1/customers", json={"kind": "company", "name": name}, headers=rep_headers())
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["existing"][0]["customer_id"] == first["id"]
    assert body["existing"][0]["status"] == "deleted"
    assert "recycle bin" in body["detail"]
    r = await client.post(
        "/v1/customers/duplicate-check", json={"kind": "company", "name": name}, headers=rep_headers()
    )
    assert [(m["customer_id"], m["status"]) for m in r.json()["exact"]] == [(first["id"], "deleted")]


async def test_customer_in_the_pool_is_reported_as_in_the_pool(client):
    rep, dept = unique("rep"), f"/{unique('d')}"
    name = unique("Pooled") + " Inc."
    first = await create(client, {"kind": "company", "name": name}, rep_headers(rep, dept))
    released = await client.post(
        f"/v1/customers/{first['id']}/release", json={"reason": "no budget"}, headers=rep_headers(rep, dept)
    )
    assert released.status_code == 200, released.text
    r = await client.post("/v1/customers", json={"kind": "company", "name": name}, headers=rep_headers())
    assert r.status_code == 409
    body = r.json()
    assert body["existing"][0]["in_pool"] is True and body["existing"][0]["owner_id"] is None
    assert "public pool" in body["detail"]


async def test_patch_onto_another_customers_keys_is_refused(client):
    rep, dept = unique("rep"), f"/{unique('d')}"
    phone = new_mobile()
    first = await create(client, {"kind": "company", "name": unique("Eta"), "phones": [phone]}, rep_headers(rep, dept))
    second = await create(client, {"kind": "company", "name": unique("Theta")}, rep_headers(rep, dept))
    r = await client.patch(
        f"/v1/customers/{second['id']}",
        json={"name": first["name"].upper()},
        headers={**rep_headers(rep, dept), "If-Match": '"1"'},
    )
    assert_duplicate(r, first, "name")
    r = await client.patch(
        f"/v1/customers/{second['id']}", json={"phones": [phone]}, headers={**rep_headers(rep, dept), "If-Match": '"1"'}
    )
    assert_duplicate(r, first, "phones")
    got = await client.get(f"/v1/customers/{second['id']}", headers=rep_headers(rep, dept))
    assert got.json()["version"] == 1 and got.json()["name"] == second["name"]


async def test_a_similar_name_is_found_among_many_sharing_a_common_bigram(client, customers_db):
    """More than the shortlist's 500 customers share the bigram the similar one also has: the
    shortlist then keeps those sharing the most bigrams, so the similar name is not left out."""
    from datetime import UTC, datetime

    from crm_customers.domain import rules
    from crm_customers.domain.model import CustomerCreate
    from crm_platform.auth import Principal, Role

    common = cjk(2)
    owner = Principal(user_id=unique("bulk"), roles=frozenset({Role.rep}), department_path=f"/{unique('d')}")
    crowd = []
    for _ in range(650):
        data = CustomerCreate.model_validate({"kind": "company", "name": f"{common}{cjk(4)}"})
        doc = rules.new_customer(data, owner, datetime.now(UTC))
        crowd.append(rules.refresh_derived(doc))
    await customers_db["customers"].insert_many(crowd)
    core = cjk(5)
    similar = await create(client, {"kind": "company", "name": f"{common}{core}精密机械"}, rep_headers())

    r = await client.post(
        "/v1/customers/duplicate-check",
        json={"kind": "company", "name": f"{common}{core}精密机器"},
        headers=rep_headers(),
    )
    assert r.status_code == 200, r.text
    assert similar["id"] in [m["customer_id"] for m in r.json()["similar"]]
