"""An injectable clock, so time-based rules are tested by moving time, not by sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        # MongoDB stores milliseconds; truncating here keeps what we return equal to what we read back.
        now = datetime.now(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)


class ManualClock:
    """A clock the tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment


def as_utc(value: datetime) -> datetime:
    """Datetimes read back from PyMongo are naive UTC unless tz_aware; make them aware."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
