"""Rules over HTTP: who may manage them, validation, ETag/If-Match, history and their events."""

from __future__ import annotations

from typing import Any

from crm_platform.testing.fixtures import EventCollector, auth, unique

ADMIN = auth("admin-1", ["admin"], "/hq")


def body(path: str | None, **kw: Any) -> dict[str, Any]:
    return {"name": f"rule {path}", "department_path": path, "no_interaction_days": 30, "warn_days": 3, **kw}


async def test_admin_creates_reads_changes_and_deletes_a_department_rule(
    pool_client: Any, pool_events: EventCollector
) -> None:
    path = f"/{unique('d')}"
    r = await pool_client.post(
        "/v1/pool/rules", json=body(path, exempt_tags=["key-account"], cooldown_days=7), headers=ADMIN
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    assert r.headers["etag"] == '"1"'
    assert r.headers["location"] == f"/v1/pool/rules/{rule['rule_id']}"
    assert (rule["department_path"], rule["exempt_tags"], rule["cooldown_days"], rule["claim_scope"]) == (
        path,
        ["key-account"],
        7,
        "department",
    )

    r = await pool_client.patch(f"/v1/pool/rules/{rule['rule_id']}", json={"warn_days": 5}, headers=ADMIN)
    assert r.status_code == 428
    r = await pool_client.patch(
        f"/v1/pool/rules/{rule['rule_id']}", json={"warn_days": 5}, headers={**ADMIN, "If-Match": '"9"'}
    )
    assert r.status_code == 412
    r = await pool_client.patch(
        f"/v1/pool/rules/{rule['rule_id']}",
        json={"warn_days": 5, "claim_scope": "company"},
        headers={**ADMIN, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["warn_days"], r.json()["claim_scope"], r.headers["etag"]) == (5, "company", '"2"')

    r = await pool_client.get(f"/v1/pool/rules/{rule['rule_id']}/history", headers=ADMIN)
    assert r.status_code == 200
    history = r.json()
    assert [h["type"] for h in history if h["type"] == "crm.pool.rules_changed"] == ["crm.pool.rules_changed"] * 2
    changed = next(h for h in history if h["summary"] == "rule changed")
    assert {"field": "warn_days", "old": 3, "new": 5} in changed["changes"]
    assert changed["actor"] == "admin-1"

    claim = await pool_events.wait_for(2, type="crm.pool.claim_rules_changed", subject=rule["rule_id"])
    assert [c.event["data"]["claim_rules"]["claim_scope"] for c in claim] == ["department", "company"]

    r = await pool_client.delete(f"/v1/pool/rules/{rule['rule_id']}", headers={**ADMIN, "If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["deleted"] is True
    deleted = await pool_events.wait_for(1, type="crm.pool.rules_changed", subject=rule["rule_id"], aggregateversion=3)
    assert deleted[0].event["data"]["action"] == "deleted"
    # The scope is free again.
    r = await pool_client.post("/v1/pool/rules", json=body(path), headers=ADMIN)
    assert r.status_code == 201, r.text


async def test_one_rule_per_scope_and_bad_rules_are_refused(pool_client: Any) -> None:
    path = f"/{unique('d')}"
    assert (await pool_client.post("/v1/pool/rules", json=body(path), headers=ADMIN)).status_code == 201
    r = await pool_client.post("/v1/pool/rules", json=body(path), headers=ADMIN)
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "department_path"
    r = await pool_client.post("/v1/pool/rules", json=body(f"/{unique('d')}", warn_days=30), headers=ADMIN)
    assert r.status_code == 422
    r = await pool_client.post(
        "/v1/pool/rules", json={"name": "x", "department_path": f"/{unique('d')}", "warn_days": 1}, headers=ADMIN
    )
    assert r.status_code == 422
    r = await pool_client.post("/v1/pool/rules", json=body("no-slash"), headers=ADMIN)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "department_path"
    r = await pool_client.post("/v1/pool/rules", json=body(f"/{unique('d')}", no_interaction_days=0), headers=ADMIN)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_managers_manage_their_subtree_only_and_reps_none(pool_client: Any) -> None:
    dept = f"/{unique('d')}"
    manager = auth(unique("mgr"), ["manager"], dept)
    r = await pool_client.post("/v1/pool/rules", json=body(f"{dept}/team"), headers=manager)
    assert r.status_code == 201, r.text
    rule_id = r.json()["rule_id"]
    assert (
        await pool_client.post("/v1/pool/rules", json=body(f"/{unique('other')}"), headers=manager)
    ).status_code == 403
    assert (await pool_client.post("/v1/pool/rules", json=body(None), headers=manager)).status_code == 403
    rep = auth(unique("rep"), ["rep"], dept)
    assert (await pool_client.post("/v1/pool/rules", json=body(f"{dept}/x"), headers=rep)).status_code == 403
    assert (await pool_client.get("/v1/pool/rules", headers=rep)).status_code == 403
    listed = (await pool_client.get("/v1/pool/rules", headers=manager)).json()
    assert rule_id in [r["rule_id"] for r in listed]
    outsider = auth(unique("mgr"), ["manager"], f"/{unique('else')}")
    assert (await pool_client.get(f"/v1/pool/rules/{rule_id}", headers=outsider)).status_code == 404
    assert (await pool_client.post("/v1/pool/run", headers=manager)).status_code == 403


async def test_the_global_rule_is_for_admins_and_unique(pool_client: Any) -> None:
    # company scope and no cool-down: this suite shares the broker with the customers service's.
    r = await pool_client.post(
        "/v1/pool/rules",
        json=body(None, no_interaction_days=3650, warn_days=1, cooldown_days=0, claim_scope="company"),
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    try:
        again = await pool_client.post("/v1/pool/rules", json=body(None), headers=ADMIN)
        assert again.status_code == 409
    finally:
        deleted = await pool_client.delete(
            f"/v1/pool/rules/{r.json()['rule_id']}", headers={**ADMIN, "If-Match": '"1"'}
        )
        assert deleted.status_code == 200


async def test_max_held_is_validated_kept_in_the_history_and_published(
    pool_client: Any, pool_events: EventCollector
) -> None:
    path = f"/{unique('d')}"
    for bad in (0, -3, "many", 1.5):
        r = await pool_client.post("/v1/pool/rules", json=body(path, max_held=bad), headers=ADMIN)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == ["max_held"], r.json()

    r = await pool_client.post("/v1/pool/rules", json=body(path, max_held=25), headers=ADMIN)
    assert r.status_code == 201, r.text
    rule_id = r.json()["rule_id"]
    assert r.json()["max_held"] == 25
    assert (await pool_client.get(f"/v1/pool/rules/{rule_id}", headers=ADMIN)).json()["max_held"] == 25

    r = await pool_client.patch(f"/v1/pool/rules/{rule_id}", json={"max_held": 0}, headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "max_held"
    r = await pool_client.patch(
        f"/v1/pool/rules/{rule_id}", json={"max_held": 40}, headers={**ADMIN, "If-Match": '"1"'}
    )
    assert (r.status_code, r.json()["max_held"], r.headers["etag"]) == (200, 40, '"2"'), r.text
    # An explicit null clears it: the scope inherits the limit of the rule above (or the default).
    r = await pool_client.patch(
        f"/v1/pool/rules/{rule_id}", json={"max_held": None}, headers={**ADMIN, "If-Match": '"2"'}
    )
    assert (r.status_code, r.json()["max_held"]) == (200, None), r.text

    history = (await pool_client.get(f"/v1/pool/rules/{rule_id}/history", headers=ADMIN)).json()
    changes = [c for h in history if h["summary"] == "rule changed" for c in h["changes"]]
    assert {"field": "max_held", "old": 25, "new": 40} in changes
    assert {"field": "max_held", "old": 40, "new": None} in changes

    # The customers service enforces it from the claim-rules event: one per version, each with the limit.
    claim = await pool_events.wait_for(3, type="crm.pool.claim_rules_changed", subject=rule_id)
    assert [(c.event["aggregateversion"], c.event["data"]["claim_rules"]["max_held"]) for c in claim] == [
        (1, 25),
        (2, 40),
        (3, None),
    ]
    full = await pool_events.wait_for(3, type="crm.pool.rules_changed", subject=rule_id)
    assert [c.event["data"]["rule"]["max_held"] for c in full] == [25, 40, None]
