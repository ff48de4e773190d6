"""What every service gets from the kit: background tasks and their status in /readyz and /metrics,
and readiness probes a service adds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from pymongo.errors import ServerSelectionTimeoutError

from crm_platform.permissions import PUBLIC, declare
from crm_platform.service import Periodic, ServiceKit
from crm_platform.settings import ServiceSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import eventually, running, service_settings


async def test_a_periodic_task_and_a_probe_show_in_readyz_and_metrics(backend: Backend) -> None:
    settings = ServiceSettings(**{**service_settings(backend, "kitcheck"), "service_name": "kitcheck"})
    kit = ServiceKit(settings, title="kit check", description="a service with a scheduler")
    calls = {"n": 0}

    async def tick() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first run fails")

    kit.background(Periodic("kitcheck-scheduler", tick, interval=0.05))
    lag = {"ready": True, "events_behind": 0}

    async def probe() -> dict[str, Any]:
        return dict(lag)

    kit.readiness("projection", probe)
    app = kit.build_app([])
    async with running(app, "http://kit.test") as client:
        await eventually(lambda: calls["n"] >= 3, timeout=10, message="three runs")
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        status = ready.json()["checks"]["background"]["kitcheck-scheduler"]
        assert status["runs"] >= 3 and status["failures"] == 1
        assert status["last_error"] is None and status["stalled"] is False  # recovered after the failure
        assert ready.json()["checks"]["projection"] == {"ready": True, "events_behind": 0}

        # A probe saying it is not ready takes the instance out of rotation.
        lag.update(ready=False, events_behind=5000)
        not_ready = await client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["projection"]["events_behind"] == 5000

        metrics = (await client.get("/metrics")).text
        assert 'crm_background_runs_total{outcome="error",task="kitcheck-scheduler"} 1.0' in metrics
        assert 'crm_background_runs_total{outcome="ok",task="kitcheck-scheduler"}' in metrics


async def test_a_hanging_probe_and_an_unreachable_store_answer_quickly(backend: Backend) -> None:
    settings = ServiceSettings(
        **{**service_settings(backend, "kithang"), "service_name": "kithang", "readiness_timeout_seconds": 0.5}
    )
    kit = ServiceKit(settings, title="kit check", description="a probe that never answers")

    async def hangs() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"ready": True}

    kit.readiness("stuck", hangs)
    router = APIRouter()

    @router.get("/v1/needs-the-store")
    async def needs_the_store() -> None:
        raise ServerSelectionTimeoutError("127.0.0.1:1: [Errno 111] Connection refused")

    declare("kithang", {"GET /v1/needs-the-store": PUBLIC})
    app = kit.build_app([router])
    async with running(app, "http://kit.test") as client:
        started = time.monotonic()
        ready = await client.get("/readyz")
        assert time.monotonic() - started < 2, "bounded by readiness_timeout_seconds, not by the probe"
        assert ready.status_code == 503 and ready.json()["failing"] == ["stuck"]
        assert ready.json()["checks"]["stuck"] == {"ready": False, "error": "no answer within 0.5 s"}

        unavailable = await client.get("/v1/needs-the-store")
        assert unavailable.status_code == 503
        assert unavailable.headers["content-type"] == "application/problem+json"
        assert unavailable.headers["retry-after"] == str(settings.unavailable_retry_after_seconds)
        assert unavailable.json()["type"] == "urn:crm:problem:store-unavailable"
