"""Money as Decimal (events carry decimal strings); outputs are strings with two decimals."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")


def dec(value: str | None) -> Decimal:
    if not value:
        return Decimal(0)
    try:
        return Decimal(value)
    except InvalidOperation:
        return Decimal(0)


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def ratio(part: float | Decimal, whole: float | Decimal, digits: int = 4) -> float | None:
    """part / whole, rounded; None when there is nothing to divide by."""
    if not whole:
        return None
    return round(float(part) / float(whole), digits)
