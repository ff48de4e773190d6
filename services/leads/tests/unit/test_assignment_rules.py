"""Assignment rules without I/O: which rule matches a pool lead, the round-robin and least-loaded
orders, capacity, and who sees a department's pool."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from crm_leads.domain import assignment as rules
from crm_platform.auth import Principal


def rule(rule_id: str, position: int = 100, path: str = "/hq/east", **fields: Any) -> dict[str, Any]:
    return {
        "_id": rule_id,
        "name": rule_id,
        "position": position,
        "department_path": path,
        "condition": {"field": "any", "values": []},
        "method": "round_robin",
        "users": ["a", "b", "c"],
        "enabled": True,
        **fields,
    }


LEAD = {"_id": "l1", "department_path": "/hq/east/t1", "region": "上海", "industry": "制造", "source": "web"}


def test_a_rule_matches_leads_of_its_subtree_only() -> None:
    assert rules.matches(rule("r"), LEAD)
    assert rules.matches(rule("r", path="/hq/east/t1"), LEAD)
    assert not rules.matches(rule("r", path="/hq/east/t2"), LEAD)
    assert not rules.matches(rule("r", path="/hq/ea"), LEAD)  # a prefix of a name is not a parent
    assert not rules.matches(rule("r"), {**LEAD, "department_path": None})


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ("region", ["上海", "北京"], True),
        ("region", ["北京"], False),
        ("industry", ["制造"], True),
        ("source", ["referral"], False),
        ("campaign_id", ["c1"], False),
    ],
)
def test_conditions(field: str, values: list[str], expected: bool) -> None:
    assert rules.matches(rule("r", condition={"field": field, "values": values}), LEAD) is expected


def test_disabled_and_deleted_rules_never_match() -> None:
    assert not rules.matches(rule("r", enabled=False), LEAD)
    assert not rules.matches(rule("r", deleted=True), LEAD)


def test_the_first_matching_rule_by_position_decides() -> None:
    found = [
        rule("late", position=50),
        rule("west", position=1, path="/hq/west"),
        rule("early", position=10, condition={"field": "region", "values": ["上海"]}),
    ]
    assert (rules.first_match(found, LEAD) or {})["_id"] == "early"
    assert (rules.first_match(found, {**LEAD, "region": "北京"}) or {})["_id"] == "late"
    assert rules.first_match(found, {**LEAD, "department_path": "/hq/north"}) is None


def test_round_robin_turns_are_fair_ten_over_three_is_four_three_three() -> None:
    picks = Counter(rules.round_robin_order(["a", "b", "c"], turn)[0] for turn in range(10))
    assert picks == {"a": 4, "b": 3, "c": 3}
    assert rules.round_robin_order(["a", "b", "c"], 4) == ["b", "c", "a"]  # a full "b" passes the lead to "c"
    assert rules.round_robin_order([], 3) == []


def test_least_loaded_order_and_capacity() -> None:
    assert rules.least_loaded_order(["a", "b", "c"], {"a": 3, "b": 1, "c": 1}) == ["b", "c", "a"]
    assert rules.has_room(2, 3) and not rules.has_room(3, 3) and rules.has_room(10_000, None)


def test_conditions_need_values_except_any() -> None:
    with pytest.raises(ValidationError):
        rules.Condition(field="region", values=[])
    with pytest.raises(ValidationError):
        rules.Condition(field="any", values=["x"])
    assert rules.Condition(field="region", values=["上海", " 上海 "]).values == ["上海"]


def rep(path: str | None, roles: frozenset[str] = frozenset({"rep"})) -> Principal:
    return Principal(user_id="u", roles=roles, department_path=path)


def test_a_department_pool_is_for_its_members_and_those_who_reach_it() -> None:
    pooled = {"in_pool": True, "department_path": "/hq/east/t1"}
    assert rules.pool_visible(rep("/hq/east/t1"), pooled, company_wide=False)
    assert not rules.pool_visible(rep("/hq/east/t2"), pooled, company_wide=False)
    assert rules.pool_visible(rep("/hq/east/t2"), pooled, company_wide=True)
    assert rules.pool_visible(rep("/hq/east", frozenset({"manager"})), pooled, company_wide=False)
    assert rules.pool_visible(rep("/hq", frozenset({"admin"})), pooled, company_wide=False)
    assert not rules.pool_visible(rep(None), pooled, company_wide=False)
    assert rules.pool_branch(rep("/hq/east/t1/")) == {"in_pool": True, "department_path": "/hq/east/t1"}
