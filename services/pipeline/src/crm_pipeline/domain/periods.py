"""Target and forecast periods: a month (2026-11), a quarter (2026-Q4) or a year (2026).

Periods are calendar periods in the business time zone; ``start`` is inclusive and
``end`` exclusive, both as dates, so "won in the period" is ``start <= won_on < end``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

PeriodKind = Literal["month", "quarter", "year"]
_PERIOD = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|[Qq](?P<quarter>[1-4])))?$")
MIN_YEAR, MAX_YEAR = 2000, 2100


class InvalidPeriod(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Period:
    year: int
    kind: PeriodKind
    index: int  # month 1-12, quarter 1-4, 0 for a year

    def __str__(self) -> str:
        if self.kind == "month":
            return f"{self.year}-{self.index:02d}"
        if self.kind == "quarter":
            return f"{self.year}-Q{self.index}"
        return str(self.year)

    @property
    def first_month(self) -> int:
        if self.kind == "month":
            return self.index
        if self.kind == "quarter":
            return 3 * self.index - 2
        return 1

    @property
    def month_count(self) -> int:
        return {"month": 1, "quarter": 3, "year": 12}[self.kind]

    @property
    def start(self) -> date:
        return date(self.year, self.first_month, 1)

    @property
    def end(self) -> date:
        month = self.first_month + self.month_count
        return date(self.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)

    def months(self) -> list[Period]:
        return [Period(self.year, "month", m) for m in range(self.first_month, self.first_month + self.month_count)]

    def quarters(self) -> list[Period]:
        """The quarters of a year (empty for a month or a quarter)."""
        return [Period(self.year, "quarter", q) for q in range(1, 5)] if self.kind == "year" else []

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end


def parse_period(text: str) -> Period:
    match = _PERIOD.match(text.strip())
    if match is None:
        raise InvalidPeriod(f"'{text}' is not a period; write 2026-11 (month), 2026-Q4 (quarter) or 2026 (year)")
    year = int(match.group("year"))
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidPeriod(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    if match.group("month"):
        month = int(match.group("month"))
        if not 1 <= month <= 12:
            raise InvalidPeriod(f"there is no month {month:02d}")
        return Period(year, "month", month)
    if match.group("quarter"):
        return Period(year, "quarter", int(match.group("quarter")))
    return Period(year, "year", 0)
