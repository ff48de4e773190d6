"""/readyz turns 503 only when the projection is badly behind, not for ordinary lag."""

from __future__ import annotations

from datetime import timedelta

from crm_platform.clock import ManualClock
from crm_platform.testing.event_feed import NOW
from crm_reporting.application.lag import LagTracker, badly_behind, readiness_probe


class _Consumer:
    """Stands in for an EventConsumer's lag report (the decision is what is tested here)."""

    def __init__(self, unread: int) -> None:
        self.group_id = "crm.reporting.unit"
        self.unread = unread

    def assigned(self) -> bool:
        return True

    async def lag(self) -> dict[str, int]:
        return {"crm.customers.v1": self.unread}


def test_badly_behind_needs_unread_events_and_an_old_last_event() -> None:
    assert badly_behind(301.0, 5, 300) is True
    assert badly_behind(299.0, 5000, 300) is False  # a burst: ordinary lag
    assert badly_behind(3600.0, 0, 300) is False  # idle and caught up
    assert badly_behind(None, 10, 300) is False  # nothing applied yet: starting, not behind


async def test_probe_reports_lag_and_readiness() -> None:
    clock = ManualClock(NOW)
    tracker = LagTracker(clock)
    tracker.observe("crm.customers.v1", NOW - timedelta(seconds=400))
    behind = await readiness_probe(tracker, lambda: [_Consumer(12)], 300)()
    assert behind["ready"] is False
    assert behind["unread_messages"] == 12 and behind["consumer_lag"] == {
        "crm.reporting.unit": {"crm.customers.v1": 12}
    }
    assert behind["end_to_end"]["latest_seconds"] == 400.0
    caught_up = await readiness_probe(tracker, lambda: [_Consumer(0)], 300)()
    assert caught_up["ready"] is True
    tracker.observe("crm.customers.v1", NOW - timedelta(seconds=2))
    ordinary = await readiness_probe(tracker, lambda: [_Consumer(12)], 300)()
    assert ordinary["ready"] is True and ordinary["end_to_end"]["p50_seconds"] is not None
