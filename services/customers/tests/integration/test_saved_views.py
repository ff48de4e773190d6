"""Saved list views (/v1/customer-views): each person's own, one name once per person."""

from __future__ import annotations

import httpx

from crm_platform.testing.fixtures import auth, unique


async def test_a_view_name_is_taken_once_per_person_and_views_are_private(client: httpx.AsyncClient) -> None:
    me = auth(unique("u"), ["rep"], department_path="/hq")
    other = auth(unique("u"), ["rep"], department_path="/hq")
    body = {"name": "我的A类客户", "query": {"tier": "A", "sort": "-tier,name"}}

    first = await client.post("/v1/customer-views", json=body, headers=me)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/customer-views", json=body, headers=me)
    assert again.status_code == 409, again.text
    assert (await client.post("/v1/customer-views", json=body, headers=other)).status_code == 201

    mine = (await client.get("/v1/customer-views", headers=me)).json()
    assert [(v["name"], v["query"]) for v in mine] == [(body["name"], body["query"])]
    assert (await client.delete(f"/v1/customer-views/{first.json()['id']}", headers=other)).status_code == 404
    assert (await client.delete(f"/v1/customer-views/{first.json()['id']}", headers=me)).status_code == 204
    assert (await client.post("/v1/customer-views", json=body, headers=me)).status_code == 201
