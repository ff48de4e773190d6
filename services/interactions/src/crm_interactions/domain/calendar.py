"""Local days, weeks and months in a time zone: the windows of task lists and the buckets of stats.

A person's "today" and "this week" begin at local midnight (weeks on Monday, as in
China and ISO 8601), wherever the server runs. Bounds are built from local dates,
so a day with a daylight-saving jump is 23 or 25 hours long, as it should be.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_platform.errors import ValidationFailed

GroupBy = Literal["day", "week", "month"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEVER = datetime(9999, 1, 1, tzinfo=UTC)


def zone(name: str, field: str = "tz") -> ZoneInfo:
    """An IANA zone (Asia/Shanghai); a wrong name is the caller's input error."""
    try:
        return ZoneInfo(name)
    # OSError: the name is looked up as a file under tzdata, so "Asia" is a directory and a long
    # name is too long for the file system; both are still a wrong name, not a server error.
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValidationFailed.for_field(
            field, f"unknown time zone '{name}'; use an IANA name such as Asia/Shanghai", "query"
        ) from exc


def to_millis(value: datetime) -> datetime:
    """UTC, truncated to milliseconds: what MongoDB keeps, so what we compare is what we read back."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def day_bounds(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start of today, start of tomorrow) in ``tz``, as UTC instants."""
    today = now.astimezone(tz).date()
    return local_midnight(today, tz), local_midnight(today + timedelta(days=1), tz)


def week_bounds(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[Monday 00:00 of this week, next Monday 00:00) in ``tz``, as UTC instants."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    return local_midnight(monday, tz), local_midnight(monday + timedelta(days=7), tz)


def bucket(moment: datetime, group_by: GroupBy, tz: ZoneInfo) -> tuple[str, date]:
    """The period a moment falls in: its label (2026-01-05, 2026-W02, 2026-01) and first local day."""
    local = moment.astimezone(tz).date()
    if group_by == "day":
        return local.isoformat(), local
    if group_by == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}", local - timedelta(days=local.weekday())
    return f"{local.year}-{local.month:02d}", local.replace(day=1)
