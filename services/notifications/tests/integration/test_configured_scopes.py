"""Data scopes from role definitions for webhooks: a subscription belongs to the account that
made it and carries no department, so a custom role with webhooks:manage and scope "all" sees and
changes every subscription, and with any narrower scope only its holder's own."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import define_role


async def test_webhooks_scope_own_and_all(client: httpx.AsyncClient, app: FastAPI) -> None:
    own_role, all_role = unique("own-hooks"), unique("all-hooks")
    await define_role(app, own_role, ["webhooks:manage"], {"webhooks": "department"})  # no department on a hook
    await define_role(app, all_role, ["webhooks:manage"], {"webhooks": "all"})
    mine = auth(unique("sys"), [own_role], "/hq/east")
    colleague = auth(unique("sys"), [own_role], "/hq/east")  # same department: still not theirs
    overseer = auth(unique("ops"), [all_role], "/hq")

    async def create(headers: dict[str, str]) -> dict[str, Any]:
        body = {"url": "http://127.0.0.1:9/erp", "event_types": ["crm.customer.*"], "description": unique("d")}
        r = await client.post("/v1/webhooks", json=body, headers=headers)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    own_hook = await create(mine)
    other_hook = await create(colleague)

    assert (await client.get(f"/v1/webhooks/{own_hook['id']}", headers=mine)).status_code == 200
    assert (await client.get(f"/v1/webhooks/{other_hook['id']}", headers=mine)).status_code == 404
    listed = await client.get("/v1/webhooks", params={"limit": 500}, headers=mine)
    assert listed.status_code == 200, listed.text
    ids = {h["id"] for h in listed.json()["items"]}
    assert own_hook["id"] in ids and other_hook["id"] not in ids

    assert (await client.get(f"/v1/webhooks/{other_hook['id']}", headers=overseer)).status_code == 200
    listed = await client.get("/v1/webhooks", params={"limit": 500}, headers=overseer)
    assert {own_hook["id"], other_hook["id"]} <= {h["id"] for h in listed.json()["items"]}
    for headers, hook in ((mine, own_hook), (colleague, other_hook)):
        got = await client.get(f"/v1/webhooks/{hook['id']}", headers=headers)
        r = await client.delete(f"/v1/webhooks/{hook['id']}", headers={**headers, "If-Match": got.headers["etag"]})
        assert r.status_code in (200, 204), r.text
