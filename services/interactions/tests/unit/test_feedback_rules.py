"""The feedback status machine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_interactions.domain import feedback as rules
from crm_interactions.domain.model import TransitionIn
from crm_platform.auth import Principal, Role
from crm_platform.errors import Conflict, ValidationFailed

NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
REP = Principal(user_id="rep-1", roles=frozenset({Role.rep}), department_path="/hq/east/t1")
STATUSES = ("open", "in_progress", "resolved", "closed")


def complaint(kind: str = "complaint"):
    return rules.new_feedback(
        "f-1",
        kind=kind,
        title="t",
        description="d",
        priority="normal",
        customer_id="c",
        contact_id=None,
        handler_id=None,
        handler_department_path=None,
        principal=REP,
        now=NOW,
    )


def move(doc, status, **fields):
    return rules.transition(doc, TransitionIn(status=status, **fields), REP, NOW)


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_only_the_drawn_moves_are_allowed(current, target):
    allowed = {
        ("open", "in_progress"),
        ("in_progress", "resolved"),
        ("resolved", "closed"),
        ("resolved", "open"),
        ("closed", "open"),
    }
    if (current, target) in allowed:
        rules.ensure_allowed(current, target)
    else:
        with pytest.raises(Conflict) as err:
            rules.ensure_allowed(current, target)
        assert err.value.extra["allowed"] == list(rules.allowed_from(current))


def test_the_loop_of_a_complaint():
    doc = complaint()
    assert move(doc, "in_progress") == "open" and doc["handler_id"] == "rep-1"
    with pytest.raises(ValidationFailed):
        move(doc, "resolved")
    with pytest.raises(ValidationFailed):
        rules.transition({**doc, "status": "open"}, TransitionIn(status="in_progress", satisfaction=3), REP, NOW)
    move(doc, "resolved", resolution="fixed")
    with pytest.raises(ValidationFailed) as err:
        move(dict(doc), "closed")
    assert err.value.errors[0].field == "satisfaction"
    move(doc, "closed", satisfaction=5)
    assert doc["status"] == "closed" and doc["satisfaction"] == 5 and doc["closed_by"] == "rep-1"
    move(doc, "open")
    assert doc["reopen_count"] == 1 and doc["resolution"] is None and doc["satisfaction"] is None
    assert [s["to"] for s in doc["steps"]] == ["in_progress", "resolved", "closed", "open"]


def test_a_suggestion_closes_without_a_rating():
    doc = complaint("suggestion")
    move(doc, "in_progress")
    move(doc, "resolved", resolution="planned", satisfaction=4)
    move(doc, "closed")
    assert doc["satisfaction"] == 4


def test_a_change_of_status_moves_the_updated_at_sort_key():
    doc = complaint()
    later = datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
    rules.transition(doc, TransitionIn(status="in_progress"), REP, later)
    # Lists sorted by "-updated_at" page on s.updated_at: a stale copy misplaces the record.
    assert doc["updated_at"] == later and doc["s"]["updated_at"] == int(later.timestamp() * 1000)
