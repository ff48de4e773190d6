"""Task rules: notices armed and sent once, windows of 'today' and 'this week' in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm_interactions.domain import tasks as rules
from crm_interactions.domain.calendar import NEVER, bucket, day_bounds, week_bounds, zone
from crm_platform.auth import Principal, Role
from crm_platform.errors import Conflict, Forbidden, ValidationFailed
from crm_platform.sortkeys import epoch_ms

NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shanghai
REP = Principal(user_id="rep-1", roles=frozenset({Role.rep}), department_path="/hq/east/t1")
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def task(due: timedelta = timedelta(hours=2), remind: timedelta | None = timedelta(hours=1)):
    return rules.new_task(
        "t-1",
        title="t",
        notes=None,
        due_at=NOW + due,
        remind_at=NOW + remind if remind is not None else None,
        assignee_id="rep-1",
        assignee_department_path="/hq/east/t1",
        principal=REP,
        customer_id=None,
        opportunity_id=None,
        interaction_id=None,
        now=NOW,
    )


def test_notices_fire_in_order_once_each():
    doc = task()
    assert doc["next_fire_at"] == NOW + timedelta(hours=1)
    assert rules.due_notice(doc, NOW) is None
    later = NOW + timedelta(hours=3)
    assert rules.due_notice(doc, later) == "reminder_due"
    rules.mark_sent(doc, "reminder_due", later)
    assert doc["next_fire_at"] == NOW + timedelta(hours=2)
    assert rules.due_notice(doc, later) == "overdue"
    rules.mark_sent(doc, "overdue", later)
    assert rules.due_notice(doc, later) is None and doc["next_fire_at"] == NEVER


def test_reschedule_rearms_and_done_disarms():
    doc = task()
    for notice in ("reminder_due", "overdue"):
        rules.mark_sent(doc, notice, NOW + timedelta(hours=3))
    new_due = NOW + timedelta(days=1)
    rules.reschedule(doc, new_due, rules.same_lead_time(doc, new_due))
    assert doc["remind_at"] == new_due - timedelta(hours=1) and doc["next_fire_at"] == doc["remind_at"]
    rules.complete(doc, REP, NOW)
    assert doc["next_fire_at"] == NEVER and rules.due_notice(doc, NOW + timedelta(days=2)) is None
    with pytest.raises(Conflict):
        rules.complete(doc, REP, NOW)
    with pytest.raises(Conflict):
        rules.reschedule(doc, new_due, None)
    rules.reopen(doc)
    assert doc["status"] == "open" and doc["next_fire_at"] == doc["remind_at"]
    with pytest.raises(Conflict):
        rules.reopen(doc)


def test_hidden_tasks_fire_nothing():
    doc = task()
    doc["hidden"] = True
    rules.refresh(doc)
    assert doc["next_fire_at"] == NEVER and rules.due_notice(doc, NOW + timedelta(days=1)) is None


def test_without_a_reminder_only_overdue():
    doc = task(remind=None)
    assert doc["next_fire_at"] == NOW + timedelta(hours=2)
    assert rules.due_notice(doc, NOW + timedelta(hours=2)) == "overdue"  # due exactly now: overdue


def test_today_and_this_week_depend_on_the_zone():
    start, end = day_bounds(NOW, SHANGHAI)
    assert start == datetime(2026, 3, 3, 16, tzinfo=UTC) and end == datetime(2026, 3, 4, 16, tzinfo=UTC)
    start, end = day_bounds(NOW, NEW_YORK)  # Tuesday 21:00 there
    assert start == datetime(2026, 3, 3, 5, tzinfo=UTC) and end == datetime(2026, 3, 4, 5, tzinfo=UTC)
    start, end = week_bounds(NOW, SHANGHAI)
    assert start == datetime(2026, 3, 1, 16, tzinfo=UTC) and end == datetime(2026, 3, 8, 16, tzinfo=UTC)


def test_a_daylight_saving_day_is_23_hours_long():
    # New York springs forward on Sunday 2026-03-08.
    start, end = day_bounds(datetime(2026, 3, 8, 15, tzinfo=UTC), NEW_YORK)
    assert end - start == timedelta(hours=23)
    start, end = week_bounds(datetime(2026, 3, 8, 15, tzinfo=UTC), NEW_YORK)
    assert end - start == timedelta(days=7, hours=-1)


def test_view_filters():
    # On the epoch-ms copy (s.due_at): a range on the date itself is a full scan on the embedded store.
    assert rules.view_filter("overdue", NOW, SHANGHAI) == {"s.due_at": {"$lt": epoch_ms(NOW)}}
    assert rules.view_filter("all", NOW, SHANGHAI) == {}
    today = rules.view_filter("today", NOW, SHANGHAI)["s.due_at"]
    assert today["$lt"] - today["$gte"] == timedelta(days=1) / timedelta(milliseconds=1)


def test_buckets_of_stats():
    moment = datetime(2026, 1, 4, 17, tzinfo=UTC)  # Monday 01:00 in Shanghai, Sunday in UTC
    assert bucket(moment, "day", SHANGHAI)[0] == "2026-01-05"
    assert bucket(moment, "day", ZoneInfo("UTC"))[0] == "2026-01-04"
    assert bucket(moment, "week", SHANGHAI) == ("2026-W02", datetime(2026, 1, 5).date())
    assert bucket(moment, "week", ZoneInfo("UTC"))[0] == "2026-W01"
    assert bucket(datetime(2025, 12, 31, 17, tzinfo=UTC), "month", SHANGHAI)[0] == "2026-01"


def test_who_may_assign_and_act():
    manager = Principal(user_id="m", roles=frozenset({Role.manager}), department_path="/hq/east")
    rules.ensure_may_assign(REP, "rep-1", "/hq/east/t1")
    rules.ensure_may_assign(manager, "rep-2", "/hq/east/t2")
    with pytest.raises(Forbidden):
        rules.ensure_may_assign(REP, "rep-2", "/hq/east/t1")
    with pytest.raises(Forbidden):
        rules.ensure_may_assign(manager, "rep-3", "/hq/west")
    doc = task()
    assert rules.can_act(REP, doc) and rules.can_act(manager, doc)
    assert not rules.can_act(Principal(user_id="x", roles=frozenset({Role.rep})), doc)


@pytest.mark.parametrize("name", ["Mars/Olympus", "Asia", "x" * 300, "", "../etc"])
def test_a_wrong_time_zone_is_the_callers_422_naming_the_field(name: str) -> None:
    # "Asia" (a directory of tzdata) and an overlong name raised OSError: a 500 the fuzz run found.
    with pytest.raises(ValidationFailed) as failed:
        zone(name)
    assert failed.value.errors[0].field == "tz"
