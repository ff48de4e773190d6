"""``POST /v1/customers/lookup``: many customers by id in one call, only those the caller may see
(the same answer as ``GET /v1/customers/{id}`` one by one), in the order asked, bounded."""

from __future__ import annotations

from typing import Any

from crm_platform.testing.fixtures import auth, unique

PROBLEM = "application/problem+json"


def user(dept: str, roles: list[str] | None = None) -> dict[str, str]:
    return auth(unique("rep"), roles or ["rep"], department_path=dept)


async def create(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.post("/v1/customers", json={"kind": "company", "name": unique("查询")}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_lookup_answers_what_the_caller_may_see_in_the_order_asked(client: Any) -> None:
    root = f"/{unique('x')}"
    mine, colleague, stranger = user(f"{root}/a"), user(f"{root}/a"), user(f"/{unique('z')}")
    manager = user(root, ["manager"])
    a, b = await create(client, mine), await create(client, mine)
    theirs = await create(client, colleague)
    hidden = await create(client, stranger)
    binned = await create(client, mine)
    deleted = await client.delete(f"/v1/customers/{binned['id']}", headers=manager)
    assert deleted.status_code == 200, deleted.text

    ids = [b["id"], "no-such-customer", a["id"], theirs["id"], hidden["id"], binned["id"], b["id"]]
    r = await client.post("/v1/customers/lookup", json={"ids": ids}, headers=mine)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["id"] for c in body["items"]] == [b["id"], a["id"]]
    assert [c["name"] for c in body["items"]] == [b["name"], a["name"]]
    assert body["missing"] == ["no-such-customer", theirs["id"], hidden["id"], binned["id"]]

    # The same as asking one by one: the manager sees the subtree and the recycle bin, not the stranger's.
    r = await client.post("/v1/customers/lookup", json={"ids": ids}, headers=manager)
    assert [c["id"] for c in r.json()["items"]] == [b["id"], a["id"], theirs["id"], binned["id"]]
    for customer_id in ids:
        one = await client.get(f"/v1/customers/{customer_id}", headers=manager)
        assert (one.status_code == 200) == (customer_id in {c["id"] for c in r.json()["items"]}), customer_id


async def test_lookup_is_bounded_and_refuses_bad_bodies_at_the_field(client: Any) -> None:
    headers = user(f"/{unique('x')}")
    for body, field in (
        ({"ids": []}, "ids"),
        ({"ids": [f"c{i}" for i in range(101)]}, "ids"),
        ({"ids": [""]}, "ids[0]"),
        ({}, "ids"),
    ):
        r = await client.post("/v1/customers/lookup", json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == PROBLEM
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
    r = await client.post("/v1/customers/lookup", json={"ids": ["x"]})
    assert r.status_code == 401, r.text
