"""Customer name keys for duplicate checks, and names as stored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_customers.domain.names import display_name, normalise_name


@pytest.mark.parametrize(
    "raw",
    [
        "北京字节跳动科技有限公司",
        "北京字节跳动科技 有限公司",
        "北京字节跳动科技（有限公司）",
        "北京字节跳动科技(有限公司)",
    ],
)
def test_chinese_spellings_of_one_company_agree(raw: str) -> None:
    assert normalise_name(raw) == "北京字节跳动科技"


@pytest.mark.parametrize(
    "raw",
    [
        "ACME Co., Ltd.",
        "acme company limited",
        "ＡＣＭＥ ＬＴＤ",
        "Acme Co.,Ltd",
        "ACME Inc.",
        "Acme Corp",
        "ACME LLC",
    ],
)
def test_english_spellings_of_one_company_agree(raw: str) -> None:
    assert normalise_name(raw) == "acme"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("中国石油化工股份有限公司", "中国石油化工"),
        ("小米科技有限责任公司", "小米科技"),
        ("阿里巴巴集团控股有限公司", "阿里巴巴"),
        ("中国移动通信集团有限公司", "中国移动通信"),
        ("中国平安保险（集团）股份有限公司", "中国平安保险"),
        ("某某总公司", "某某"),
        ("【测试】公司", "测试"),
        ("华为 Ltd.", "华为"),
        ("Siemens GmbH", "siemens"),
        ("HSBC Holdings plc", "hsbc"),
        ("Boston Consulting Group, Inc.", "boston consulting"),
        ("Foxconn Technology Group", "foxconn technology"),
        ("McDonald's Corporation", "mcdonalds"),
        ("Johnson & Johnson", "johnson johnson"),
        ("史蒂夫·乔布斯", "史蒂夫乔布斯"),
        ("  Acme   Trading  ", "acme trading"),
        ("Acme\tTrading\nLimited", "acme trading"),
        ("华为Huawei", "华为huawei"),
        ("华为 Huawei", "华为huawei"),
    ],
)
def test_normalise_name(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("有限公司", "有限公司"),
        ("集团有限公司", "集团有限公司"),
        ("Ltd.", "ltd"),
        ("Co., Ltd.", "co ltd"),
        ("Company Limited", "company limited"),
    ],
)
def test_a_name_that_is_only_a_suffix_keeps_it(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected


def test_suffix_words_inside_a_name_stay() -> None:
    assert normalise_name("Limited Brands Trading") == "limited brands trading"
    assert normalise_name("公司治理研究院") == "公司治理研究院"
    assert normalise_name("Cisco") == "cisco"


def test_branch_stays_distinct_from_parent() -> None:
    parent = normalise_name("北京字节跳动科技有限公司")
    branch = normalise_name("北京字节跳动科技有限公司上海分公司")
    assert branch == "北京字节跳动科技上海分公司"
    assert branch != parent


@pytest.mark.parametrize(
    "raw",
    [
        "北京字节跳动科技有限公司上海分公司",
        "北京字节跳动科技上海分公司",
        "北京字节跳动科技（有限公司）上海分公司",
    ],
)
def test_spellings_of_one_branch_agree(raw: str) -> None:
    assert normalise_name(raw) == "北京字节跳动科技上海分公司"


def test_bank_branches_keep_branch_marker() -> None:
    assert normalise_name("中国工商银行股份有限公司北京分行") == "中国工商银行北京分行"


def test_only_punctuation_normalises_to_empty() -> None:
    assert normalise_name(" （）【】·。 ") == ""


def _full_width(text: str) -> str:
    return "".join("\u3000" if ch == " " else chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


_PRINTABLE_ASCII = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))
_MIXED = st.text(alphabet=st.sampled_from([*"AbcXyz ,.()-'", "有", "限", "公", "司", "集", "团", "华", "为"]))


@given(st.text())
def test_normalise_name_is_idempotent(raw: str) -> None:
    key = normalise_name(raw)
    assert normalise_name(key) == key


@given(st.text())
def test_normalised_whitespace_is_single_spaces_between_words(raw: str) -> None:
    key = normalise_name(raw)
    assert key == key.strip()
    assert "  " not in key
    assert all(ch == " " or not ch.isspace() for ch in key)


@given(_PRINTABLE_ASCII)
def test_full_width_input_normalises_like_ascii(raw: str) -> None:
    assert normalise_name(_full_width(raw)) == normalise_name(raw)


@given(_MIXED)
def test_case_does_not_matter(raw: str) -> None:
    assert normalise_name(raw.upper()) == normalise_name(raw.lower())


@given(_MIXED)
def test_spaces_next_to_chinese_do_not_matter(raw: str) -> None:
    assert normalise_name(raw.replace("华", " 华 ")) == normalise_name(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  ＡＣＭＥ　　Ｔｒａｄｉｎｇ  ", "ACME Trading"),
        ("阿里巴巴（中国）有限公司", "阿里巴巴（中国）有限公司"),
        ("华为技术\t有限公司", "华为技术 有限公司"),
        ("Ｎｏ．１２３", "No．123"),
        ("ACME Co., Ltd.", "ACME Co., Ltd."),
        ("", ""),
    ],
)
def test_display_name(raw: str, expected: str) -> None:
    assert display_name(raw) == expected


@given(st.text())
def test_display_name_is_idempotent(raw: str) -> None:
    once = display_name(raw)
    assert display_name(once) == once
