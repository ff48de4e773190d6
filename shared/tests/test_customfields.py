"""Custom field definitions and values (crm_platform.customfields): every type valid, invalid,
coerced, defaulted; definitions that cannot work are refused naming the attribute."""

from __future__ import annotations

from typing import Any

import pytest

from crm_platform.customfields import (
    DefinitionIn,
    DefinitionPatch,
    FieldSet,
    InvalidValue,
    check_definition,
    coerce,
    from_text,
    query_filters,
    to_text,
)
from crm_platform.errors import ValidationFailed

LABELS = {"zh-CN": "预算", "en": "Budget"}


def definition(key: str, type_: str, **extra: Any) -> dict[str, Any]:
    body = DefinitionIn.model_validate({"key": key, "type": type_, "labels": LABELS, **extra})
    return body.model_dump(mode="json", by_alias=True)


CHOICES = [
    {"key": "high", "labels": {"zh-CN": "高", "en": "High"}},
    {"key": "low", "labels": {"zh-CN": "低", "en": "Low"}},
    {"key": "legacy", "labels": {"zh-CN": "旧", "en": "Legacy"}, "active": False},
]


@pytest.mark.parametrize(
    ("type_", "extra", "value", "stored"),
    [
        ("text", {}, "上海", "上海"),
        ("text", {"validation": {"pattern": r"[A-Z]{2}\d{4}"}}, "AB1234", "AB1234"),
        ("number", {}, 42, 42),
        ("number", {}, "42", 42),
        ("number", {"validation": {"decimals": 2, "min": 0, "max": 100}}, 12.5, 12.5),
        ("money", {}, {"amount": "1234.5", "currency": "CNY"}, {"amount": "1234.50", "currency": "CNY"}),
        ("money", {}, {"amount": 1000, "currency": "USD"}, {"amount": "1000.00", "currency": "USD"}),
        ("date", {}, "2026-12-31", "2026-12-31"),
        ("choice", {"options": CHOICES}, "high", "high"),
        ("multi_choice", {"options": CHOICES}, ["high", "low", "high"], ["high", "low"]),
        ("user", {}, " rep-li ", "rep-li"),
        ("boolean", {}, True, True),
    ],
)
def test_valid_values_are_stored_in_their_form(type_: str, extra: dict[str, Any], value: Any, stored: Any) -> None:
    assert coerce(definition("f", type_, **extra), value) == stored


@pytest.mark.parametrize(
    ("type_", "extra", "value", "code"),
    [
        ("text", {}, 5, "string_type"),
        ("text", {"validation": {"max_length": 3}}, "abcd", "string_too_long"),
        ("text", {"validation": {"pattern": r"[A-Z]{2}\d{4}"}}, "AB12345", "string_pattern_mismatch"),
        ("number", {}, True, "decimal_type"),
        ("number", {}, "abc", "decimal_parsing"),
        ("number", {}, 1.5, "decimal_max_places"),
        ("number", {"validation": {"min": 10}}, 9, "greater_than_equal"),
        ("number", {"validation": {"max": 10}}, 11, "less_than_equal"),
        ("number", {}, "NaN", "decimal_parsing"),
        ("number", {}, "1e400", "less_than"),
        ("number", {}, -(10**15), "less_than"),
        ("money", {}, {"amount": 12.5, "currency": "CNY"}, "decimal_type"),  # never a float
        ("money", {}, {"amount": "1.234", "currency": "CNY"}, "decimal_max_places"),
        ("money", {}, {"amount": "1", "currency": "rmb"}, "string_pattern_mismatch"),
        ("money", {"validation": {"currencies": ["CNY"]}}, {"amount": "1", "currency": "USD"}, "enum"),
        ("money", {}, "100 CNY", "model_type"),
        ("money", {}, {"amount": "1e400", "currency": "CNY"}, "less_than"),
        ("date", {}, "2026-02-30", "date_parsing"),
        ("date", {}, 20261231, "date_type"),
        ("choice", {"options": CHOICES}, "medium", "enum"),
        ("choice", {"options": CHOICES}, "legacy", "enum"),  # deactivated: no new writes pick it
        ("multi_choice", {"options": CHOICES}, "high", "list_type"),
        ("multi_choice", {"options": CHOICES}, ["high", "nope"], "enum"),
        ("user", {}, "", "string_type"),
        ("boolean", {}, "yes", "bool_type"),
    ],
)
def test_invalid_values_are_refused_with_a_reason(type_: str, extra: dict[str, Any], value: Any, code: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        coerce(definition("f", type_, **extra), value)
    assert caught.value.code == code
    assert caught.value.reason


def test_a_deactivated_option_a_record_holds_may_stay() -> None:
    d = definition("f", "choice", options=CHOICES)
    assert coerce(d, "legacy", kept="legacy") == "legacy"
    multi = definition("g", "multi_choice", options=CHOICES)
    assert coerce(multi, ["legacy", "high"], kept=["legacy"]) == ["legacy", "high"]


@pytest.mark.parametrize(
    ("type_", "extra", "text", "stored"),
    [
        ("boolean", {}, "是", True),
        ("boolean", {}, "false", False),
        ("number", {}, " 7 ", 7),
        ("multi_choice", {"options": CHOICES}, "high; low", ["high", "low"]),
        ("money", {}, "99.9 cny", {"amount": "99.90", "currency": "CNY"}),
        ("date", {}, "2027-01-02", "2027-01-02"),
    ],
)
def test_text_as_people_type_it_round_trips(type_: str, extra: dict[str, Any], text: str, stored: Any) -> None:
    d = definition("f", type_, **extra)
    value = coerce(d, from_text(d, text))
    assert value == stored
    assert coerce(d, from_text(d, to_text(d, value))) == stored


def test_an_empty_cell_is_no_value() -> None:
    assert from_text(definition("f", "number"), "  ") is None


def fieldset() -> FieldSet:
    return FieldSet.of(
        [
            {**definition("budget", "money", required=True), "status": "active"},
            {**definition("stage", "choice", options=CHOICES, default="low"), "status": "active"},
            {**definition("vip", "boolean"), "status": "active"},
            {**definition("old", "text"), "status": "archived"},
        ]
    )


def test_create_applies_defaults_and_requires_required_fields() -> None:
    fields = fieldset()
    assert fields.validate({"budget": {"amount": "10", "currency": "CNY"}}) == {
        "budget": {"amount": "10.00", "currency": "CNY"},
        "stage": "low",
    }
    with pytest.raises(ValidationFailed) as caught:
        fields.validate({"vip": "no", "nope": 1, "old": "x"})
    errors = {e.field: e.reason for e in caught.value.errors}
    assert set(errors) == {"custom.budget", "custom.vip", "custom.nope", "custom.old"}
    assert errors["custom.budget"] == "required"
    assert "archived" in errors["custom.old"]
    assert "no such custom field" in errors["custom.nope"]


def test_a_change_touches_only_what_is_sent_and_never_clears_a_required_field() -> None:
    fields = fieldset()
    current = {"budget": {"amount": "10.00", "currency": "CNY"}, "stage": "low", "old": "kept"}
    assert fields.validate({"vip": True}, current) == {**current, "vip": True}
    assert fields.validate({"stage": None}, current) == {"budget": current["budget"], "old": "kept"}
    with pytest.raises(ValidationFailed) as caught:
        fields.validate({"budget": None}, current)
    assert [e.field for e in caught.value.errors] == ["custom.budget"]


def test_filters_need_a_filterable_field_and_a_value_it_can_hold() -> None:
    fields = FieldSet.of(
        [
            {**definition("stage", "choice", options=CHOICES, filterable=True), "status": "active"},
            {**definition("vip", "boolean"), "status": "active"},
        ]
    )
    assert fields.filter_value("stage", "legacy") == "legacy"  # records may still hold it
    for key, text, reason in (
        ("vip", "true", "not filterable"),
        ("stage", "medium", "not an option"),
        ("nope", "1", "no such custom field"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            fields.filter_value(key, text)
        assert caught.value.errors[0].field == f"custom.{key}"
        assert reason in caught.value.errors[0].reason


def test_a_query_strings_custom_filters_are_checked_and_the_rest_left_alone() -> None:
    fields = FieldSet.of(
        [
            {**definition("stage", "choice", options=CHOICES, filterable=True), "status": "active"},
            {**definition("size", "number", filterable=True), "status": "active"},
        ]
    )
    query = [("status", "open"), ("custom.stage", "legacy"), ("custom.size", "10..")]
    assert query_filters(fields, query) == {"stage": "legacy", "size": {"$gte": 10}}
    with pytest.raises(ValidationFailed) as caught:
        query_filters(fields, [("custom.stage", "legacy"), ("custom.stage", "legacy")])
    assert caught.value.errors[0].field == "custom.stage" and caught.value.errors[0].location == "query"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "name", "type": "text"}, "key"),  # a built-in field's name
        ({"key": "f", "type": "text", "validation": {"min": 1}}, "validation.min"),
        ({"key": "f", "type": "number", "validation": {"min": 5, "max": 1}}, "validation.max"),
        ({"key": "f", "type": "choice"}, "options"),
        ({"key": "f", "type": "text", "options": CHOICES}, "options"),
        ({"key": "f", "type": "choice", "options": [*CHOICES, CHOICES[0]]}, "options[3].key"),
        ({"key": "f", "type": "multi_choice", "options": CHOICES, "filterable": True}, "filterable"),
        ({"key": "f", "type": "number", "default": "x"}, "default"),
    ],
)
def test_definitions_that_cannot_work_are_refused(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_definition(_full(body), {"name", "tier"})
    assert field in [e.field for e in caught.value.errors]


def _full(body: dict[str, Any]) -> dict[str, Any]:
    return DefinitionIn.model_validate({"labels": LABELS, **body}).model_dump(mode="json", by_alias=True)


def test_options_are_never_dropped_or_rekeyed() -> None:
    previous = _full({"key": "f", "type": "choice", "options": CHOICES})
    renamed = {**previous, "options": [{**CHOICES[0], "key": "higher"}, *CHOICES[1:]]}
    with pytest.raises(ValidationFailed) as caught:
        check_definition(renamed, set(), previous=previous)
    assert caught.value.errors[0].field == "options"
    assert "high" in caught.value.errors[0].reason
    added = {**previous, "options": [*CHOICES, {"key": "mid", "labels": {"zh-CN": "中", "en": "Mid"}}]}
    check_definition(added, set(), previous=previous)


def test_bad_keys_and_labels_are_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="key"):
        DefinitionIn.model_validate({"key": "Budget!", "type": "text", "labels": LABELS})
    with pytest.raises(ValueError, match="en"):
        DefinitionIn.model_validate({"key": "b", "type": "text", "labels": {"zh-CN": "预算"}})
    with pytest.raises(ValueError, match="labels cannot be null"):
        DefinitionPatch.model_validate({"labels": None})


def test_number_and_date_filters_take_ranges() -> None:
    fields = FieldSet.of(
        [
            {**definition("size", "number", filterable=True), "status": "active"},
            {**definition("due", "date", filterable=True), "status": "active"},
        ]
    )
    assert fields.filter_value("size", "10..100") == {"$gte": 10, "$lte": 100}
    assert fields.filter_value("size", "..2.5") == {"$lte": 2.5}
    # A date matches its copy, the integer YYYYMMDD (an ISO string's range scans on the embedded store).
    assert fields.filter_value("due", "2026-01-01..") == {"$gte": 20260101}
    assert fields.filter_value("due", "2026-01-01..2026-03-31") == {"$gte": 20260101, "$lte": 20260331}
    assert fields.filter_value("due", " 2026-02-03") == 20260203
    assert fields.filter_path("due") == "s.cfq_due" and fields.filter_path("size") == "custom.size"
    assert fields.conditions({"due": 20260203, "size": 5}) == {"s.cfq_due": 20260203, "custom.size": 5}
    for key, text in (("size", ".."), ("size", "a..b"), ("due", "2026-13-01.."), ("due", "tomorrow")):
        with pytest.raises(ValidationFailed) as caught:
            fields.filter_value(key, text)
        assert caught.value.errors[0].field == f"custom.{key}" and caught.value.errors[0].location == "query"


def test_sort_copies_are_never_null_and_value_less_records_sort_first() -> None:
    from crm_platform.customfields import NO_SORT_VALUE, sort_copy

    number = {"key": "n", "type": "number", "sortable": True}
    boolean = {"key": "b", "type": "boolean", "sortable": True}
    text = {"key": "t", "type": "text", "sortable": True}
    date_ = {"key": "d", "type": "date"}  # neither sortable nor filterable: no copy
    day = {"key": "day", "type": "date", "sortable": True}
    fields = FieldSet.of([number, boolean, text, date_, day])
    assert fields.copies({"n": -(10**15), "b": False, "t": "甲", "d": "2026-01-01", "day": "2026-12-31"}) == {
        "cf_b": 0,
        "cf_n": -(10**15),
        "cf_t": "甲",
        "cf_day": 20261231,  # a date sorts as YYYYMMDD: a page after the first is an integer range
    }
    empty = fields.copies(None)
    assert empty == {"cf_b": -1, "cf_n": NO_SORT_VALUE["number"], "cf_t": "", "cf_day": -1}
    # Below every value the field can hold: first ascending, last descending.
    assert empty["cf_n"] < -(10**15) and empty["cf_b"] < sort_copy(boolean, False)
    assert empty["cf_day"] < sort_copy(day, "0001-01-01")
    assert sort_copy(number, True) == NO_SORT_VALUE["number"]  # a boolean is not a number


def test_sort_field_names_sort_for_what_cannot_be_sorted() -> None:
    fields = FieldSet.of([{"key": "a", "type": "text", "sortable": True}, {"key": "b", "type": "text"}])
    assert fields.sort_field("a") == "s.cf_a"
    for key, reason in (("b", "not sortable"), ("zz", "no custom field")):
        with pytest.raises(ValidationFailed) as raised:
            fields.sort_field(key)
        error = raised.value.errors[0]
        assert error.field == "sort" and reason in error.reason and error.location == "query"


def test_money_and_multi_choice_are_not_sortable() -> None:
    for type_, extra in (("money", {}), ("multi_choice", {"options": [{"key": "x", "labels": {}}]})):
        with pytest.raises(ValidationFailed) as raised:
            check_definition({"key": "k", "type": type_, "sortable": True, **extra}, ())
        assert [e.field for e in raised.value.errors] == ["sortable"]


def test_filterable_dates_and_money_keep_filter_copies_that_order_as_the_values() -> None:
    from crm_platform.customfields import copies, filter_copy

    due = {"key": "due", "type": "date", "filterable": True}
    budget = {"key": "budget", "type": "money", "filterable": True, "validation": {"currencies": ["CNY", "USD"]}}
    plain = {"key": "plain", "type": "money"}  # not filterable: no copy
    fields = FieldSet.of([due, budget, plain])
    money = {"amount": "1234.50", "currency": "CNY"}
    assert fields.copies({"due": "2026-03-01", "budget": money, "plain": money}) == {
        "cfq_due": 20260301,
        "cfq_budget": "CNY:1000000000000123450",
    }
    # Without a value: None, which no equality or range matches.
    assert fields.copies(None) == {"cfq_due": None, "cfq_budget": None}
    assert copies({**due, "sortable": True}, "2026-03-01") == {"cf_due": 20260301, "cfq_due": 20260301}
    # Amounts order as numbers within a currency, negative ones and cents included.
    amounts = ["-100000.00", "-5.01", "-5.00", "0.00", "0.01", "9.99", "10.00", "999999999999.99"]
    keys = [filter_copy(budget, {"amount": a, "currency": "CNY"}) for a in amounts]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_money_filters_name_a_currency_and_stay_within_it() -> None:
    budget = {"key": "budget", "type": "money", "filterable": True, "validation": {"currencies": ["CNY", "USD"]}}
    fields = FieldSet.of([budget])
    key = FieldSet.of([budget]).filter_value
    assert fields.filter_path("budget") == "s.cfq_budget"
    assert key("budget", "1234.5 cny") == "CNY:1000000000000123450"
    assert key("budget", "1000..5000 CNY") == {"$gte": "CNY:1000000000000100000", "$lte": "CNY:1000000000000500000"}
    # An open end stays inside the currency: no USD amount is between the bounds.
    low = key("budget", "1000.. USD")
    assert low == {"$gte": "USD:1000000000000100000", "$lte": "USD:" + "9" * 19}
    assert "CNY:1000000000000100000" < key("budget", "..5000 CNY")["$lte"] < "USD:"
    for text, reason in (
        ("1000", "amount and a currency"),
        ("1000..5000", "amount and a currency"),
        ("1000 EUR", "currency must be one of CNY, USD"),
        (".. CNY", "at least one end"),
        ("abc CNY", "not an amount"),
    ):
        with pytest.raises(ValidationFailed) as raised:
            key("budget", text)
        error = raised.value.errors[0]
        assert error.field == "custom.budget" and error.location == "query" and reason in error.reason, (text, error)
