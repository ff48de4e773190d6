"""Creating customers: what is accepted, and what is refused with a 422/401 that names the field.

Every refused create must leave nothing behind: no document in MongoDB and no event on
``crm.customers.v1``. "No event" is checked after a marker: a valid customer created
afterwards whose own event we wait for, so the relay has had its chance to publish.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from crm_customers.domain.uscc import organisation_code_check_character, uscc_check_character
from crm_platform.testing.fixtures import auth, make_token, unique

PROBLEM = "application/problem+json"
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def new_uscc() -> str:
    """A random, valid USCC (both check characters right), so no two tests share one."""
    head = "91" + "".join(random.choices("0123456789", k=6))
    org = "".join(random.choices("0123456789ABCDEFGHJKLMNPQRTUWXY", k=8))
    first17 = head + org + organisation_code_check_character(org)
    return first17 + uscc_check_character(first17)


def new_mobile() -> str:
    return "139" + "".join(random.choices("0123456789", k=8))


def created_events_with_tag(customer_events: Any, tag: str) -> list[dict[str, Any]]:
    out = []
    for record in customer_events.records:
        try:
            event = record.event
        except ValueError:
            continue
        customer = (event.get("data") or {}).get("customer") or {}
        if tag in (customer.get("tags") or []):
            out.append(event)
    return out


async def assert_nothing_written(client: Any, customer_events: Any, customers_db: Any, tag: str) -> None:
    """No document and no event carries ``tag``; checked after a later customer's event arrived."""
    assert await customers_db["customers"].find_one({"tags": {"$in": [tag]}}) is None
    marker_rep, marker_tag = unique("rep-marker"), unique("marker")
    marker = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Marker"), "tags": [marker_tag]},
        headers=auth(marker_rep, department_path=f"/{unique('d')}"),
    )
    assert marker.status_code == 201, marker.text
    await customer_events.wait_for(type="crm.customer.created", subject=marker.json()["id"])
    # The same query and the same event scan do find the marker: the checks below are not vacuous.
    assert await customers_db["customers"].find_one({"tags": {"$in": [marker_tag]}}) is not None
    assert len(created_events_with_tag(customer_events, marker_tag)) == 1
    assert created_events_with_tag(customer_events, tag) == []
    assert await customers_db["customers"].find_one({"tags": {"$in": [tag]}}) is None


def field_errors(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in body["errors"]}


# --- accepted ----------------------------------------------------------------------------------


async def test_create_company_with_everything(client, customer_events, customers_db):
    rep, dept = unique("rep"), f"/{unique('d')}/sales"
    uscc = new_uscc()
    mobile = new_mobile()
    name = unique("Acme")
    r = await client.post(
        "/v1/customers",
        json={
            "kind": "company",
            "name": f"  {name}  有限公司 ",
            "uscc": f"{uscc[:6]} {uscc[6:].lower()}",  # separators and lower case are normalised
            "industry": "manufacturing",
            "size": "21-100",
            "source": "exhibition",
            "tier": "A",
            "address": {"province": "浙江", "city": "杭州", "street": "文三路 1 号"},
            "tags": ["vip", "vip", " price  sensitive "],
            "phones": [f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"],
            "emails": ["Sales@Example.COM"],
            "contacts": [
                {
                    "name": "张三",
                    "role": "decision_maker",
                    "phones": [mobile[:3] + "-" + mobile[3:]],
                    "is_primary": True,
                },
                {"name": "李四", "role": "handler", "emails": ["li.si@example.com"]},
            ],
        },
        headers=auth(rep, department_path=dept),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["etag"] == '"1"'
    assert r.headers["location"] == f"/v1/customers/{body['id']}"
    assert body["name"] == f"{name} 有限公司"
    assert body["uscc"] == uscc
    assert body["phones"] == [f"+86{mobile}"]
    assert body["emails"] == ["sales@example.com"]
    assert body["tags"] == ["vip", "price sensitive"]
    assert body["owner_id"] == rep and body["department_path"] == dept
    assert body["lifecycle_stage"] == "prospect"
    assert body["status"] == "active" and body["in_pool"] is False and body["version"] == 1
    assert [c["role"] for c in body["contacts"]] == ["decision_maker", "handler"]
    assert body["contacts"][0]["phones"] == [f"+86{mobile}"]
    assert body["freshness"] == {"days_since_update": 0, "days_since_follow_up": None}

    stored = await customers_db["customers"].find_one({"_id": body["id"]})
    assert stored["uscc"] == uscc and stored["unique_uscc"] == uscc
    assert stored["match_phones"] == [f"+86{mobile}"]
    assert stored["match_emails"] == ["li.si@example.com", "sales@example.com"]

    [record] = await customer_events.wait_for(type="crm.customer.created", subject=body["id"])
    event = record.event
    assert record.key == body["id"].encode()
    assert event["source"] == "/crm/customers" and event["aggregateversion"] == 1 and event["actor"] == rep
    assert event["data"]["via"] == "api"
    assert event["data"]["customer"]["uscc"] == uscc
    assert event["data"]["customer"]["contact_count"] == 2
    assert {c["name"] for c in event["data"]["contacts"]} == {"张三", "李四"}


async def test_create_person(client, customer_events):
    rep = unique("rep")
    r = await client.post(
        "/v1/customers",
        json={
            "kind": "person",
            "name": unique("王五"),
            "phones": [new_mobile()],
            "emails": [f"{unique('w')}@example.cn"],
        },
        headers=auth(rep, department_path=f"/{unique('d')}"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "person" and body["uscc"] is None
    [record] = await customer_events.wait_for(type="crm.customer.created", subject=body["id"])
    assert record.event["data"]["customer"]["kind"] == "person"


async def test_two_people_with_the_same_name_are_not_duplicates(client):
    # Only companies are matched by name: two people called 张伟 are two people.
    name = unique("张伟")
    for _ in range(2):
        r = await client.post(
            "/v1/customers",
            json={"kind": "person", "name": name},
            headers=auth(unique("rep"), department_path=f"/{unique('d')}"),
        )
        assert r.status_code == 201, r.text


# --- refused with 422 ------------------------------------------------------------------------

BAD_USCC = "91350100M000100Y4X"  # the valid 91350100M000100Y43 with its check character changed


def _invalid_cases() -> list[Any]:
    return [
        pytest.param(lambda t: {"kind": "company", "tags": [t]}, "name", "field required", id="missing-name"),
        pytest.param(
            lambda t: {"kind": "company", "name": "   ", "tags": [t]}, "name", "must not be empty", id="blank-name"
        ),
        pytest.param(
            lambda t: {"kind": "company", "name": unique("Co"), "uscc": BAD_USCC, "tags": [t]},
            "uscc",
            "'3'",
            id="bad-uscc-check-char",
        ),
        pytest.param(
            lambda t: {"kind": "company", "name": unique("Co"), "uscc": "91350100M000100Y4", "tags": [t]},
            "uscc",
            "18 characters",
            id="short-uscc",
        ),
        pytest.param(
            lambda t: {"kind": "person", "name": unique("Person"), "uscc": "91110000600037341L", "tags": [t]},
            "uscc",
            "only companies",
            id="uscc-on-person",
        ),
        pytest.param(
            lambda t: {"kind": "company", "name": unique("Co"), "phones": ["12345"], "tags": [t]},
            "phones[0]",
            "not a valid phone number",
            id="bad-phone",
        ),
        pytest.param(
            lambda t: {
                "kind": "company",
                "name": unique("Co"),
                "contacts": [{"name": "x", "phones": ["138001380"]}],
                "tags": [t],
            },
            "contacts[0].phones[0]",
            "not a valid phone number",
            id="bad-contact-phone",
        ),
        pytest.param(
            lambda t: {"kind": "company", "name": unique("Co"), "emails": ["zhang@@example"], "tags": [t]},
            "emails[0]",
            "not a valid email address",
            id="bad-email",
        ),
        pytest.param(
            lambda t: {"kind": "company", "name": unique("Co"), "colour": "red", "tags": [t]},
            "colour",
            "extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            lambda t: {"kind": "company", "name": unique("Co"), "tier": "S", "tags": [t]},
            "tier",
            "'a', 'b' or 'c'",
            id="bad-tier",
        ),
        pytest.param(
            lambda t: {"kind": "shop", "name": unique("Co"), "tags": [t]},
            "kind",
            "'company' or 'person'",
            id="bad-kind",
        ),
        pytest.param(
            lambda t: {
                "kind": "company",
                "name": unique("Co"),
                "tags": [t],
                "contacts": [{"name": "a", "is_primary": True}, {"name": "b", "is_primary": True}],
            },
            "contacts",
            "more than one contact",
            id="two-primary-contacts",
        ),
        pytest.param(
            lambda t: {"kind": "company", "name": unique("Co"), "owner_id": "someone", "tags": [t]},
            "department_path",
            "required when owner_id",
            id="owner-without-department",
        ),
    ]


@pytest.mark.parametrize(("payload", "field", "reason"), _invalid_cases())
async def test_invalid_create_is_refused_with_the_field_and_reason(
    client, customer_events, customers_db, payload, field, reason
):
    tag = unique("refused")
    r = await client.post(
        "/v1/customers", json=payload(tag), headers=auth(unique("rep"), ["manager"], department_path=f"/{unique('d')}")
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == 422 and body["type"] == "urn:crm:problem:validation-failed"
    assert body["instance"] == "/v1/customers"
    errors = field_errors(body)
    assert field in errors, body
    assert reason in errors[field].lower(), errors[field]
    assert all(e["location"] == "body" for e in body["errors"])
    await assert_nothing_written(client, customer_events, customers_db, tag)


async def test_bad_uscc_reason_names_the_expected_check_character(client):
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Co"), "uscc": BAD_USCC},
        headers=auth(unique("rep"), department_path=f"/{unique('d')}"),
    )
    assert r.status_code == 422
    reason = field_errors(r.json())["uscc"]
    assert "'X'" in reason and "position 18" in reason and "give '3'" in reason


async def test_uscc_with_bad_organisation_check_character_is_refused(client):
    # Position 17 (GB 11714) wrong, position 18 recomputed so only the inner check fails.
    org = "M000100Y"
    wrong = "0" if organisation_code_check_character(org) != "0" else "1"
    first17 = "91350100" + org + wrong
    code = first17 + uscc_check_character(first17)
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Co"), "uscc": code},
        headers=auth(unique("rep"), department_path=f"/{unique('d')}"),
    )
    assert r.status_code == 422
    assert "position 17" in field_errors(r.json())["uscc"]


async def test_every_bad_field_is_reported_at_once(client):
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Co"), "phones": ["1", "+8613800138000"], "emails": ["x"], "tier": "Q"},
        headers=auth(unique("rep"), department_path=f"/{unique('d')}"),
    )
    assert r.status_code == 422
    assert {"phones[0]", "emails[0]", "tier"} <= set(field_errors(r.json()))


async def test_non_json_body_is_refused(client, customer_events, customers_db):
    tag = unique("refused")
    r = await client.post(
        "/v1/customers",
        content=f'{{"kind": "company", "name": "x", "tags": ["{tag}"]'.encode(),  # unterminated
        headers={**auth(unique("rep"), department_path=f"/{unique('d')}"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    errors = field_errors(r.json())
    assert "body" in errors and "json" in errors["body"].lower()
    await assert_nothing_written(client, customer_events, customers_db, tag)


async def test_a_json_array_body_is_refused(client):
    r = await client.post(
        "/v1/customers", json=[{"kind": "company"}], headers=auth(unique("rep"), department_path=f"/{unique('d')}")
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM)


# --- refused with 401 / 403 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, id="garbage-token"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="wrong-scheme"),
        pytest.param(
            {"Authorization": f"Bearer {make_token('rep-x', secret='another-secret-of-enough-length-000')}"},
            id="wrong-secret",
        ),
    ],
)
async def test_create_without_a_valid_token_is_401(client, customer_events, customers_db, headers):
    tag = unique("refused")
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": unique("Co"), "tags": [tag]}, headers=headers
    )
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.headers["www-authenticate"].startswith("Bearer")
    if headers:
        assert "error=" in r.headers["www-authenticate"]
    assert r.json()["status"] == 401
    await assert_nothing_written(client, customer_events, customers_db, tag)


async def test_expired_token_is_401(client):
    from datetime import UTC, datetime, timedelta

    from crm_platform.auth import mint_token
    from crm_platform.testing.fixtures import TEST_JWT_SECRET

    token = mint_token(
        secret_or_private_key=TEST_JWT_SECRET,
        user_id="rep-old",
        roles=["rep"],
        now=datetime.now(UTC) - timedelta(hours=10),
        ttl=timedelta(hours=1),
    )
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": unique("Co")}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert "expired" in r.json()["detail"]


async def test_rep_cannot_create_for_someone_else(client, customer_events, customers_db):
    tag = unique("refused")
    dept = f"/{unique('d')}"
    r = await client.post(
        "/v1/customers",
        json={
            "kind": "company",
            "name": unique("Co"),
            "owner_id": unique("other"),
            "department_path": dept,
            "tags": [tag],
        },
        headers=auth(unique("rep"), department_path=dept),
    )
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    await assert_nothing_written(client, customer_events, customers_db, tag)


async def test_manager_creates_for_a_rep_in_their_department(client, customer_events):
    dept = f"/{unique('d')}"
    owner = unique("rep")
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Co"), "owner_id": owner, "department_path": f"{dept}/team"},
        headers=auth(unique("mgr"), ["manager"], department_path=dept),
    )
    assert r.status_code == 201, r.text
    assert r.json()["owner_id"] == owner and r.json()["department_path"] == f"{dept}/team"
    outside = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": unique("Co"), "owner_id": owner, "department_path": f"/{unique('elsewhere')}"},
        headers=auth(unique("mgr"), ["manager"], department_path=dept),
    )
    assert outside.status_code == 403
