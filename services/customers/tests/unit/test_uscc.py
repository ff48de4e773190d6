"""Unified Social Credit Code rules (GB 32100-2015 with the GB 11714 organisation code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_customers.domain.uscc import (
    USCC_ALPHABET,
    InvalidUSCC,
    normalise_uscc,
    organisation_code_check_character,
    uscc_check_character,
    validate_uscc,
)

# Published codes. Each passes both check characters, which a mis-remembered
# or mis-typed code would do only about once in 341 tries (31 * 11).
REAL_CODES = [
    "91330100799655058B",  # 阿里巴巴（中国）有限公司
    "9144030071526726XG",  # 腾讯科技（深圳）有限公司
    "91440300708461136T",  # 深圳市腾讯计算机系统有限公司
    "914403001922038216",  # 华为技术有限公司
    "91110000802100433B",  # 百度在线网络技术（北京）有限公司
    "91520000214434146R",  # 贵州茅台酒股份有限公司
    "91110000710925462X",  # 中国石油天然气股份有限公司
    "91110000710926094P",  # 中国石油化工股份有限公司
    "91100000100003962T",  # 中国工商银行股份有限公司
    "911100001000044477",  # 中国建设银行股份有限公司
    "911000001000013428",  # 中国银行股份有限公司
    "911100001000054748",  # 中国农业银行股份有限公司
    "9144030010001686XA",  # 招商银行股份有限公司
    "91440300100012316L",  # 中国平安保险（集团）股份有限公司
    "91440300192317458F",  # 比亚迪股份有限公司
    "91440400192548256N",  # 珠海格力电器股份有限公司
    "91440300192181490G",  # 万科企业股份有限公司
    "91350900587527783P",  # 宁德时代新能源科技股份有限公司
]

# Published codes with letters in the organisation code (positions 9-16):
# the GB 11714 check must hold for them too, or it would have to go.
REAL_CODES_WITH_LETTERS = [
    "91350100M000100Y43",
    "91440300MA5H0HLK5U",  # 柯兴科技（深圳）有限公司, from its website footer
    "91110108MA01MNU448",  # 北京资源律动科技有限公司
    "91133100MA0D8N1J7G",
    "92340111MAD2LARQ9N",  # 个体工商户 (individual business)
    "92350603MADUMPGH7P",  # 个体工商户, from a court judgment
    "12440600MB2C07549J",  # 事业单位 (public institution)
]

# A real Xiamen code issued before the 2016 national roll-out whose check
# character does not follow GB 32100 (hutool issue #4119). It is refused on
# purpose; this test is here so that the limitation is visible.
LEGACY_XIAMEN_CODE = "91350203M0001QKT19"

_DIGITS = "0123456789"


@st.composite
def valid_codes(draw: st.DrawFn) -> str:
    """Structurally valid codes: both check characters computed."""
    head = draw(st.text(alphabet=USCC_ALPHABET, min_size=2, max_size=2))
    division = draw(st.text(alphabet=_DIGITS, min_size=6, max_size=6))
    org_body = draw(st.text(alphabet=USCC_ALPHABET, min_size=8, max_size=8))
    first17 = head + division + org_body + organisation_code_check_character(org_body)
    return first17 + uscc_check_character(first17)


@pytest.mark.parametrize("code", REAL_CODES + REAL_CODES_WITH_LETTERS)
def test_published_codes_are_valid(code: str) -> None:
    assert validate_uscc(code) == code


@pytest.mark.parametrize("code", REAL_CODES + REAL_CODES_WITH_LETTERS)
def test_check_characters_of_published_codes(code: str) -> None:
    assert uscc_check_character(code[:17]) == code[17]
    assert organisation_code_check_character(code[8:16]) == code[16]


def test_legacy_xiamen_code_is_refused() -> None:
    with pytest.raises(InvalidUSCC, match="position 18"):
        validate_uscc(LEGACY_XIAMEN_CODE)


def test_brief_candidate_without_valid_check_is_refused() -> None:
    # Offered as an example in the task brief; its check character is wrong.
    with pytest.raises(InvalidUSCC, match=r"expected|give '"):
        validate_uscc("911100001000056330")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 9144 0300 7152 6726 XG ", "9144030071526726XG"),
        ("9144-0300-7152-6726-xg", "9144030071526726XG"),
        ("９１４４０３００７１５２６７２６ＸＧ", "9144030071526726XG"),
        ("9144030071526726xg", "9144030071526726XG"),
        ("9144\u30000300\u30007152\u30006726XG", "9144030071526726XG"),
    ],
)
def test_normalise_uscc(raw: str, expected: str) -> None:
    assert normalise_uscc(raw) == expected
    assert validate_uscc(raw) == expected


@pytest.mark.parametrize("raw", ["", "9144030071526726X", "9144030071526726XGG"])
def test_wrong_length(raw: str) -> None:
    with pytest.raises(InvalidUSCC, match=f"18 characters, got {len(raw)}") as info:
        validate_uscc(raw)
    assert info.value.reason == str(info.value)


def test_illegal_character_is_named_with_its_position() -> None:
    with pytest.raises(InvalidUSCC, match=r"'O' at position 9 \(did you mean '0'\?\)"):
        validate_uscc("91440300O92203821" + "6")
    with pytest.raises(InvalidUSCC, match=r"'S' at position 10; a USCC uses"):
        validate_uscc("914403001S22038216")
    with pytest.raises(InvalidUSCC, match=r"'\*' at position 18"):
        validate_uscc("91440300192203821*")


def test_division_code_must_be_digits() -> None:
    with pytest.raises(InvalidUSCC, match="position 4: positions 3-8"):
        validate_uscc("914A03001922038216")


def test_wrong_check_character_says_which_was_expected() -> None:
    with pytest.raises(InvalidUSCC, match=r"wrong check character '7' at position 18.*give '6'"):
        validate_uscc("914403001922038217")


def test_wrong_organisation_check_digit_is_refused() -> None:
    # Position 17 changed from 1 to 2, then position 18 recomputed so that only
    # the GB 11714 check can catch it.
    first17 = "9144030019220382" + "2"
    code = first17 + uscc_check_character(first17)
    with pytest.raises(InvalidUSCC, match=r"position 17 \(GB 11714\): positions 9-16 give '1'"):
        validate_uscc(code)


def test_organisation_check_maps_ten_to_x_and_eleven_to_zero() -> None:
    assert organisation_code_check_character("71526726") == "X"
    assert organisation_code_check_character("10000020") == "0"


def test_check_character_zero_when_sum_divisible_by_31() -> None:
    assert uscc_check_character("0" * 17) == "0"


@pytest.mark.parametrize("bad", ["", "0" * 16, "0" * 18, "0" * 16 + "I"])
def test_check_character_rejects_bad_input(bad: str) -> None:
    with pytest.raises(InvalidUSCC):
        uscc_check_character(bad)


def test_invalid_uscc_is_a_value_error() -> None:
    assert issubclass(InvalidUSCC, ValueError)


@given(st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17))
def test_check_character_is_in_alphabet_and_deterministic(first17: str) -> None:
    check = uscc_check_character(first17)
    assert check in USCC_ALPHABET
    assert uscc_check_character(first17) == check


@given(valid_codes())
def test_generated_codes_round_trip(code: str) -> None:
    assert validate_uscc(code) == code
    spaced = " ".join(code[i : i + 4] for i in range(0, 18, 4)).lower()
    assert validate_uscc(spaced) == code


@pytest.mark.parametrize("code", REAL_CODES + REAL_CODES_WITH_LETTERS)
def test_every_single_substitution_of_a_published_code_is_refused(code: str) -> None:
    for index, original in enumerate(code):
        for replacement in USCC_ALPHABET:
            if replacement == original:
                continue
            mutated = code[:index] + replacement + code[index + 1 :]
            with pytest.raises(InvalidUSCC):
                validate_uscc(mutated)


@given(
    valid_codes(),
    st.integers(min_value=0, max_value=17),
    st.sampled_from(USCC_ALPHABET),
)
def test_single_substitution_of_a_generated_code_is_refused(code: str, index: int, replacement: str) -> None:
    mutated = code[:index] + replacement + code[index + 1 :]
    if mutated == code:
        assert validate_uscc(mutated) == code
    else:
        with pytest.raises(InvalidUSCC):
            validate_uscc(mutated)
