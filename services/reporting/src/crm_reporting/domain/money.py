"""Money as Decimal (events carry decimal strings); outputs are strings in the currency's own
precision (`money_in`): every amount a report gives is of one currency."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from crm_platform.money import CURRENCY_EXPONENTS


def dec(value: str | None) -> Decimal:
    if not value:
        return Decimal(0)
    try:
        return Decimal(value)
    except InvalidOperation:
        return Decimal(0)


def money_in(value: Decimal, currency: str) -> str:
    """A sum of amounts of one currency in that currency's precision ('1.234' KWD stays '1.234',
    '1000' JPY is '1000'); a currency the platform does not know gets two decimals."""
    places = CURRENCY_EXPONENTS.get(currency, 2)
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def ratio(part: float | Decimal, whole: float | Decimal, digits: int = 4) -> float | None:
    """part / whole, rounded; None when there is nothing to divide by."""
    if not whole:
        return None
    return round(float(part) / float(whole), digits)
