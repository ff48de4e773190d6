"""Company names: a key for duplicate checks (查重) and a tidy form for storage (customers, leads).

``normalise_name`` is deliberately lossy: it exists so that two reps typing the
same company in different ways ("ACME Co., Ltd." / "acme company limited",
"北京字节跳动科技有限公司" / "北京字节跳动科技（有限公司）") get the same key. It is
never shown to users; ``display_name`` is what gets stored and displayed.

Branches (分公司) are kept distinct from their parent: a branch has its own
registration and its own USCC, usually its own contacts and billing, and under
"first entered owns" (谁先录入归谁) it can belong to a different rep. So
"分公司" (and 分行, 支行, 分店, 办事处) is never stripped, and "公司" is not
stripped when it is the tail of "分公司"; only the parent's legal form inside a
branch name goes ("X有限公司上海分公司" -> "x上海分公司"). The similarity check
still ranks a branch close to its parent, which is how the rep learns who owns
the parent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["display_name", "normalise_name"]

# Chinese legal-form suffixes, longest first so that "股份有限公司" is not
# reduced to "股份" by the shorter "有限公司". Stripping repeats, so compounds
# such as "集团股份有限公司" or "控股集团有限公司" need no entries of their own.
_CJK_SUFFIXES: Final = (
    "股份有限公司",
    "有限责任公司",
    "集团有限公司",
    "有限公司",
    "总公司",
    "公司",
    "集团",
    "控股",
)
_BRANCH: Final = "分公司"
# Branch markers, including the banks' 分行/支行 and shops' 分店: the same
# reasoning applies to all of them.
_BRANCH_MARKERS: Final = (_BRANCH, "分行", "支行", "分店", "办事处")
# Where a branch name says which company it belongs to: "X有限公司上海分公司".
_PARENT_LEGAL_FORM: Final = re.compile("|".join(s for s in _CJK_SUFFIXES if s.endswith("公司")))

# English legal-form words, matched as whole tokens at the end of the name.
# Multi-word forms ("co ltd", "company limited") fall out of repeated
# single-token stripping.
_LATIN_SUFFIXES: Final = frozenset(
    {
        "co",
        "company",
        "limited",
        "ltd",
        "inc",
        "incorporated",
        "llc",
        "corp",
        "corporation",
        "plc",
        "gmbh",
        "group",
        "holdings",
    }
)

# Apostrophes join rather than split, so "McDonald's" and "McDonalds" agree.
_APOSTROPHES: Final = frozenset("'\u2018\u2019\u02bc\uff07")

# Han, kana and hangul: scripts written without spaces between words.
_CJK_CLASS: Final = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
# Spaces next to a CJK character carry no meaning ("北京字节跳动科技 有限公司"),
# while spaces between Latin words do ("acme trading" is not "acmetrading").
_SPACE_NEXT_TO_CJK: Final = re.compile(rf"\s+(?=[{_CJK_CLASS}])|(?<=[{_CJK_CLASS}])\s+")
_WHITESPACE: Final = re.compile(r"\s+")
# A Latin legal-form word glued to CJK text once the spaces are gone: "华为ltd".
_LATIN_SUFFIX_AFTER_CJK: Final = re.compile(
    rf"(?<=[{_CJK_CLASS}])(?:{'|'.join(sorted(_LATIN_SUFFIXES, key=len, reverse=True))})\Z"
)

# Full-width ASCII letters and digits (U+FF10-FF19, FF21-FF3A, FF41-FF5A) and
# the ideographic space U+3000, mapped to their ASCII counterparts.
_FULLWIDTH_TO_ASCII: Final[dict[int, int]] = {
    **{cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)},
    **{cp: cp - 0xFEE0 for cp in range(0xFF21, 0xFF3B)},
    **{cp: cp - 0xFEE0 for cp in range(0xFF41, 0xFF5B)},
    0x3000: 0x20,
}


def _drop_punctuation(text: str) -> str:
    # Unicode categories P* (punctuation) and S* (symbols) cover ASCII and CJK
    # marks alike (（）【】·。、，&-_ ® ...), so no hand-kept list can fall behind.
    # They become spaces rather than vanishing, so "co.,ltd" still splits into
    # the tokens "co" and "ltd".
    out: list[str] = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        out.append(" " if unicodedata.category(ch)[0] in "PS" else ch)
    return "".join(out)


def _strip_one_suffix(name: str) -> str | None:
    """Return ``name`` without one legal-form suffix, or None if it has none."""
    if name.endswith(_BRANCH):
        return None
    for suffix in _CJK_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)].rstrip()
    head, sep, last = name.rpartition(" ")
    if last in _LATIN_SUFFIXES:
        return head if sep else ""
    glued = _LATIN_SUFFIX_AFTER_CJK.search(name)
    if glued is not None:
        return name[: glued.start()]
    return None


def normalise_name(raw: str) -> str:
    """Return the duplicate-check key for a customer name.

    Full-width forms are folded, case is folded, punctuation and legal-form
    suffixes are removed. If nothing but suffixes remains (a name that is
    just "有限公司"), the key keeps them: an empty key would match every other
    such name.
    """
    # NFKC again after casefold: folding can yield sequences NFKC would
    # compose, and the key must be stable when normalised twice.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold())
    text = _drop_punctuation(text)
    text = _WHITESPACE.sub(" ", text).strip()
    text = _SPACE_NEXT_TO_CJK.sub("", text)
    for marker in _BRANCH_MARKERS:
        if text.endswith(marker):
            return _normalise_branch(text, marker)
    return _strip_suffixes(text)


def _strip_suffixes(text: str) -> str:
    before_stripping = text
    while (shorter := _strip_one_suffix(text)) is not None:
        text = shorter
    return text if text else before_stripping


def _normalise_branch(text: str, marker: str) -> str:
    # "北京字节跳动科技有限公司上海分公司" and "北京字节跳动科技上海分公司" are the same
    # branch: strip the parent's legal form, keep the branch part intact.
    body = text[: -len(marker)]
    parent_forms = list(_PARENT_LEGAL_FORM.finditer(body))
    if not parent_forms:
        return text
    split = parent_forms[-1].end()
    return _strip_suffixes(body[:split]) + body[split:] + marker


def display_name(raw: str) -> str:
    """Return the name as stored: trimmed, single-spaced, half-width letters and digits.

    Unlike ``normalise_name`` this keeps case, punctuation and full-width
    brackets （）, which Chinese users write on purpose; it only undoes the
    full-width letters, digits and spaces that a Chinese IME produces by accident.
    """
    return _WHITESPACE.sub(" ", raw.translate(_FULLWIDTH_TO_ASCII)).strip()
