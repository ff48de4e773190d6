"""The reporting service is up, ready, guarded and exposes its lag."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crm_platform.contracts import customers as cev
from crm_platform.testing.event_feed import NOW, EventFeed, customer
from crm_platform.testing.fixtures import auth, unique


async def test_health_readiness_auth_and_lag(client: Any) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "reporting"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert "crm.reporting" in str(ready.json()["checks"]["consumers"])
    projection = ready.json()["checks"]["projection_lag"]
    assert projection["ready"] is True and projection["max_lag_seconds"] == 300.0
    assert set(projection["end_to_end"]) >= {"latest_seconds", "p50_seconds", "p99_seconds", "events_applied"}
    assert any(group.startswith("crm.reporting") for group in projection["consumer_lag"])
    unauthenticated = await client.get("/v1/reports/distribution?field=industry")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/admin/lag", headers=auth("rep-1", ["rep"], "/hq"))).status_code == 403
    lag = await client.get("/v1/admin/lag", headers=auth("admin-1", ["admin"], "/hq"))
    assert lag.status_code == 200
    body = lag.json()
    assert set(body["end_to_end"]) >= {"latest_seconds", "p50_seconds", "p99_seconds", "events_applied"}
    assert body["generation"] >= 1
    assert all(c["assigned"] for c in body["consumers"].values())
    assert "# TYPE crm_reporting_projection_lag_seconds histogram" in (await client.get("/metrics")).text


async def test_bad_filters_are_problems_naming_the_field(client: Any) -> None:
    admin = auth("admin-1", ["admin"], "/hq")
    cases = {
        "/v1/reports/funnel?period=2026-13": "period",
        "/v1/reports/funnel?period=last-week": "period",
        "/v1/reports/activity?from=2026-11-10&to=2026-11-01": "to",
        "/v1/reports/activity?tz=Mars/Olympus": "tz",
        "/v1/reports/activity?tz=Asia": "tz",  # a directory of tzdata: was a 500
        "/v1/reports/activity?bucket=hour": "bucket",
        "/v1/reports/distribution?field=shoe_size": "field",
        "/v1/reports/forecast?period=2026-11&department_path=nopath": "department_path",
    }
    for url, field in cases.items():
        r = await client.get(url, headers=admin)
        assert r.status_code in (400, 422), (url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(field in str(e.get("field")) for e in r.json()["errors"]), (url, r.json())


async def test_end_to_end_lag_is_the_time_from_the_event_to_its_projection(
    client: Any, feed: EventFeed, wait_applied: Any
) -> None:
    # The service's clock stands at NOW: an event stamped 2.5 s earlier is applied 2.5 s late.
    rep = unique("r")
    stamped = NOW - timedelta(seconds=2.5)
    snap = customer(unique("c"), rep, "/hq/lag", stamped)
    sent = await feed.send(cev.CUSTOMER_CREATED, snap.customer_id, cev.CustomerCreated(customer=snap), stamped)
    await wait_applied([sent])
    body = (await client.get("/v1/admin/lag", headers=auth("admin-1", ["admin"], "/hq"))).json()
    assert body["end_to_end"]["latest_seconds"] == 2.5
    assert body["end_to_end"]["events_applied"] >= 1 and body["end_to_end"]["p99_seconds"] is not None
    ready = (await client.get("/readyz")).json()["checks"]["projection_lag"]
    assert ready["end_to_end"]["latest_seconds"] is not None and ready["ready"] is True
    metrics = (await client.get("/metrics")).text
    assert 'crm_reporting_projection_lag_seconds_bucket{le="2.5",topic="crm.customers.v1"}' in metrics
