"""China's Unified Social Credit Code (统一社会信用代码, GB 32100-2015).

Layout of the 18 characters (1-based positions, as the standard numbers them):

    1      registration authority (登记管理部门代码)
    2      organisation type (机构类别代码)
    3-8    administrative division of the registering office (digits, GB/T 2260)
    9-17   organisation code (组织机构代码, GB 11714); 17 is its own check digit
    18     check character over positions 1-17 (GB 32100)

Both checks are enforced. The GB 11714 check at position 17 was tested against
published codes of every shape we could find (old numeric organisation codes such
as Huawei's, ``MA...`` codes issued since 2015, individual businesses ``92...``);
every one that passes the GB 32100 check also passes GB 11714, so the second
check rejects typos without rejecting real companies.

Known exception: some Xiamen codes issued before the 2016 national roll-out do
not satisfy the GB 32100 check character at all (e.g. ``91350203M0001QKT19``,
hutool issue #4119). They are refused here like any other bad check character;
accepting them would need an explicit, audited override in the application
layer, not a weaker rule for everyone.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = [
    "USCC_ALPHABET",
    "InvalidUSCC",
    "normalise_uscc",
    "organisation_code_check_character",
    "uscc_check_character",
    "validate_uscc",
]

# I, O, S, V and Z are left out by the standard because they are easily
# confused with 1, 0, 5, U and 2 when written by hand.
USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE: Final[dict[str, int]] = {ch: i for i, ch in enumerate(USCC_ALPHABET)}

# 3**(i) mod 31 for i = 0..16, as tabulated in GB 32100-2015.
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_CODE_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)

_LENGTH: Final = 18

# Users paste codes from PDFs, web pages and Chinese IMEs: whitespace of every
# kind and the various dash characters are separators there, never content.
_SEPARATORS: Final = re.compile(r"[\s\-\u2010-\u2015\u2212]+")

# Letters that look like a digit: a reason that names the likely intended
# character saves the user a round trip.
_LOOKALIKES: Final[dict[str, str]] = {"O": "0", "I": "1"}


class InvalidUSCC(ValueError):
    """A USCC was refused; ``reason`` is meant to be shown to the person who typed it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_uscc(raw: str) -> str:
    """Return ``raw`` without separators, full-width forms folded, upper-cased.

    No validation happens here, so callers can normalise before storing a
    search key even for input they will later reject.
    """
    # NFKC folds full-width "９１３５..." typed with a Chinese IME into ASCII.
    folded = unicodedata.normalize("NFKC", raw)
    return _SEPARATORS.sub("", folded).upper()


def _org_code_value(ch: str) -> int:
    # GB 11714 values letters by their position in the full Latin alphabet
    # (A=10 ... Z=35), unlike GB 32100, which skips I, O, S, V, Z.
    return int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10


def organisation_code_check_character(first8: str) -> str:
    """Return the GB 11714 check character for an 8-character organisation code body.

    ``first8`` is positions 9-16 of a USCC (already normalised).
    """
    if len(first8) != len(_ORG_CODE_WEIGHTS):
        raise InvalidUSCC(f"an organisation code body has 8 characters, got {len(first8)}")
    for offset, ch in enumerate(first8):
        if not ("0" <= ch <= "9" or "A" <= ch <= "Z"):
            raise InvalidUSCC(f"illegal character {ch!r} at position {offset + 1} of the organisation code")
    total = sum(_org_code_value(ch) * w for ch, w in zip(first8, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 10:
        return "X"
    if check == 11:
        return "0"
    return str(check)


def uscc_check_character(first17: str) -> str:
    """Return the GB 32100 check character (position 18) for 17 normalised characters."""
    if len(first17) != _LENGTH - 1:
        raise InvalidUSCC(f"the check character is computed over 17 characters, got {len(first17)}")
    for index, ch in enumerate(first17):
        if ch not in _VALUE:
            raise InvalidUSCC(_illegal_character_reason(ch, index + 1))
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    # 31 - 0 would be 31, which is outside the alphabet: the standard maps it to 0.
    return USCC_ALPHABET[(31 - total % 31) % 31]


def _illegal_character_reason(ch: str, position: int) -> str:
    reason = f"illegal character {ch!r} at position {position}"
    hint = _LOOKALIKES.get(ch)
    if hint is not None:
        return f"{reason} (did you mean {hint!r}?)"
    return f"{reason}; a USCC uses digits and the letters A-Y except I, O, S, V, Z"


def validate_uscc(raw: str) -> str:
    """Return the normalised code, or raise ``InvalidUSCC`` saying what is wrong.

    Checks run from the coarsest to the finest so the reason names the first
    thing the user should fix: length, then characters, then check characters.
    """
    code = normalise_uscc(raw)
    if len(code) != _LENGTH:
        raise InvalidUSCC(f"a USCC has 18 characters, got {len(code)}")
    for index, ch in enumerate(code):
        if ch not in _VALUE:
            raise InvalidUSCC(_illegal_character_reason(ch, index + 1))
    for index in range(2, 8):
        if not code[index].isdigit():
            raise InvalidUSCC(
                f"illegal character {code[index]!r} at position {index + 1}: "
                "positions 3-8 are the administrative division code and must be digits"
            )
    # Position 18 covers all of 1-17, so it is checked first: a mismatch there
    # catches any single mistyped character, wherever it is.
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        raise InvalidUSCC(
            f"wrong check character {code[17]!r} at position 18: the first 17 characters "
            f"give {expected!r}; one of the characters is probably mistyped"
        )
    expected_org = organisation_code_check_character(code[8:16])
    if code[16] != expected_org:
        raise InvalidUSCC(
            f"wrong organisation code check character {code[16]!r} at position 17 "
            f"(GB 11714): positions 9-16 give {expected_org!r}"
        )
    return code
