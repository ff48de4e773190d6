"""Money and quantities in sales: the platform's money rules (:mod:`crm_platform.money`: decimal
strings at the edges, integer minor units in storage, never floats) and the quantity of a line.

"1280.5" in CNY is the price 1280.50 (128050 fen); "1280.505" is refused (a price list states its
prices to the cent: a digit the currency has no unit for is a typing error, not something to round
away silently); "-1" is refused.
"""

from __future__ import annotations

from decimal import Decimal

from crm_platform.money import (
    CURRENCY_EXPONENTS,
    MAX_WHOLE_DIGITS,
    InvalidMoney,
    currency_code,
    decimal_parts,
    format_minor,
    quantize,
    to_minor,
)

__all__ = [
    "CURRENCY_EXPONENTS",
    "MAX_WHOLE_DIGITS",
    "QUANTITY_PLACES",
    "InvalidMoney",
    "currency_code",
    "format_minor",
    "quantity",
    "quantize",
    "to_minor",
]

QUANTITY_PLACES = 4


def quantity(text: str) -> str:
    """A positive quantity as a normalised decimal string ('10.0' -> '10', '0.50' -> '0.5')."""
    whole, frac = decimal_parts(text, "quantity")
    if len(frac.rstrip("0")) > QUANTITY_PLACES:
        raise InvalidMoney(f"at most {QUANTITY_PLACES} decimals (got '{text}')")
    number = Decimal(f"{whole}.{frac or '0'}")
    if number <= 0:
        raise InvalidMoney("must be more than 0")
    return format(number.normalize(), "f")
