"""End-to-end lag of the projection: when it applied an event minus the event's ``time``.

Exposed as a Prometheus histogram and, for ``GET /v1/admin/lag``, the latest value
and the p50/p99 of the most recent events this process applied.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime

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
    def __init__(self, clock: Clock, window: int = 2000) -> None:
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=window)
        self.applied = 0
        self.latest: float | None = None

    def observe(self, topic: str, event_time: datetime) -> float:
        lag = max((self._clock.now() - event_time).total_seconds(), 0.0)
        PROJECTION_LAG.labels(topic).observe(lag)
        self._recent.append(lag)
        self.latest = lag
        self.applied += 1
        return lag

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
