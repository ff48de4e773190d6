"""Receivables arithmetic, no I/O: day keys, ageing buckets, rates, the lifetime-value sort key."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

#: Ageing buckets by whole days past the due day (an instalment due today is not yet due).
BUCKETS: tuple[str, ...] = ("0-30", "31-60", "61-90", "90+")
NOT_DUE = "not_due"
RATE = Decimal("0.0001")
#: Lifetime values up to 10**17 minor units sort right (the key is fixed-width).
_RANK_WIDTH = 18
_RANK_TOP = 10**_RANK_WIDTH - 1


def day_key(day: date) -> int:
    """A day as an integer YYYYMMDD: sorts and compares like the day, served by an index."""
    return day.year * 10000 + day.month * 100 + day.day


def key_day(key: int) -> date:
    return date(key // 10000, key // 100 % 100, key % 100)


def bucket(due: date, as_of: date) -> str:
    """Where an unpaid instalment due on ``due`` falls on ``as_of``."""
    days = (as_of - due).days
    if days <= 0:
        return NOT_DUE
    if days <= 30:
        return BUCKETS[0]
    if days <= 60:
        return BUCKETS[1]
    if days <= 90:
        return BUCKETS[2]
    return BUCKETS[3]


def rate(part: Decimal, whole: Decimal) -> str | None:
    """part / whole as a decimal string with 4 places; None when there is nothing to divide by."""
    if not whole:
        return None
    return str((part / whole).quantize(RATE, rounding=ROUND_HALF_UP))


def average(total: int, count: int) -> str | None:
    """A 1-5 satisfaction average to 2 places (decimal string)."""
    if not count:
        return None
    return str((Decimal(total) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def value_rank(currency: str, value: Decimal, customer_id: str) -> str:
    """The lifetime-value sort key: ascending order is the currency's customers by value descending
    (then by customer id), so one index range on it serves a keyset page."""
    minor = max(0, int((value * 100).to_integral_value(rounding=ROUND_HALF_UP)))
    return f"{currency}|{_RANK_TOP - min(minor, _RANK_TOP):0{_RANK_WIDTH}d}|{customer_id}"
