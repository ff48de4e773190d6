"""/readyz answers within its deadline even when a check is slow to give up (crm_platform.readiness).

Bounding each check with ``asyncio.wait_for`` let a check that takes its time to cancel (a driver
closing a connection behind a backlog) hold the probe for as long as its clean-up lasted: the
probes below took 2.5 s with a 0.5 s timeout that way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crm_platform.readiness import Missed, within
from crm_platform.service import ServiceKit
from crm_platform.settings import ServiceSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import running, service_settings

LIMIT = 0.5
CLEAN_UP = 2.0  # how long the slow checks below take to give up once cancelled
# What the loop may add to the deadline on a busy shared machine; far below CLEAN_UP.
SLACK = 0.5


class SlowToCancel:
    """A check that never answers and, cancelled, takes CLEAN_UP seconds before it gives up."""

    def __init__(self) -> None:
        self.cleaned_up = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.sleep(CLEAN_UP))
            self.cleaned_up.set()
            raise
        return {"ready": True}


async def test_within_answers_at_its_deadline_and_says_what_each_check_gave() -> None:
    slow = SlowToCancel()

    async def answers() -> int:
        return 7

    async def fails() -> int:
        raise ValueError("bad answer")

    started = time.monotonic()
    got = await within(LIMIT, {"ok": answers(), "fails": fails(), "slow": slow()})
    took = time.monotonic() - started

    assert took < LIMIT + SLACK, took
    assert got["ok"] == 7
    assert isinstance(got["fails"], Missed) and got["fails"].reason(LIMIT) == "ValueError: bad answer"
    assert got["slow"] == Missed() and got["slow"].reason(LIMIT) == "no answer within 0.5 s"
    # The abandoned check was cancelled, not leaked: it finishes its clean-up on its own.
    await asyncio.wait_for(slow.cleaned_up.wait(), timeout=CLEAN_UP + 5)


async def test_within_without_checks_answers_at_once() -> None:
    assert await within(LIMIT, {}) == {}


async def test_readyz_is_bounded_by_its_timeout_not_by_a_check_slow_to_give_up(backend: Backend) -> None:
    settings = ServiceSettings(
        **{**service_settings(backend, "kitslow"), "service_name": "kitslow", "readiness_timeout_seconds": LIMIT}
    )
    kit = ServiceKit(settings, title="kit check", description="a probe slow to give up")
    slow = SlowToCancel()
    kit.readiness("slow", slow)
    app = kit.build_app([])
    async with running(app, "http://kit.test") as client:
        for _ in range(3):  # each answer within the bound, one after the other
            started = time.monotonic()
            ready = await client.get("/readyz")
            took = time.monotonic() - started
            assert took < LIMIT + SLACK, f"/readyz took {took:.2f} s with a {LIMIT} s timeout"
            body = ready.json()
            assert ready.status_code == 503 and body["failing"] == ["slow"], body
            assert body["checks"]["slow"] == {"ready": False, "error": "no answer within 0.5 s"}
            assert body["checks"]["mongo"] == "ok" and body["checks"]["kafka"] == "ok"
            assert LIMIT <= body["took_seconds"] < LIMIT + SLACK, body["took_seconds"]
        await asyncio.wait_for(slow.cleaned_up.wait(), timeout=CLEAN_UP + 5)
