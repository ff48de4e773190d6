"""Data scopes from role definitions in the pool service: the recycling rules a custom role with
pool:rules manages and sees follow its ``pool`` scope (department: its own department's rule,
not a sub-department's nor a sibling's; the global rule only with a scope of all); a role with
pool:rules and scope "own" manages and sees none."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import define_role

ADMIN = auth("admin-1", ["admin"], "/hq")


def body(path: str | None) -> dict[str, Any]:
    return {"name": f"rule {path}", "department_path": path, "no_interaction_days": 30, "warn_days": 3}


async def test_department_and_own_pool_scopes_over_rules(pool_client: Any, pool_app: FastAPI) -> None:
    dept_role, own_role = unique("dept-pool"), unique("own-pool")
    await define_role(pool_app, dept_role, ["pool:rules"], {"pool": "department"})
    await define_role(pool_app, own_role, ["pool:rules"], {"pool": "own"})
    root = f"/{unique('p')}"
    mine, child, sibling = f"{root}/east", f"{root}/east/team-1", f"{root}/west"
    lead = auth(unique("lead"), [dept_role], mine)
    loner = auth(unique("loner"), [own_role], mine)

    r = await pool_client.post("/v1/pool/rules", json=body(mine), headers=lead)
    assert r.status_code == 201, r.text
    own_rule = r.json()["rule_id"]
    for path in (child, sibling):
        r = await pool_client.post("/v1/pool/rules", json=body(path), headers=lead)
        assert r.status_code == 403, (path, r.text)
        r = await pool_client.post("/v1/pool/rules", json=body(path), headers=ADMIN)
        assert r.status_code == 201, r.text
    r = await pool_client.post("/v1/pool/rules", json=body(mine), headers=loner)
    assert r.status_code == 403, r.text

    listed = await pool_client.get("/v1/pool/rules", headers=lead)
    assert listed.status_code == 200, listed.text
    paths = {rule["department_path"] for rule in listed.json()}
    assert mine in paths and child not in paths and sibling not in paths
    assert (await pool_client.get(f"/v1/pool/rules/{own_rule}", headers=lead)).status_code == 200
    assert (await pool_client.get(f"/v1/pool/rules/{own_rule}", headers=loner)).status_code == 404
    loners = await pool_client.get("/v1/pool/rules", headers=loner)
    assert loners.status_code == 200 and loners.json() == []
