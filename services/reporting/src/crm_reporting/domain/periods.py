"""Report periods and time buckets in the business time zone (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Bucket = Literal["day", "week", "month"]
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


class PeriodError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Period:
    """A half-open date range [start, end) in a time zone."""

    start: date
    end: date
    tz: ZoneInfo
    label: str

    @property
    def start_ms(self) -> int:
        return to_ms(self.start, self.tz)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end, self.tz)

    def contains_day(self, iso_day: str | None) -> bool:
        return iso_day is not None and self.start.isoformat() <= iso_day < self.end.isoformat()

    def months(self) -> float:
        """Length in months (30.44-day months), for per-month rates."""
        return max((self.end - self.start).days / 30.44, 1e-9)


def to_ms(day: date, tz: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def named_period(name: str, tz: ZoneInfo, field: str = "period") -> Period:
    """'2026-11' (month), '2026-Q4' (quarter) or '2026' (year)."""
    if m := _MONTH.match(name):
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise PeriodError(field, "the month must be 01 to 12")
        start = date(year, month, 1)
        return Period(start, _add_months(start, 1), tz, name)
    if m := _QUARTER.match(name):
        start = date(int(m.group(1)), (int(m.group(2)) - 1) * 3 + 1, 1)
        return Period(start, _add_months(start, 3), tz, name)
    if m := _YEAR.match(name):
        year = int(m.group(1))
        return Period(date(year, 1, 1), date(year + 1, 1, 1), tz, name)
    raise PeriodError(field, "use YYYY-MM (month), YYYY-Qn (quarter) or YYYY (year)")


def resolve_period(period: str | None, start: date | None, end: date | None, tz: ZoneInfo, today: date) -> Period:
    """``period`` or ``from``/``to`` (``to`` inclusive); default: the current month."""
    if period and (start or end):
        raise PeriodError("period", "give either period or from/to, not both")
    if period:
        return named_period(period, tz)
    if start or end:
        first = start or date(1970, 1, 1)
        last = end or today
        if last < first:
            raise PeriodError("to", "must not be before from")
        return Period(first, last + timedelta(days=1), tz, f"{first.isoformat()}..{last.isoformat()}")
    month = date(today.year, today.month, 1)
    return Period(month, _add_months(month, 1), tz, f"{month:%Y-%m}")


def bucket_of(epoch_ms: int, bucket: Bucket, tz: ZoneInfo) -> str:
    """The day (2026-11-25), ISO week (2026-W48) or month (2026-11) of an instant, in ``tz``."""
    local = datetime.fromtimestamp(epoch_ms / 1000, UTC).astimezone(tz)
    if bucket == "day":
        return local.date().isoformat()
    if bucket == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{local:%Y-%m}"


def local_day(epoch_ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).astimezone(tz).date()


def in_subtree(path: str | None, root: str | None) -> bool:
    """``path`` is ``root`` or below it (no root: everything)."""
    if not root:
        return True
    if not path:
        return False
    base = root.rstrip("/")
    return path == base or path.startswith(base + "/")
