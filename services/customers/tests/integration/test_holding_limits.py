"""The holding limit per owner from the pool's rules (``max_held`` on crm.pool.claim_rules_changed):
the most specific rule covering the owner's department wins, else the global rule's, else the
service's ``max_customers_per_rep``; enforced on create, claim, assign, CSV import (dry run and
real) and restore. And a rep's own recycle bin: what they deleted, theirs to restore.

Its own app (reps may delete here, and it must see every rule event), on the session's store and
broker; rules are per department, each test under its own path, so nothing else is limited.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings
from crm_platform.contracts import pool
from crm_platform.events import to_kafka
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, eventually, running, unique

DEFAULT = 25
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def app_client(backend: Backend) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = CustomersSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_customers_limits_{uuid.uuid4().hex[:8]}",
        consumer_group_suffix=f".limits-{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        max_customers_per_rep=DEFAULT,
        reps_may_delete=True,
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
    )
    app = create_app(settings)
    async with running(app, "http://customers.test") as client:
        yield app, client


@pytest.fixture
def client(app_client: tuple[Any, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


class User:
    def __init__(self, dept: str, roles: list[str] | None = None) -> None:
        self.id = unique("rep")
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)


async def publish_rule(
    producer: Any,
    app_client: tuple[Any, httpx.AsyncClient],
    rule_id: str,
    path: str | None,
    max_held: int | None,
    version: int,
    *,
    deleted: bool = False,
    expect: tuple[str, int, str] | None = None,
) -> None:
    """Publish a claim-rules event as the pool service does, and wait until the service applied it
    (``expect``: a department path and the limit and source its owners must then get)."""
    envelope = pool.CLAIM_RULES_CHANGED.build(
        source="/crm/pool",
        subject=rule_id,
        data=pool.ClaimRulesChanged(
            claim_rules=pool.ClaimRules(
                rule_id=rule_id,
                department_path=path,
                cooldown_days=0,
                claim_scope="company",
                max_held=max_held,
                deleted=deleted,
            )
        ),
        aggregate_version=version,
        time=datetime.now(UTC),
        actor="admin-1",
    )
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(pool.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
    service = app_client[0].state.customers
    where, limit, source = expect or (path, max_held or DEFAULT, rule_id)

    async def applied() -> bool:
        got = await service.holding_limit(where)
        return bool((got.limit, got.source) == (limit, source))

    await eventually(applied, timeout=30, message=f"rule {rule_id} v{version} applied")


async def create(client: httpx.AsyncClient, user: User, **fields: Any) -> httpx.Response:
    return await client.post("/v1/customers", json={"kind": "company", "name": unique("Held"), **fields},
                             headers=user.headers)  # fmt: skip


def assert_limited(r: httpx.Response, owner: str, held: int, limit: int, rule: str) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert (body["owner_id"], body["held"], body["limit"], body["limit_rule"]) == (owner, held, limit, rule), body
    assert rule in body["detail"] or (rule == "service default" and "service default" in body["detail"])


async def test_the_most_specific_rule_wins_and_an_event_changes_the_limit(
    client: httpx.AsyncClient, app_client: Any, producer: Any
) -> None:
    root = f"/{unique('limits')}"
    team, other = f"{root}/team", f"{root}/other"
    wide, narrow = unique("rule"), unique("rule")
    await publish_rule(producer, app_client, wide, root, 3, 1)
    await publish_rule(producer, app_client, narrow, team, 1, 1)

    in_team, elsewhere = User(team), User(other)
    assert (await create(client, in_team)).status_code == 201
    assert_limited(await create(client, in_team), in_team.id, 1, 1, narrow)  # the deeper rule
    for _ in range(3):
        assert (await create(client, elsewhere)).status_code == 201
    assert_limited(await create(client, elsewhere), elsewhere.id, 3, 3, wide)  # only the root's covers it

    # The team's rule drops its limit: the team inherits the root's; then the root's rule goes too.
    await publish_rule(producer, app_client, narrow, team, None, 2, expect=(team, 3, wide))
    assert (await create(client, in_team)).status_code == 201
    # A stale redelivery of the old version changes nothing.
    await publish_rule(producer, app_client, narrow, team, 1, 1, expect=(team, 3, wide))
    assert (await create(client, in_team)).status_code == 201
    assert_limited(await create(client, in_team), in_team.id, 3, 3, wide)
    await publish_rule(producer, app_client, wide, root, 3, 2, deleted=True, expect=(team, DEFAULT, "service default"))
    assert (await create(client, elsewhere)).status_code == 201


async def test_claim_and_assign_respect_the_rule(client: httpx.AsyncClient, app_client: Any, producer: Any) -> None:
    dept = f"/{unique('limits')}"
    rule = unique("rule")
    await publish_rule(producer, app_client, rule, dept, 2, 1)
    rep, colleague = User(dept), User(dept)
    manager = User(dept, ["manager"])
    for _ in range(2):
        assert (await create(client, rep)).status_code == 201

    # Claim from the pool: refused at the limit, the customer stays in the pool.
    pooled = (await create(client, colleague)).json()
    released = await client.post(f"/v1/customers/{pooled['id']}/release", json={"reason": "r"},
                                 headers=colleague.headers)  # fmt: skip
    assert released.status_code == 200, released.text
    assert_limited(await client.post(f"/v1/customers/{pooled['id']}/claim", headers=rep.headers), rep.id, 2, 2, rule)
    assert (await client.get(f"/v1/customers/{pooled['id']}", headers=rep.headers)).json()["in_pool"] is True

    # Assign: refused at the limit, the customer stays with its owner.
    mine = (await create(client, colleague)).json()
    r = await client.post(f"/v1/customers/{mine['id']}/assign", json={"owner_id": rep.id, "department_path": dept},
                          headers=manager.headers)  # fmt: skip
    assert_limited(r, rep.id, 2, 2, rule)
    assert (await client.get(f"/v1/customers/{mine['id']}", headers=manager.headers)).json()["owner_id"] == colleague.id

    # A higher limit by event: both go through.
    await publish_rule(producer, app_client, rule, dept, 4, 2)
    assert (await client.post(f"/v1/customers/{pooled['id']}/claim", headers=rep.headers)).status_code == 200
    r = await client.post(f"/v1/customers/{mine['id']}/assign", json={"owner_id": rep.id, "department_path": dept},
                          headers=manager.headers)  # fmt: skip
    assert r.status_code == 200 and r.json()["owner_id"] == rep.id, r.text

    # A manager creating for someone else: the limit of the owner's department, not the manager's.
    assert_limited(await create(client, manager, owner_id=rep.id, department_path=dept), rep.id, 4, 4, rule)


async def test_import_dry_run_reports_the_rows_past_the_limit_and_the_import_skips_them(
    client: httpx.AsyncClient, app_client: Any, producer: Any
) -> None:
    dept = f"/{unique('limits')}"
    rule = unique("rule")
    await publish_rule(producer, app_client, rule, dept, 3, 1)
    rep = User(dept)
    assert (await create(client, rep)).status_code == 201
    names = [unique("Imported") for _ in range(4)]
    csv = ("name\n" + "\n".join(names) + "\n").encode()

    async def run(dry_run: bool) -> dict[str, Any]:
        r = await client.post("/v1/customers/import", params={"dry_run": str(dry_run).lower()}, content=csv,
                              headers={**rep.headers, "Content-Type": "text/csv"})  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())

    report = await run(True)
    assert (report["valid_rows"], report["imported"]) == (2, 0)
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(4, "owner_id"), (5, "owner_id")]
    assert all(rule in e["reason"] and "3" in e["reason"] for e in report["errors"]), report["errors"]
    listed = await client.get("/v1/customers", params={"owner_id": rep.id}, headers=rep.headers)
    assert len(listed.json()["items"]) == 1  # a dry run writes nothing

    report = await run(False)
    assert (report["valid_rows"], report["imported"]) == (2, 2)
    assert [e["line"] for e in report["errors"]] == [4, 5]
    listed = await client.get("/v1/customers", params={"owner_id": rep.id, "limit": 50}, headers=rep.headers)
    assert sorted(c["name"] for c in listed.json()["items"] if c["name"] in names) == sorted(names[:2])


async def test_restore_is_refused_at_the_limit_naming_owner_held_limit_and_rule(
    client: httpx.AsyncClient, app_client: Any, producer: Any
) -> None:
    dept = f"/{unique('limits')}"
    rule = unique("rule")
    await publish_rule(producer, app_client, rule, dept, 2, 1)
    rep, manager = User(dept), User(dept, ["manager"])
    first = (await create(client, rep)).json()
    assert (await client.delete(f"/v1/customers/{first['id']}", headers=manager.headers)).status_code == 200
    for _ in range(2):
        assert (await create(client, rep)).status_code == 201
    r = await client.post(f"/v1/customers/{first['id']}/restore", headers=manager.headers)
    assert_limited(r, rep.id, 2, 2, rule)
    assert (await client.get(f"/v1/customers/{first['id']}", headers=manager.headers)).json()["status"] == "deleted"

    await publish_rule(producer, app_client, rule, dept, 3, 2)
    r = await client.post(f"/v1/customers/{first['id']}/restore", headers=manager.headers)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text


async def test_a_rep_restores_what_they_deleted_and_not_what_others_did(
    client: httpx.AsyncClient, app_client: Any, producer: Any
) -> None:
    dept = f"/{unique('limits')}"
    rep, other_rep, manager = User(dept), User(dept), User(dept, ["manager"])
    mine, also_mine = (await create(client, rep)).json(), (await create(client, rep)).json()
    theirs = (await create(client, other_rep)).json()
    assert (await client.delete(f"/v1/customers/{mine['id']}", headers=rep.headers)).status_code == 200
    # The manager deleted one of the rep's customers: that is not the rep's to take back.
    assert (await client.delete(f"/v1/customers/{also_mine['id']}", headers=manager.headers)).status_code == 200
    assert (await client.delete(f"/v1/customers/{theirs['id']}", headers=other_rep.headers)).status_code == 200

    # The managers' recycle bin stays theirs.
    assert (await client.get("/v1/recycle-bin", headers=rep.headers)).status_code == 403
    assert (await client.post(f"/v1/customers/{mine['id']}/restore", headers=rep.headers)).status_code == 403

    bin_ = await client.get("/v1/my-recycle-bin", headers=rep.headers)
    assert bin_.status_code == 200, bin_.text
    assert [c["id"] for c in bin_.json()["items"]] == [mine["id"]]
    assert [c["id"] for c in (await client.get("/v1/my-recycle-bin", headers=manager.headers)).json()["items"]] == [
        also_mine["id"]
    ]

    for customer in (also_mine, theirs):
        r = await client.post(f"/v1/my-recycle-bin/{customer['id']}/restore", headers=rep.headers)
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM), r.text
    r = await client.post(f"/v1/my-recycle-bin/{mine['id']}/restore", headers=rep.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["owner_id"]) == ("active", rep.id)
    assert (await client.get("/v1/my-recycle-bin", headers=rep.headers)).json()["items"] == []
    again = await client.post(f"/v1/my-recycle-bin/{mine['id']}/restore", headers=rep.headers)
    assert again.status_code == 409 and "not in the recycle bin" in again.json()["detail"]

    # Still subject to the holding limit: at the limit, a rep's own restore is refused too.
    rule = unique("rule")
    await publish_rule(producer, app_client, rule, dept, 1, 1)
    assert (await client.delete(f"/v1/customers/{mine['id']}", headers=rep.headers)).status_code == 200
    assert (await create(client, rep)).status_code == 201
    assert_limited(await client.post(f"/v1/my-recycle-bin/{mine['id']}/restore", headers=rep.headers),
                   rep.id, 1, 1, rule)  # fmt: skip
    assert [c["id"] for c in (await client.get("/v1/my-recycle-bin", headers=rep.headers)).json()["items"]] == [
        mine["id"]
    ]


async def test_a_bulk_assign_past_the_limit_is_refused_whole_and_says_by_how_much(
    client: httpx.AsyncClient, app_client: Any, producer: Any
) -> None:
    dept = f"/{unique('limits')}"
    rule = unique("rule")
    await publish_rule(producer, app_client, rule, dept, 3, 1)
    rep, colleague, manager = User(dept), User(dept), User(dept, ["manager"])
    held = (await create(client, rep)).json()
    batch = [(await create(client, colleague)).json() for _ in range(3)]
    ids = [c["id"] for c in batch]

    async def bulk(customer_ids: list[str]) -> httpx.Response:
        body = {"customer_ids": customer_ids, "owner_id": rep.id, "department_path": dept, "reason": "handover"}
        return await client.post("/v1/customers/bulk-assign", json=body, headers=manager.headers)

    # 1 held + 3 coming > 3: refused whole, nothing moved.
    r = await bulk([*ids, held["id"]])
    assert_limited(r, rep.id, 1, 3, rule)
    assert (r.json()["requested"], r.json()["over_by"]) == (3, 1), r.json()
    for c in batch:
        got = await client.get(f"/v1/customers/{c['id']}", headers=manager.headers)
        assert (got.json()["owner_id"], got.json()["version"]) == (colleague.id, 1)

    # Within the limit: each customer its own outcome; a locked one and an unknown id fail alone.
    locked = await client.post(f"/v1/customers/{ids[2]}/lock", json={"reason": "audit"}, headers=manager.headers)
    assert locked.status_code == 200, locked.text
    missing = unique("nope")
    r = await bulk([ids[0], ids[1], ids[2], held["id"], missing])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["assigned"], body["unchanged"], body["failed"]) == (2, 1, 2), body
    outcomes = {i["customer_id"]: (i["outcome"], i["status"]) for i in body["items"]}
    assert outcomes == {
        ids[0]: ("assigned", 200),
        ids[1]: ("assigned", 200),
        ids[2]: ("failed", 423),
        held["id"]: ("unchanged", 200),
        missing: ("failed", 404),
    }
    for customer_id in ids[:2]:
        got = await client.get(f"/v1/customers/{customer_id}", headers=manager.headers)
        assert got.json()["owner_id"] == rep.id

    # Now at the limit: even one more is refused, by exactly one.
    await client.post(f"/v1/customers/{ids[2]}/unlock", headers=manager.headers)
    r = await bulk([ids[2]])
    assert_limited(r, rep.id, 3, 3, rule)
    assert (r.json()["requested"], r.json()["over_by"]) == (1, 1)

    # Bad input: problem+json naming the field.
    r = await client.post("/v1/customers/bulk-assign", json={"customer_ids": [], "owner_id": rep.id},
                          headers=manager.headers)  # fmt: skip
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_ids", r.text
    r = await client.post("/v1/customers/bulk-assign", json={"customer_ids": ids, "owner_id": rep.id,
                          "department_path": dept}, headers=rep.headers)  # fmt: skip
    assert r.status_code == 403
