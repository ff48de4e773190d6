"""Phone numbers and email addresses (of customers, contacts and users): shared by every service.

Both are normalised to one canonical string so that the duplicate check can
compare them with ``==`` and an index: phones to E.164, emails to a lower-cased
address. Anything that cannot be normalised is refused with a reason a person
can act on.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Final, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import (
    NumberParseException,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)
from pydantic import AfterValidator, Field

__all__ = [
    "InvalidEmail",
    "InvalidPhone",
    "PhoneKind",
    "normalise_email",
    "normalise_phone",
    "phone_kind",
]

PhoneKind = Literal[
    "mobile",
    "fixed_line",
    "fixed_line_or_mobile",
    "voip",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "unknown",
]

# Every type phonenumbers knows is named, not only the common ones: China's
# 400 numbers, printed on most company websites, are "shared_cost", and
# folding them into "unknown" would hide that from reports.
_KINDS: Final[dict[int, PhoneKind]] = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

_PARSE_REASONS: Final[dict[int, str]] = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

# "转" and "分机" are how Chinese users write an extension ("0755-88886666转123");
# phonenumbers does not know them and would only say "not a phone number".
_CHINESE_EXTENSION: Final = re.compile(r"转|分机")
_TEL_URI_PREFIX: Final = re.compile(r"^\s*tel:", re.IGNORECASE)


class InvalidPhone(ValueError):
    """A phone number was refused; ``reason`` is meant for the person who typed it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidEmail(ValueError):
    """An email address was refused; ``reason`` is email_validator's explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _extension_reason(extension: str) -> str:
    # E.164 has no room for an extension. Dropping it silently would lose the
    # part that reaches the actual person, so the caller must store it apart.
    shown = f" ({extension})" if extension else ""
    return f"has an extension{shown}; enter the number without it and keep the extension separately"


def _region_of(number: phonenumbers.PhoneNumber, default_region: str) -> str:
    if number.country_code is None:
        return default_region
    region = phonenumbers.region_code_for_country_code(number.country_code)
    # "001" is the region of non-geographic numbers; "ZZ" means unknown.
    return default_region if region in ("ZZ", "001") else region


def normalise_phone(raw: str, default_region: str = "CN") -> str:
    """Return ``raw`` as an E.164 string such as ``"+8613800138000"``.

    Numbers without a ``+`` country code are read as numbers of
    ``default_region`` (ISO 3166 alpha-2), so "(0755) 8888-6666" is a Shenzhen
    landline. Raises ``InvalidPhone`` for anything that is not a valid number,
    and ``ValueError`` if ``default_region`` itself is unknown (a configuration
    error, not the user's).
    """
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown default region {default_region!r}")
    # NFKC folds full-width digits and "＋" from Chinese IMEs.
    text = _TEL_URI_PREFIX.sub("", unicodedata.normalize("NFKC", raw)).strip()
    if not text:
        raise InvalidPhone("phone number is empty")
    if _CHINESE_EXTENSION.search(text):
        raise InvalidPhone(_extension_reason(""))
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise InvalidPhone(_PARSE_REASONS.get(exc.error_type, "not a phone number")) from exc
    if number.extension:
        raise InvalidPhone(_extension_reason(number.extension))
    # phonenumbers reads letters as keypad digits ("1-800-FLOWERS"), which turns
    # a typo or a name pasted into the wrong field into a "valid" number.
    if any(unicodedata.category(ch).startswith("L") for ch in text):
        raise InvalidPhone("contains letters")
    number_region = _region_of(number, region)
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.TOO_SHORT:
        raise InvalidPhone("too short")
    if possible == ValidationResult.TOO_LONG:
        raise InvalidPhone("too long")
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        raise InvalidPhone("unknown country calling code")
    if possible == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        raise InvalidPhone(f"a local number only; add the area code for region {number_region}")
    if possible == ValidationResult.INVALID_LENGTH:
        raise InvalidPhone(f"wrong number of digits for region {number_region}")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"not a valid number for region {number_region}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def phone_kind(e164: str) -> PhoneKind:
    """Return what kind of line an E.164 number is ("mobile", "fixed_line", ...).

    Only accepts the canonical form ``normalise_phone`` returns, so a stored
    value that was never normalised is caught rather than guessed at.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException as exc:
        raise InvalidPhone(f"not an E.164 number: {e164!r}") from exc
    if phonenumbers.format_number(number, PhoneNumberFormat.E164) != e164:
        raise InvalidPhone(f"not an E.164 number: {e164!r}")
    return _KINDS.get(phonenumbers.number_type(number), "unknown")


def normalise_email(raw: str) -> str:
    """Return the address with domain and local part lower-cased.

    RFC 5321 lets the receiving server treat the local part case-sensitively,
    but no mainstream provider (QQ, 163, Gmail, Exchange ...) does, and reps do
    type "Zhang.San@" and "zhang.san@" for the same person. For a duplicate
    check a missed duplicate costs more than the theoretical mailbox that differs
    only by case, so the whole address is compared case-insensitively.
    """
    # NFKC first: a Chinese IME yields "＠" and full-width letters, which
    # email_validator rejects or keeps as distinct characters.
    text = unicodedata.normalize("NFKC", raw).strip()
    try:
        validated = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    # email_validator already lower-cases and IDNA-normalises the domain.
    # lower(), not casefold(): casefold turns "ß" into "ss", a different mailbox.
    return f"{validated.local_part.lower()}@{validated.domain}"


def _phone_field(value: str) -> str:
    try:
        return normalise_phone(value)
    except InvalidPhone as exc:
        raise ValueError(f"'{value}' is not a valid phone number: {exc}") from exc


def _email_field(value: str) -> str:
    try:
        return normalise_email(value)
    except InvalidEmail as exc:
        raise ValueError(f"'{value}' is not a valid email address: {exc}") from exc


#: A phone or an email in a request body: normalised (E.164; lower-cased), or a 422 naming it and why.
Phone = Annotated[str, Field(min_length=3, max_length=40), AfterValidator(_phone_field)]
Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email_field)]
