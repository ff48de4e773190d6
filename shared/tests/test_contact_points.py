"""Phone and email normalisation for customers and contacts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_platform.contact_points import (
    InvalidEmail,
    InvalidPhone,
    normalise_email,
    normalise_phone,
    phone_kind,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("138 0013 8000", "+8613800138000"),
        ("13800138000", "+8613800138000"),
        ("+86 138-0013-8000", "+8613800138000"),
        ("0086 138 0013 8000", "+8613800138000"),
        ("86-13800138000", "+8613800138000"),
        ("１３８　００１３　８０００", "+8613800138000"),
        ("＋８６ １３８００１３８０００", "+8613800138000"),
        ("tel:+86-138-0013-8000", "+8613800138000"),
        ("+86 10 8888 6666", "+861088886666"),
        ("010-88886666", "+861088886666"),
        ("(0755) 8888-6666", "+8675588886666"),
        ("+86 (0)755 8888 6666", "+8675588886666"),
        ("400-812-3123", "+864008123123"),
        ("+1 650-253-0000", "+16502530000"),
        ("+44 20 7946 0018", "+442079460018"),
    ],
)
def test_normalise_phone(raw: str, expected: str) -> None:
    assert normalise_phone(raw) == expected


def test_default_region_reads_national_numbers() -> None:
    assert normalise_phone("(650) 253-0000", default_region="US") == "+16502530000"
    assert normalise_phone("020 7946 0018", default_region="gb") == "+442079460018"
    # An explicit country code wins over the default region.
    assert normalise_phone("+86 138 0013 8000", default_region="US") == "+8613800138000"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "phone number is empty"),
        ("   ", "phone number is empty"),
        ("abc", "not a phone number"),
        ("12", "too short"),
        ("1380013800", "not a valid number for region CN"),
        ("+1 555 000 0000", "not a valid number for region US"),
        ("0755-88886666-123", "too long"),
        ("+999 123", "unknown country calling code"),
        ("12345", "a local number only; add the area code for region CN"),
        ("1-800-FLOWERS", "contains letters"),
    ],
)
def test_invalid_phone_reasons(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhone) as info:
        normalise_phone(raw)
    assert info.value.reason == reason
    assert str(info.value) == reason


@pytest.mark.parametrize(
    "raw",
    [
        "0755-88886666转123",
        "0755-88886666 分机 123",
        "0755-88886666 ext. 123",
        "+86 755 8888 6666#123",
    ],
)
def test_extensions_are_refused_not_dropped(raw: str) -> None:
    with pytest.raises(InvalidPhone, match="has an extension"):
        normalise_phone(raw)


def test_unknown_default_region_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown default region") as info:
        normalise_phone("13800138000", default_region="XX")
    assert not isinstance(info.value, InvalidPhone)


def test_errors_are_value_errors() -> None:
    assert issubclass(InvalidPhone, ValueError)
    assert issubclass(InvalidEmail, ValueError)


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_any_chinese_mobile_shape_round_trips(rest: str) -> None:
    # 13x is a fully allocated mobile range.
    number = "13" + rest[:9]
    e164 = normalise_phone(number)
    assert e164 == "+86" + number
    assert normalise_phone(e164) == e164
    assert phone_kind(e164) == "mobile"


@given(st.text(max_size=40))
def test_normalise_phone_only_raises_invalid_phone(raw: str) -> None:
    try:
        e164 = normalise_phone(raw)
    except InvalidPhone:
        return
    assert e164.startswith("+")
    assert e164[1:].isdigit()
    assert normalise_phone(e164) == e164


@pytest.mark.parametrize(
    ("e164", "kind"),
    [
        ("+8613800138000", "mobile"),
        ("+8675588886666", "fixed_line"),
        ("+861088886666", "fixed_line"),
        ("+16502530000", "fixed_line_or_mobile"),
        ("+868008108888", "toll_free"),
        ("+864008123123", "shared_cost"),
        ("+447911123456", "mobile"),
        ("+8612345", "unknown"),
    ],
)
def test_phone_kind(e164: str, kind: str) -> None:
    assert phone_kind(e164) == kind


@pytest.mark.parametrize("not_e164", ["13800138000", "+86 138 0013 8000", "", "+86-13800138000"])
def test_phone_kind_wants_e164(not_e164: str) -> None:
    with pytest.raises(InvalidPhone, match=r"not an E\.164 number"):
        phone_kind(not_e164)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John.Doe@Example.COM", "john.doe@example.com"),
        ("  zhang.san@QQ.com ", "zhang.san@qq.com"),
        ("ＺＨＡＮＧ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "zhang@example.com"),
        ("Ünïcode@BÜCHER.de", "ünïcode@bücher.de"),
        ("x@xn--bcher-kva.de", "x@bücher.de"),
        ("用户@例子.广告", "用户@例子.广告"),
        ("Straße@example.com", "straße@example.com"),
    ],
)
def test_normalise_email(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


def test_email_case_variants_are_one_key() -> None:
    assert normalise_email("Zhang.San@163.COM") == normalise_email("zhang.san@163.com")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "must have an @-sign"),
        ("bad", "must have an @-sign"),
        ("a@b", "should have a period"),
        ("a..b@example.com", "two periods in a row"),
        ("a b@example.com", "invalid characters"),
        ("a@example.invalid", "special-use or reserved name"),
    ],
)
def test_invalid_email_carries_library_message(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidEmail, match=fragment) as info:
        normalise_email(raw)
    assert info.value.reason == str(info.value)
