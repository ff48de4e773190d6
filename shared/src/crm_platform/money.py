"""Money for every service: decimal strings at the edges (the API, the events), integer minor units
plus an ISO 4217 code beside them in storage, never floats.

"125000.10" in CNY is parsed as text into 12500010 fen, and sums are integer arithmetic. A digit the
currency has no unit for ("1280.505" CNY) is refused, not rounded away: an amount a person typed
with a fraction of a fen is a typing error. Signs, thousands separators, exponents and non-ASCII
digits are refused too, each with a reason a person can act on.
"""

from __future__ import annotations

import re

#: ISO 4217 codes we accept and their minor-unit exponent. Extend as the business needs.
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
    "KWD": 3,
    "BHD": 3,
}
MAX_WHOLE_DIGITS = 15  # a quadrillion is beyond any deal, and far inside int64 minor units
_NUMBER = re.compile(r"^(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]*))?$")  # ASCII digits only, no sign, no exponent


class InvalidMoney(ValueError):
    """The text is not an amount (or quantity) we accept; the message says why, for a person."""


def currency_code(raw: str) -> str:
    """An ISO 4217 code we know, upper-cased ("cny" is CNY)."""
    code = raw.strip().upper()
    if code not in CURRENCY_EXPONENTS:
        known = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise InvalidMoney(f"unknown currency '{raw}'; use an ISO 4217 code: {known}")
    return code


def decimal_parts(text: str, what: str = "amount") -> tuple[str, str]:
    """The whole and fraction digits of a plain, non-negative decimal ('12.50' -> ('12', '50'))."""
    value = text.strip()
    match = _NUMBER.match(value)
    if match is None:
        if value.startswith("-"):
            raise InvalidMoney("must not be negative")
        if "," in value or "，" in value:
            raise InvalidMoney(f"write the {what} without thousands separators, e.g. '12800.00' (got '{text}')")
        article = "an" if what[:1] in "aeiou" else "a"
        raise InvalidMoney(f"'{text}' is not {article} {what}; write a decimal such as '12800.00'")
    whole, frac = match.group("whole"), match.group("frac") or ""
    if len(whole.lstrip("0")) > MAX_WHOLE_DIGITS:
        raise InvalidMoney(f"too large: at most {MAX_WHOLE_DIGITS} digits before the decimal point")
    return whole, frac


def to_minor(text: str, currency: str) -> int:
    """'1280.5' in CNY -> 128050 (fen). Refuses signs, separators, exponents and digits beyond the
    currency's minor unit (trailing zeros beyond it are fine: '1280.500' is 1280.50)."""
    code = currency_code(currency)
    exponent = CURRENCY_EXPONENTS[code]
    whole, frac = decimal_parts(text, "amount")
    if len(frac.rstrip("0")) > exponent:
        unit = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
        raise InvalidMoney(f"{code} amounts have {unit} (got '{text}')")
    frac = (frac + "0" * exponent)[:exponent]
    return int(whole + frac)  # frac has exactly `exponent` digits now


def format_minor(minor: int, currency: str) -> str:
    """128050 fen -> '1280.50': the amount in the currency's precision."""
    exponent = CURRENCY_EXPONENTS[currency]
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def quantize(text: str, currency: str) -> str:
    """The amount as stored and published: '1280.5' in CNY is '1280.50', in JPY '1280.5' is refused."""
    code = currency_code(currency)
    return format_minor(to_minor(text, code), code)
