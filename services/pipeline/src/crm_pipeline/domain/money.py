"""Money: decimal strings in the API, integer minor units plus an ISO 4217 code in storage.

Floats never touch an amount: "125000.10" is parsed as text into 12500010 fen, and
sums and weighted amounts are integer arithmetic.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

#: Currencies we accept and their minor-unit exponent (ISO 4217). Extend as the business needs.
CURRENCY_EXPONENTS: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "MOP": 2,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "KRW": 0,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "NZD": 2,
    "THB": 2,
    "MYR": 2,
    "IDR": 2,
    "VND": 0,
    "INR": 2,
    "RUB": 2,
    "AED": 2,
    "SAR": 2,
    "BRL": 2,
    "MXN": 2,
    "ZAR": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
}
MAX_DIGITS = 15  # whole units: a quadrillion is beyond any deal, and far inside int64 minor units
_AMOUNT = re.compile(r"^(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?$")  # ASCII digits only


class InvalidMoney(ValueError):
    """The text is not an amount we accept; the message says why, for a person."""


def currency_code(raw: str) -> str:
    code = raw.strip().upper()
    if code not in CURRENCY_EXPONENTS:
        raise InvalidMoney(f"unknown currency '{raw}'; use an ISO 4217 code such as CNY, USD or EUR")
    return code


def parse_money(text: str, currency: str) -> int:
    """'125000.00' in CNY -> 12500000 (fen). Refuses signs, separators, exponents and excess decimals."""
    exponent = CURRENCY_EXPONENTS[currency_code(currency)]
    value = text.strip()
    match = _AMOUNT.match(value)
    if match is None:
        if value.startswith("-"):
            raise InvalidMoney("must not be negative")
        if "," in value or "，" in value:
            raise InvalidMoney(f"write the amount without thousands separators, e.g. '125000.00' (got '{text}')")
        raise InvalidMoney(f"not an amount: '{text}'; write a decimal number such as '125000.00'")
    whole, frac = match.group("whole"), match.group("frac") or ""
    if len(whole.lstrip("0")) > MAX_DIGITS:
        raise InvalidMoney(f"too large: at most {MAX_DIGITS} digits before the decimal point")
    if len(frac.rstrip("0")) > exponent:
        unit = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
        raise InvalidMoney(f"{currency} amounts have {unit} (got '{text}')")
    frac = (frac + "0" * exponent)[:exponent]
    return int(whole + frac)  # frac has exactly `exponent` digits now


def format_money(minor: int, currency: str) -> str:
    exponent = CURRENCY_EXPONENTS[currency]
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def format_optional(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_money(minor, currency)


def weighted(minor: int, probability: int) -> int:
    """amount × probability%, rounded half up to a minor unit."""
    return int((Decimal(minor) * probability / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def line_total(quantity: Decimal, unit_price_minor: int) -> int:
    return int((quantity * unit_price_minor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
