"""Service tickets' rules without I/O: the SLA policy setting, the due and escalation moments, the
SLA state shown, what the scheduler does when (once per target), and the status moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_platform.errors import Conflict, ValidationFailed
from crm_platform.sortkeys import epoch_ms
from crm_sales.domain import tickets as rules
from crm_sales.settings import SalesSettings

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
POLICY = rules.parse_sla(rules.DEFAULT_SLA)


def ticket(priority: rules.Priority = "urgent", share: str = "0.8") -> rules.Document:
    data = rules.TicketIn(customer_id="c1", category="fault", priority=priority, subject=" 打印机卡纸 ")
    doc = rules.new_ticket(
        "t1", data, {"_id": "c1", "name": "客户"}, "u1", "u1", "/hq", POLICY[priority], Decimal(share), T0
    )
    return rules.numbered(doc, 2026, 7)


def test_the_default_policy_and_its_targets() -> None:
    assert POLICY["urgent"] == rules.Sla(timedelta(hours=1), timedelta(hours=4))
    assert POLICY["low"] == rules.Sla(timedelta(hours=24), timedelta(hours=168))
    assert rules.parse_sla("low=3d/10d, normal=30m/8h,high=1h/4h,urgent=15m/1h")["low"].resolution == timedelta(days=10)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("urgent=1h/4h,high=4h/24h,normal=8h/72h", "no targets for low"),
        ("urgent=1h/4h,urgent=1h/4h,high=4h/24h,normal=8h/72h,low=1d/2d", "given twice"),
        ("urgent=4h/1h,high=4h/24h,normal=8h/72h,low=1d/2d", "after the resolution"),
        ("urgent=1x/4h,high=4h/24h,normal=8h/72h,low=1d/2d", "not a duration"),
        ("urgent=0h/4h,high=4h/24h,normal=8h/72h,low=1d/2d", "not a duration"),
        ("urgent=1h,high=4h/24h,normal=8h/72h,low=1d/2d", "first response>/<resolution"),
        ("asap=1h/4h", "<priority>="),
    ],
)
def test_a_bad_policy_is_refused_naming_why(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        rules.parse_sla(raw)


def test_the_setting_is_validated_at_start() -> None:
    with pytest.raises(ValueError, match="no targets for low"):
        SalesSettings(sales_ticket_sla="urgent=1h/4h,high=4h/24h,normal=8h/72h")
    assert SalesSettings().ticket_sla() == POLICY


def test_a_new_ticket_carries_its_due_and_escalation_moments() -> None:
    doc = ticket()
    assert doc["number"] == "T-2026-000007" and rules.parse_number(doc["number"]) == (2026, 7)
    assert doc["subject"] == "打印机卡纸" and doc["status"] == "open"
    assert doc["first_response_due_at"] == T0 + timedelta(hours=1)
    assert doc["first_response_warn_at"] == T0 + timedelta(minutes=48)
    assert doc["resolution_due_at"] == T0 + timedelta(hours=4)
    assert doc["resolution_warn_at"] == T0 + timedelta(minutes=192)
    assert doc["s"]["check_at"] == epoch_ms(T0 + timedelta(minutes=48))


def test_sla_state_on_track_at_risk_breached_and_met() -> None:
    doc = ticket()
    assert rules.sla_state(doc, "first_response", T0) == "on_track"
    assert rules.sla_state(doc, "first_response", T0 + timedelta(minutes=48)) == "at_risk"
    assert rules.sla_state(doc, "first_response", T0 + timedelta(hours=1)) == "breached"
    rules.add_reply(doc, rules.ReplyIn(body="在处理"), "u1", T0 + timedelta(minutes=50))
    assert rules.sla_state(doc, "first_response", T0 + timedelta(hours=9)) == "met"
    assert rules.sla_state(doc, "resolution", T0 + timedelta(hours=2)) == "on_track"
    rules.resolve(doc, "换了硒鼓", T0 + timedelta(hours=5))
    assert rules.sla_state(doc, "resolution", T0 + timedelta(hours=5)) == "breached"


def test_the_scheduler_escalates_then_breaches_each_target_once() -> None:
    doc = ticket()
    assert rules.due_action(doc, T0 + timedelta(minutes=47)) is None
    late = T0 + timedelta(hours=5)  # past everything: one action at a time, in order
    done = []
    while (action := rules.due_action(doc, late)) is not None:
        rules.record(doc, action, late)
        rules.refresh(doc)
        done.append(action)
    assert done == [
        ("escalate", "first_response"),
        ("breach", "first_response"),
        ("escalate", "resolution"),
        ("breach", "resolution"),
    ]
    assert doc["escalation_level"] == 2 and doc["breached"] is True
    assert doc["s"]["check_at"] == rules.NEVER_MS


def test_answered_targets_are_disarmed() -> None:
    doc = ticket()
    rules.record(doc, ("escalate", "first_response"), T0 + timedelta(minutes=48))
    rules.add_reply(doc, rules.ReplyIn(body="已联系"), "u1", T0 + timedelta(minutes=50))
    rules.refresh(doc)
    assert doc["s"]["check_at"] == epoch_ms(T0 + timedelta(minutes=192))  # only the resolution is watched
    assert rules.due_action(doc, T0 + timedelta(hours=1, minutes=1)) is None
    rules.resolve(doc, "ok", T0 + timedelta(hours=1))
    rules.refresh(doc)
    assert doc["s"]["check_at"] == rules.NEVER_MS


def test_a_late_answer_is_a_breach_once() -> None:
    doc = ticket()
    assert rules.late_breach(doc, "first_response", T0 + timedelta(minutes=59)) is False
    assert rules.late_breach(doc, "first_response", T0 + timedelta(hours=2)) is True
    assert rules.late_breach(doc, "first_response", T0 + timedelta(hours=3)) is False


def test_status_moves_and_the_closed_loop() -> None:
    doc = ticket()
    with pytest.raises(Conflict):
        rules.check_move(doc, "return_visit")
    assert rules.add_reply(doc, rules.ReplyIn(body="a"), "u1", T0) is True
    assert doc["status"] == "in_progress" and doc["first_responded_at"] == T0
    assert rules.add_reply(doc, rules.ReplyIn(body="b", public=False), "u1", T0 + timedelta(minutes=1)) is False
    rules.resolve(doc, "fixed", T0 + timedelta(hours=1))
    assert doc["status"] == "resolved"
    with pytest.raises(ValidationFailed):
        rules.close(doc, None, T0 + timedelta(hours=2))
    with pytest.raises(Conflict, match="more than 7 days"):
        rules.reopen(doc, T0 + timedelta(days=8), timedelta(days=7))
    rules.reopen(doc, T0 + timedelta(days=2), timedelta(days=7))
    assert doc["status"] == "in_progress" and doc["resolved_at"] is None and doc["reopen_count"] == 1
    rules.resolve(doc, "fixed again", T0 + timedelta(days=2, hours=1))
    rules.return_visit(doc, rules.ReturnVisitIn(satisfaction=4, comment="满意"), "u2", T0 + timedelta(days=3))
    with pytest.raises(Conflict, match="already"):
        rules.return_visit(doc, rules.ReturnVisitIn(satisfaction=5), "u2", T0 + timedelta(days=3))
    rules.close(doc, None, T0 + timedelta(days=3))
    assert doc["status"] == "closed" and doc["satisfaction"] == 4
    for action in ("reply", "resolve", "reopen", "close", "assign"):
        with pytest.raises(Conflict):
            rules.check_move(doc, action)


def test_closing_without_a_visit_needs_the_reason() -> None:
    doc = ticket("low")
    rules.resolve(doc, "done", T0 + timedelta(hours=1))
    rules.close(doc, "客户电话无人接听", T0 + timedelta(hours=2))
    assert doc["no_visit_reason"] == "客户电话无人接听" and doc["first_responded_at"] == T0 + timedelta(hours=1)


@given(
    priority=st.sampled_from(rules.PRIORITIES),
    steps=st.lists(st.integers(min_value=0, max_value=60 * 24 * 10), min_size=1, max_size=12),
    reply_at=st.one_of(st.none(), st.integers(min_value=0, max_value=60 * 24 * 10)),
)
def test_whatever_the_ticks_each_target_escalates_then_breaches_at_most_once(
    priority: rules.Priority, steps: list[int], reply_at: int | None
) -> None:
    doc = ticket(priority)
    seen: list[rules.Action] = []
    replied = False
    for minute in sorted(steps):
        now = T0 + timedelta(minutes=minute)
        if reply_at is not None and not replied and reply_at <= minute:
            rules.add_reply(doc, rules.ReplyIn(body="r"), "u1", T0 + timedelta(minutes=reply_at))
            rules.refresh(doc)  # as every change does
            replied = True
        while (action := rules.due_action(doc, now)) is not None:
            assert action not in seen
            assert now >= (rules.warn_at(doc, action[1]) if action[0] == "escalate" else rules.due_at(doc, action[1]))
            rules.record(doc, action, now)
            rules.refresh(doc)
            seen.append(action)
        # Nothing is due before the moment the scheduler polls for.
        assert rules.due_action(doc, now) is None and doc["s"]["check_at"] > epoch_ms(now)
    for target in rules.TARGETS:
        if ("breach", target) in seen:
            assert seen.index(("escalate", target)) < seen.index(("breach", target))
