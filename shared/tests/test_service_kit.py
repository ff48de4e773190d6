"""What every service gets from the kit: background tasks and their status in /readyz and /metrics,
and readiness probes a service adds."""

from __future__ import annotations

from typing import Any

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
