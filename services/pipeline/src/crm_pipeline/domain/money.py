"""Money in the pipeline: the platform's money rules (:mod:`crm_platform.money`: decimal strings in
the API, integer minor units plus an ISO 4217 code in storage, never floats), and the weighted
amounts and line totals of opportunities, in integer arithmetic rounded half up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from crm_platform.money import CURRENCY_EXPONENTS, InvalidMoney, currency_code, format_minor, to_minor

__all__ = [
    "CURRENCY_EXPONENTS",
    "InvalidMoney",
    "currency_code",
    "format_minor",
    "format_optional",
    "line_total",
    "to_minor",
    "weighted",
]


def format_optional(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_minor(minor, currency)


def weighted(minor: int, probability: int) -> int:
    """amount × probability%, rounded half up to a minor unit."""
    return int((Decimal(minor) * probability / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def line_total(quantity: Decimal, unit_price_minor: int) -> int:
    return int((quantity * unit_price_minor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
