"""Which holding limit applies to an owner: the pool rules' ``max_held`` by department, else the default."""

from __future__ import annotations

from typing import Any

from crm_customers.domain.rules import holding_limit


def rule(rule_id: str, path: str | None, max_held: int | None, deleted: bool = False) -> dict[str, Any]:
    return {"rule_id": rule_id, "department_path": path, "max_held": max_held, "deleted": deleted}


RULES = [rule("global", None, 50), rule("east", "/hq/east", 20), rule("team", "/hq/east/team", 5)]


def test_the_deepest_rule_covering_the_department_wins() -> None:
    assert (holding_limit(RULES, "/hq/east/team", 300).limit, holding_limit(RULES, "/hq/east/team", 300).source) == (
        5,
        "team",
    )
    assert holding_limit(RULES, "/hq/east/team/north", 300).rule_id == "team"
    assert holding_limit(RULES, "/hq/east", 300).rule_id == "east"
    assert holding_limit(RULES, "/hq/east/other", 300).rule_id == "east"


def test_a_sibling_whose_path_shares_the_prefix_text_is_not_covered() -> None:
    assert holding_limit(RULES, "/hq/eastern", 300).rule_id == "global"


def test_the_global_rule_then_the_service_default() -> None:
    assert holding_limit(RULES, "/hq/west", 300).limit == 50
    assert holding_limit(RULES, None, 300).rule_id == "global"
    only_departments = RULES[1:]
    got = holding_limit(only_departments, "/hq/west", 300)
    assert (got.limit, got.rule_id, got.source) == (300, None, "service default")
    assert holding_limit([], "/hq/east", 7).limit == 7


def test_a_rule_without_a_limit_or_deleted_inherits_from_above() -> None:
    rules = [rule("global", None, 50), rule("east", "/hq/east", None), rule("team", "/hq/east/team", 5, deleted=True)]
    assert holding_limit(rules, "/hq/east/team", 300).rule_id == "global"
