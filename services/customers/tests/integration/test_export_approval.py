"""Export approval (issue 16): with a threshold set, a rep's export above it is held as a request
(202 and its location), a manager over the rep's department (or an admin) approves or rejects it
with a comment, and the requester downloads it while the approval is valid. Every step is an event.

The service runs in an app of its own (its own database, so the policy set here holds no other
test's exports, and a manual clock, to let an approval expire), on the session's broker and store.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings
from crm_platform.clock import ManualClock
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, EventCollector, auth, collecting, running, unique

CLOCK = ManualClock(datetime.now(UTC))


@pytest.fixture(scope="module")
async def app_and_client(backend: Backend) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    suffix = uuid.uuid4().hex[:8]
    settings = CustomersSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"crm_customers_approval_{suffix}",
        consumer_group_suffix=f".approval-{suffix}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        record_purge_enabled=False,
    )
    app = create_app(settings, CLOCK)
    async with running(app, "http://customers.test") as client:
        yield app, client


@pytest.fixture(scope="module")
async def client(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture(scope="module")
async def events(backend: Backend, app_and_client: Any) -> AsyncIterator[EventCollector]:
    async with collecting(backend.kafka_bootstrap, ["crm.customers.v1"]) as collector:
        yield collector


ADMIN = auth("approval-admin", ["admin"], "/hq")


async def set_threshold(client: httpx.AsyncClient, value: int | None) -> dict[str, Any]:
    r = await client.put("/v1/customers/export-policy", json={"approval_above_rows": value}, headers=ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def rep_with_customers(client: httpx.AsyncClient, department: str, n: int) -> tuple[str, dict[str, str], str]:
    rep = unique("rep")
    headers = auth(rep, ["rep"], department)
    tag = unique("tag")
    for _ in range(n):
        body = {"kind": "company", "name": f"导出{uuid.uuid4().hex[:8]}有限公司", "tags": [tag]}
        r = await client.post("/v1/customers", json=body, headers=headers)
        assert r.status_code == 201, r.text
    return rep, headers, tag


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))[1:]


async def test_the_policy_is_set_by_an_administrator_with_its_history_and_an_event(
    client: httpx.AsyncClient, events: EventCollector
) -> None:
    before = (await client.get("/v1/customers/export-policy", headers=auth(unique("rep")))).json()
    await set_threshold(client, 7)
    policy = await set_threshold(client, 2)
    assert policy["approval_above_rows"] == 2
    assert [h["approval_above_rows"] for h in policy["history"]][-2:] == [7, 2]
    assert policy["history"][-1]["previous"] == 7 and policy["history"][-1]["by"] == "approval-admin"
    assert policy["version"] >= before["version"] + 2
    # The same value again changes nothing: no new version, no event.
    assert (await set_threshold(client, 2))["version"] == policy["version"]
    [changed] = await events.wait_for(
        type="crm.customer_export_policy.changed", data={"approval_above_rows": 2, "previous": 7}
    )
    assert changed.event["actor"] == "approval-admin"
    # Bad input names the field; a stale If-Match is refused.
    bad = await client.put("/v1/customers/export-policy", json={"approval_above_rows": -1}, headers=ADMIN)
    assert bad.status_code == 422 and "approval_above_rows" in bad.text
    stale = await client.put(
        "/v1/customers/export-policy", json={"approval_above_rows": 3}, headers={**ADMIN, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert (await client.get("/v1/customers/export-policy", headers=ADMIN)).json()["approval_above_rows"] == 2


async def test_an_export_above_the_threshold_waits_for_a_managers_approval_then_downloads(
    client: httpx.AsyncClient, events: EventCollector
) -> None:
    await set_threshold(client, 2)
    rep, rep_headers, tag = await rep_with_customers(client, "/hq/east/t1", 3)

    # At or under the threshold: streamed as before.
    small = await client.get(
        "/v1/customers/export.csv", params={"tags_all": tag, "kind": "person"}, headers=rep_headers
    )
    assert small.status_code == 200, small.text
    # Above it: held, 202 with the request's location; no file, no export record.
    r = await client.get("/v1/customers/export.csv", params={"tags_all": tag, "sort": "name"}, headers=rep_headers)
    assert r.status_code == 202, r.text
    request = r.json()
    assert r.headers["location"] == f"/v1/customers/export-requests/{request['id']}"
    assert request["status"] == "pending" and request["rows"] == 3 and request["threshold"] == 2
    assert request["filter"] == {"tags_all": tag} and request["sort"] == "name"
    assert request["download_url"] is None
    [requested] = await events.wait_for(type="crm.customer_export_request.requested", subject=request["id"])
    assert requested.event["actor"] == rep and requested.event["data"]["request"]["rows"] == 3
    # The export records are the small export's alone (rows 0): the held one sent nothing.
    assert [e.event["data"]["rows"] for e in events.matching(type="crm.customer_export.created", actor=rep)] == [0]

    # The requester sees it among theirs, and cannot download it yet.
    mine = (await client.get("/v1/customers/export-requests", headers=rep_headers)).json()["items"]
    assert [m["id"] for m in mine] == [request["id"]]
    early = await client.get(f"/v1/customers/export-requests/{request['id']}/download", headers=rep_headers)
    assert early.status_code == 409 and "pending" in early.json()["detail"]

    # A manager over another department neither sees nor answers it; one over the rep's does.
    elsewhere = auth(unique("mgr"), ["manager"], "/hq/west")
    assert request["id"] not in [
        p["id"] for p in (await client.get("/v1/customers/export-requests/pending", headers=elsewhere)).json()["items"]
    ]
    r = await client.post(f"/v1/customers/export-requests/{request['id']}/approve", json={}, headers=elsewhere)
    assert r.status_code == 404, r.text
    manager = unique("mgr")
    manager_headers = auth(manager, ["manager"], "/hq/east")
    pending = (await client.get("/v1/customers/export-requests/pending", headers=manager_headers)).json()["items"]
    assert request["id"] in [p["id"] for p in pending]
    assert (
        await client.get(f"/v1/customers/export-requests/{request['id']}", headers=manager_headers)
    ).status_code == 200
    too_long = await client.post(
        f"/v1/customers/export-requests/{request['id']}/approve", json={"comment": "x" * 1001}, headers=manager_headers
    )
    assert too_long.status_code == 422 and "comment" in too_long.text
    r = await client.post(
        f"/v1/customers/export-requests/{request['id']}/approve",
        json={"comment": "季度复盘用"},
        headers=manager_headers,
    )
    assert r.status_code == 200, r.text
    approved = r.json()
    assert (
        approved["status"] == "approved" and approved["decided_by"] == manager and approved["comment"] == "季度复盘用"
    )
    valid_until = datetime.fromisoformat(approved["valid_until"])
    assert abs(valid_until - (CLOCK.now() + timedelta(hours=24))) < timedelta(seconds=1)
    assert approved["download_url"] == f"/v1/customers/export-requests/{request['id']}/download"
    again = await client.post(f"/v1/customers/export-requests/{request['id']}/reject", json={}, headers=ADMIN)
    assert again.status_code == 409
    [decided] = await events.wait_for(type="crm.customer_export_request.approved", subject=request["id"])
    assert decided.event["actor"] == manager and decided.event["data"]["request"]["comment"] == "季度复盘用"
    assert request["id"] not in [
        p["id"]
        for p in (await client.get("/v1/customers/export-requests/pending", headers=manager_headers)).json()["items"]
    ]

    # Only the requester downloads it: the filter as requested, the rows as they are now.
    assert (await client.get(approved["download_url"], headers=manager_headers)).status_code == 404
    body = {"kind": "company", "name": f"新增{uuid.uuid4().hex[:8]}有限公司", "tags": [tag]}
    assert (await client.post("/v1/customers", json=body, headers=rep_headers)).status_code == 201
    r = await client.get(approved["download_url"], headers=rep_headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert len(csv_rows(r.text)) == 4
    [downloaded] = await events.wait_for(type="crm.customer_export_request.downloaded", subject=request["id"])
    assert downloaded.event["actor"] == rep and downloaded.event["data"]["rows"] == 4
    assert downloaded.event["data"]["request"]["downloads"] == 1

    # Past the validity window, refused.
    CLOCK.advance(timedelta(hours=25))
    late = await client.get(approved["download_url"], headers=rep_headers)
    assert late.status_code == 409 and "expired" in late.json()["detail"]
    assert len(events.matching(type="crm.customer_export_request.downloaded", subject=request["id"])) == 1


async def test_a_rejected_request_is_not_downloadable_and_approvers_are_not_held(
    client: httpx.AsyncClient, events: EventCollector
) -> None:
    await set_threshold(client, 2)
    _, rep_headers, tag = await rep_with_customers(client, "/hq/north", 3)
    r = await client.get("/v1/customers/export.csv", params={"tags_all": tag}, headers=rep_headers)
    assert r.status_code == 202, r.text
    request_id = r.json()["id"]
    # Nobody answers their own request; a rep cannot answer at all.
    own = await client.post(f"/v1/customers/export-requests/{request_id}/approve", json={}, headers=rep_headers)
    assert own.status_code == 403
    r = await client.post(
        f"/v1/customers/export-requests/{request_id}/reject", json={"comment": "范围太大"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["valid_until"] is None
    [rejected] = await events.wait_for(type="crm.customer_export_request.rejected", subject=request_id)
    assert rejected.event["actor"] == "approval-admin"
    refused = await client.get(f"/v1/customers/export-requests/{request_id}/download", headers=rep_headers)
    assert refused.status_code == 409
    assert (await client.get(f"/v1/customers/export-requests/{unique('x')}", headers=rep_headers)).status_code == 404

    # Managers and admins answer requests, so their own exports are never held.
    manager_headers = auth(unique("mgr"), ["manager"], "/hq/north")
    r = await client.get("/v1/customers/export.csv", params={"tags_all": tag}, headers=manager_headers)
    assert r.status_code == 200 and len(csv_rows(r.text)) == 3
    # Approval off again: the rep's export streams.
    await set_threshold(client, None)
    r = await client.get("/v1/customers/export.csv", params={"tags_all": tag}, headers=rep_headers)
    assert r.status_code == 200 and len(csv_rows(r.text)) == 3


async def test_a_held_export_downloads_with_its_custom_field_filters(client: httpx.AsyncClient) -> None:
    """The request keeps the ``custom.<key>`` filters as asked, and the download applies them again:
    the approved list, not every customer the requester sees."""
    key = f"f{uuid.uuid4().hex[:8]}"
    options = [
        {"key": "high", "labels": {"zh-CN": "高", "en": "High"}},
        {"key": "low", "labels": {"zh-CN": "低", "en": "Low"}},
    ]
    r = await client.post(
        "/v1/fields/customers",
        json={
            "key": key,
            "type": "choice",
            "options": options,
            "filterable": True,
            "labels": {"zh-CN": "级", "en": "L"},
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    department = f"/hq/{unique('d')}"
    rep_headers = auth(unique("rep"), ["rep"], department)
    for grade in ("high", "high", "high", "low", "low"):
        body = {"kind": "company", "name": f"定制{uuid.uuid4().hex[:8]}有限公司", "custom": {key: grade}}
        made = await client.post("/v1/customers", json=body, headers=rep_headers)
        assert made.status_code == 201, made.text
    await set_threshold(client, 2)
    try:
        r = await client.get("/v1/customers/export.csv", params={f"custom.{key}": "high"}, headers=rep_headers)
        assert r.status_code == 202, r.text
        request = r.json()
        assert request["rows"] == 3 and request["filter"] == {f"custom.{key}": "high"}
        manager = auth(unique("mgr"), ["manager"], department)
        approved = await client.post(
            f"/v1/customers/export-requests/{request['id']}/approve", json={"comment": "ok"}, headers=manager
        )
        assert approved.status_code == 200, approved.text
        downloaded = await client.get(approved.json()["download_url"], headers=rep_headers)
        assert downloaded.status_code == 200, downloaded.text
        rows = csv_rows(downloaded.text)
        header = next(csv.reader(io.StringIO(downloaded.text.lstrip("\ufeff"))))
        assert len(rows) == 3 and {row[header.index(f"custom.{key}")] for row in rows} == {"high"}
    finally:
        await set_threshold(client, None)
