"""The rule maths: which rule applies, when a customer falls due, exemptions, the warning schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_pool.domain.recycling import (
    NEVER,
    StagePlace,
    applicable_rule,
    days_left,
    due,
    effective_recycle_at,
    schedule,
)

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def rule(rule_id: str = "g", path: str | None = None, **kw: Any) -> dict[str, Any]:
    base = {
        "rule_id": rule_id,
        "name": rule_id,
        "department_path": path,
        "enabled": True,
        "deleted": False,
        "no_interaction_days": 30,
        "no_won_days": None,
        "warn_days": 3,
        "exempt_stage_id": None,
        "exempt_tags": [],
    }
    return {**base, **kw}


def clock(**kw: Any) -> dict[str, Any]:
    base = {
        "_id": "c1",
        "owner_id": "u1",
        "owner_since": T0,
        "department_path": "/hq/east/t1",
        "tags": [],
        "status": "active",
        "in_pool": False,
        "interactions_by_author": [],
        "last_won_at": None,
        "open_opportunities": [],
    }
    return {**base, **kw}


def test_most_specific_department_wins_then_global() -> None:
    rules = [rule("g"), rule("east", "/hq/east"), rule("t1", "/hq/east/t1"), rule("west", "/hq/west")]
    assert applicable_rule(rules, "/hq/east/t1/x")["rule_id"] == "t1"
    assert applicable_rule(rules, "/hq/east/t2")["rule_id"] == "east"
    assert applicable_rule(rules, "/hq/eastern")["rule_id"] == "g"  # a prefix of the name is not a subtree
    assert applicable_rule(rules, None)["rule_id"] == "g"
    assert applicable_rule([rule("t1", "/hq/east/t1", deleted=True), rule("g")], "/hq/east/t1")["rule_id"] == "g"
    assert applicable_rule([rule("west", "/hq/west")], "/hq/east") is None


def test_no_interaction_counts_from_owner_since_or_the_owners_last_follow_up() -> None:
    assert due(clock(), [rule()], {}).deadline == T0 + timedelta(days=30)
    touched = clock(interactions_by_author=[{"author_id": "u1", "at": T0 + timedelta(days=10)}])
    result = due(touched, [rule()], {})
    assert result.deadline == T0 + timedelta(days=40)
    assert result.warn_at == T0 + timedelta(days=37)
    assert result.reason == "no_interaction"


def test_someone_elses_follow_up_does_not_reset_the_owners_clock() -> None:
    other = clock(interactions_by_author=[{"author_id": "u2", "at": T0 + timedelta(days=10)}])
    assert due(other, [rule()], {}).deadline == T0 + timedelta(days=30)


def test_an_interaction_before_the_owner_got_the_customer_does_not_count() -> None:
    old = clock(interactions_by_author=[{"author_id": "u1", "at": T0 - timedelta(days=100)}])
    assert due(old, [rule()], {}).deadline == T0 + timedelta(days=30)


def test_no_won_opportunity_and_the_earlier_limit_wins() -> None:
    r = rule(no_interaction_days=30, no_won_days=20)
    assert (due(clock(), [r], {}).deadline, due(clock(), [r], {}).reason) == (
        T0 + timedelta(days=20),
        "no_won_opportunity",
    )
    won = clock(last_won_at=T0 + timedelta(days=15))
    assert due(won, [r], {}).deadline == T0 + timedelta(days=30)
    assert due(won, [r], {}).reason == "no_interaction"


def test_exemptions_by_tag_and_by_stage_position() -> None:
    r = rule(exempt_tags=["key-account"], exempt_stage_id="s-proposal")
    assert due(clock(tags=["key-account"]), [r], {}).never
    assert due(clock(tags=["key-account"]), [r], {}).exempt == "tag key-account"
    positions = {
        "s-initial": StagePlace("sales", 1),
        "s-proposal": StagePlace("sales", 3),
        "s-negotiation": StagePlace("sales", 4),
        "s-renewal-late": StagePlace("renewals", 5),
    }
    early = clock(open_opportunities=[{"opportunity_id": "o1", "stage_id": "s-initial"}])
    late = clock(open_opportunities=[{"opportunity_id": "o1", "stage_id": "s-negotiation"}])
    assert not due(early, [r], positions).never
    assert due(late, [r], positions).never
    # Another pipeline's later position is not "past" this pipeline's stage.
    elsewhere = clock(open_opportunities=[{"opportunity_id": "o2", "stage_id": "s-renewal-late"}])
    assert not due(elsewhere, [r], positions).never


def test_no_owner_pool_disabled_or_inactive_never_fall_due() -> None:
    assert due(clock(owner_id=None), [rule()], {}).never
    assert due(clock(in_pool=True), [rule()], {}).never
    assert due(clock(status="deleted"), [rule()], {}).never
    assert due(clock(), [rule(enabled=False)], {}).never
    assert due(clock(), [], {}).deadline == NEVER


def test_schedule_warns_first_then_releases_at_the_announced_date() -> None:
    c = schedule(clock(), due(clock(), [rule()], {}))
    assert c["warn_due"] == T0 + timedelta(days=27)
    assert c["release_due"] == NEVER  # never released before the owner was warned
    key = c["deadline"].isoformat()
    late_warning = T0 + timedelta(days=29)
    c.update(warned_for=key, recycle_at=late_warning + timedelta(days=3))
    schedule(c, due(c, [rule()], {}))
    assert c["warn_due"] == NEVER
    assert c["release_due"] == late_warning + timedelta(days=3)  # K full days after a late warning
    c["decided_for"] = key
    assert schedule(c, due(c, [rule()], {}))["release_due"] == NEVER


def test_a_new_follow_up_moves_the_deadline_and_needs_a_new_warning() -> None:
    c = schedule(clock(), due(clock(), [rule()], {}))
    c.update(warned_for=c["deadline"].isoformat(), recycle_at=c["deadline"])
    c["interactions_by_author"] = [{"author_id": "u1", "at": T0 + timedelta(days=29)}]
    schedule(c, due(c, [rule()], {}))
    assert c["deadline"] == T0 + timedelta(days=59)
    assert c["warn_due"] == T0 + timedelta(days=56)
    assert c["release_due"] == NEVER


def test_effective_recycle_gives_k_days_after_a_late_warning() -> None:
    result = due(clock(), [rule()], {})
    assert effective_recycle_at(clock(), result, T0, 3) == T0 + timedelta(days=30)
    late = T0 + timedelta(days=50)
    assert effective_recycle_at(clock(), result, late, 3) == late + timedelta(days=3)


@pytest.mark.parametrize(("seconds", "days"), [(0, 0), (-5, 0), (1, 1), (86400, 1), (86401, 2), (3 * 86400, 3)])
def test_days_left_rounds_up(seconds: int, days: int) -> None:
    assert days_left(T0 + timedelta(seconds=seconds), T0) == days


def test_the_range_thresholds_find_exactly_the_customers_due_for_their_warning() -> None:
    """A clock is past a rule's threshold at ``at`` exactly when ``due`` says its warning is due then."""
    from crm_pool.domain.recycling import NEVER_MS, bases, epoch_ms, thresholds

    assert NEVER_MS == epoch_ms(NEVER)
    r = rule(no_interaction_days=30, no_won_days=90, warn_days=3)
    cases = [
        clock(),
        clock(interactions_by_author=[{"author_id": "u1", "at": T0 + timedelta(days=10)}]),
        clock(interactions_by_author=[{"author_id": "someone-else", "at": T0 + timedelta(days=20)}]),
        clock(last_won_at=T0 + timedelta(days=5)),
    ]
    for c in cases:
        touch, won = bases(c)
        for days in (0, 26, 27, 28, 37, 38, 100):
            at = T0 + timedelta(days=days, seconds=1)
            limits = thresholds(r, at)
            past = touch <= limits["touch_ms"] or won <= limits["won_ms"]
            assert past == (due(c, [r], {}).warn_at <= at), (c, days)
    # Nobody's customers are never in range; disabled or deleted rules have no thresholds.
    assert bases(clock(owner_id=None)) == (NEVER_MS, NEVER_MS)
    assert bases(clock(in_pool=True)) == (NEVER_MS, NEVER_MS)
    assert thresholds(rule(enabled=False), T0) == {} and thresholds(rule(deleted=True), T0) == {}
    assert set(thresholds(rule(no_interaction_days=None, no_won_days=60), T0)) == {"won_ms"}
