"""End-to-end lag of the projection: when it applied an event minus the event's ``time``.

Exposed as a Prometheus histogram and, for ``GET /v1/admin/lag`` and ``/readyz``, the
latest value and the p50/p99 of the most recent events this process applied.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Histogram

from crm_platform.clock import Clock

PROJECTION_LAG = Histogram(
    "crm_reporting_projection_lag_seconds",
    "From an event's time to the reporting projection applying it",
    ["topic"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class LagTracker:
    def __init__(self, clock: Clock, window: int = 2000, remembered: int = 20_000) -> None:
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=window)
        self._ids: deque[str] = deque(maxlen=remembered)
        self._id_set: set[str] = set()
        self.applied = 0
        self.latest: float | None = None

    def observe(self, topic: str, event_time: datetime, event_id: str | None = None) -> float:
        lag = max((self._clock.now() - event_time).total_seconds(), 0.0)
        if event_id is not None and event_id not in self._id_set:
            if len(self._ids) == self._ids.maxlen:
                self._id_set.discard(self._ids[0])
            self._ids.append(event_id)
            self._id_set.add(event_id)
        PROJECTION_LAG.labels(topic).observe(lag)
        self._recent.append(lag)
        self.latest = lag
        self.applied += 1
        return lag

    def has_applied(self, event_id: str) -> bool:
        """True once this process has applied the event (among the last ``remembered``): tests wait on it."""
        return event_id in self._id_set

    def reset(self) -> None:
        """Forget the recent window (a benchmark phase starts afresh; the histogram keeps counting)."""
        self._recent.clear()
        self.applied = 0
        self.latest = None

    def recent(self) -> list[float]:
        return list(self._recent)

    def summary(self) -> dict[str, float | int | None]:
        recent = list(self._recent)
        return {
            "events_applied": self.applied,
            "window": len(recent),
            "latest_seconds": self.latest,
            "p50_seconds": percentile(recent, 50) if recent else None,
            "p99_seconds": percentile(recent, 99) if recent else None,
        }


class LaggingConsumer(Protocol):
    group_id: str

    def assigned(self) -> bool: ...

    async def lag(self) -> dict[str, int]: ...


def badly_behind(latest_seconds: float | None, unread_messages: int, max_seconds: float) -> bool:
    """Not ready only when events wait unread AND the last one applied was older than ``max_seconds``.

    Ordinary lag (a burst, a slow second) stays ready; an idle projection whose last event
    was old is caught up, not behind (nothing is unread).
    """
    return unread_messages > 0 and latest_seconds is not None and latest_seconds > max_seconds


def readiness_probe(
    tracker: LagTracker, consumers: Callable[[], Sequence[LaggingConsumer]], max_seconds: float
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The ``/readyz`` detail of the projection: end-to-end lag and consumer lag in messages."""

    async def probe() -> dict[str, Any]:
        lag: dict[str, dict[str, int]] = {}
        for c in consumers():
            lag[c.group_id] = await c.lag() if c.assigned() else {}
        unread = sum(n for per_topic in lag.values() for n in per_topic.values())
        summary = tracker.summary()
        latest = summary["latest_seconds"]
        return {
            "ready": not badly_behind(None if latest is None else float(latest), unread, max_seconds),
            "end_to_end": summary,
            "consumer_lag": lag,
            "unread_messages": unread,
            "max_lag_seconds": max_seconds,
        }

    return probe
