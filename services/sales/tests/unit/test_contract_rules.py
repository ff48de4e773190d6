"""Contract rules without I/O: the number's format, the approval bands (parsing the setting, the
levels an amount needs), the status moves and who may approve."""

from __future__ import annotations

from typing import Any

import pytest

from crm_platform.auth import Principal
from crm_platform.errors import Conflict, Forbidden, ValidationFailed
from crm_sales.domain import contracts as rules

BANDS = rules.parse_bands(rules.DEFAULT_BANDS)


def doc(status: str = "draft", amount: str = "1000.00", **fields: Any) -> dict[str, Any]:
    return {"_id": "c1", "status": status, "amount": amount, "currency": "CNY", "owner_id": "rep", **fields}


def under_approval(amount: str) -> dict[str, Any]:
    levels = rules.levels_for(BANDS, amount, "CNY")
    return doc("under_approval", amount, approval={"levels": levels})


def test_numbers_are_per_year_with_six_digits_at_least() -> None:
    assert rules.format_number(2026, 7) == "C-2026-000007"
    assert rules.format_number(2026, 1234567) == "C-2026-1234567"
    assert rules.parse_number("C-2026-000123") == (2026, 123)
    assert rules.counter_id(2026) == "contract:2026"
    with pytest.raises(ValueError):
        rules.parse_number("Q-2026-000123")


@pytest.mark.parametrize(
    ("amount", "wanted"),
    [
        ("0.01", ["contracts:approve"]),
        ("100000.00", ["contracts:approve"]),
        ("1000000.00", ["contracts:approve"]),  # "above" is strict
        ("1000000.01", ["contracts:approve", "contracts:approve_major"]),
    ],
)
def test_the_levels_an_amount_needs(amount: str, wanted: list[str]) -> None:
    assert [lv["permission"] for lv in rules.levels_for(BANDS, amount, "CNY")] == wanted


def test_a_currency_of_its_own_and_no_band_at_all() -> None:
    bands = rules.parse_bands(
        '{"usd": [{"above": "50000", "permission": "contracts:approve"}],'
        ' "*": [{"above": "0", "permission": "contracts:approve"}]}'
    )
    assert rules.levels_for(bands, "40000", "USD") == []  # under every USD band: nothing to approve
    assert len(rules.levels_for(bands, "40000", "EUR")) == 1
    approved = doc("under_approval", approval={"levels": []})
    assert rules.approval_complete(approved) and rules.check_move(approved, "sign") == "signed"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "not JSON"),
        ("{}", "JSON object"),
        ('{"XYZ": [{"above": "0", "permission": "contracts:approve"}]}', "currency"),
        ('{"*": []}', "non-empty"),
        ('{"*": [{"above": "-1", "permission": "contracts:approve"}]}', "0 or more"),
        ('{"*": [{"above": "x", "permission": "contracts:approve"}]}', "not a decimal"),
        ('{"*": [{"above": "0", "permission": "contracts:fly"}]}', "not a permission"),
        ('{"*": [{"above": "0"}]}', "exactly"),
        (
            '{"*": [{"above": "10", "permission": "contracts:approve"},'
            ' {"above": "5", "permission": "contracts:approve_major"}]}',
            "ascend",
        ),
    ],
)
def test_a_wrong_setting_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        rules.parse_bands(text)


def test_the_setting_is_checked_at_start() -> None:
    from crm_sales.settings import SalesSettings

    with pytest.raises(ValueError, match="ascend"):
        SalesSettings(
            sales_contract_approval_bands='{"*": [{"above": "9", "permission": "contracts:approve"},'
            ' {"above": "1", "permission": "contracts:approve"}]}'
        )


def test_moves_follow_the_status_and_the_approval() -> None:
    assert rules.check_move(doc(), "submit") == "under_approval"
    with pytest.raises(Conflict):
        rules.check_move(doc(), "sign")
    pending = under_approval("2000000")
    with pytest.raises(Conflict, match="level 1"):
        rules.check_move(pending, "sign")
    assert rules.check_move(pending, "approve") == "under_approval"
    assert rules.check_move(pending, "reject") == "draft"
    assert rules.check_move(doc("signed"), "start") == "executing"
    assert rules.check_move(doc("executing"), "terminate") == "terminated"
    for final in ("completed", "terminated"):
        for action in rules.MOVES:
            with pytest.raises(Conflict):
                rules.check_move(doc(final), action)
    with pytest.raises(Conflict):
        rules.check_editable(doc("signed"))


def test_who_may_approve_a_level() -> None:
    contract = under_approval("2000000")
    manager = Principal(user_id="m1", roles=frozenset({"manager"}))
    admin = Principal(user_id="a1", roles=frozenset({"admin"}))
    with pytest.raises(Forbidden, match="own"):
        rules.check_approver(Principal(user_id="rep", roles=frozenset({"admin"})), contract, "approve")
    assert rules.check_approver(manager, contract, "approve")["level"] == 1
    contract["approval"]["levels"][0].update(approved_by="m1")
    with pytest.raises(Forbidden, match="approve_major"):
        rules.check_approver(manager, contract, "approve")
    with pytest.raises(Forbidden, match="already"):
        rules.check_approver(Principal(user_id="m1", roles=frozenset({"admin"})), contract, "approve")
    assert rules.check_approver(admin, contract, "approve")["level"] == 2


def test_amounts_are_above_zero_and_quantized() -> None:
    assert rules.amount("12.5", "CNY") == "12.50"
    for bad in ("0", "0.00", "-1", "1.001", "1,000"):
        with pytest.raises(ValidationFailed):
            rules.amount(bad, "CNY")
