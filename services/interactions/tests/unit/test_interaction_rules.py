"""The interaction rules: the 24-hour rule, future times, channel fields on change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_interactions.domain import interactions as rules
from crm_interactions.domain.model import InteractionPatch, PhoneIn
from crm_platform.auth import Principal, Role
from crm_platform.errors import Forbidden, ValidationFailed

DAY = timedelta(hours=24)
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REP = Principal(user_id="rep-1", roles=frozenset({Role.rep}), department_path="/hq/east/t1")


def phone(**fields):
    base = {"channel": "phone", "customer_id": "c-1", "occurred_at": NOW - timedelta(hours=1), "direction": "out"}
    return PhoneIn.model_validate({**base, **fields})


def test_late_means_more_than_24_hours():
    assert rules.is_late(NOW - DAY, NOW, DAY) is False  # exactly 24 h: still on time
    assert rules.is_late(NOW - DAY - timedelta(milliseconds=1), NOW, DAY) is True
    assert rules.is_late(NOW, NOW, DAY) is False


@given(st.integers(min_value=0, max_value=10 * 24 * 3600))
def test_late_is_the_delay_against_the_limit(seconds):
    occurred = NOW - timedelta(seconds=seconds)
    assert rules.is_late(occurred, NOW, DAY) == (seconds > 24 * 3600)


def test_new_interaction_is_stamped_and_derived():
    doc = rules.new_interaction("i-1", phone(duration_seconds=60), REP, NOW, late_after=DAY, skew=timedelta(minutes=5))
    assert doc["author_id"] == "rep-1" and doc["author_department_path"] == "/hq/east/t1"
    assert doc["recorded_at"] == NOW and doc["recorded_late"] is False and doc["late_by_seconds"] == 3600
    assert doc["duration_seconds"] == 60 and doc["subject"] is None and "message_key" not in doc
    assert rules.snapshot(doc).interaction_id == "i-1"


def test_future_beyond_the_skew_is_refused():
    skew = timedelta(minutes=5)
    rules.check_occurred_at(NOW + skew, NOW, skew)
    with pytest.raises(ValidationFailed) as err:
        rules.check_occurred_at(NOW + skew + timedelta(seconds=1), NOW, skew)
    assert err.value.errors[0].field == "occurred_at"


def test_patch_fields_must_belong_to_the_channel():
    doc = rules.new_interaction("i-1", phone(), REP, NOW, late_after=DAY, skew=timedelta(0))
    with pytest.raises(ValidationFailed) as err:
        rules.patch_changes(doc, InteractionPatch(minutes="x", location="y"))
    assert {e.field for e in err.value.errors} == {"minutes", "location"}
    with pytest.raises(ValidationFailed):
        rules.patch_changes(doc, InteractionPatch(direction=None))
    values = rules.patch_changes(doc, InteractionPatch(occurred_at=NOW - 2 * DAY, key_points="k"))
    changes = rules.apply_values(doc, values, DAY)
    assert {c.field for c in changes} == {"occurred_at", "key_points"} and doc["recorded_late"] is True
    assert rules.apply_values(doc, values, DAY) == []  # the same again changes nothing


def test_who_may_change():
    doc = rules.new_interaction("i-1", phone(), REP, NOW, late_after=DAY, skew=timedelta(0))
    manager = Principal(user_id="m", roles=frozenset({Role.manager}), department_path="/hq/east")
    elsewhere = Principal(user_id="m2", roles=frozenset({Role.manager}), department_path="/hq/west")
    colleague = Principal(user_id="rep-2", roles=frozenset({Role.rep}), department_path="/hq/east/t1")
    assert rules.can_edit(REP, doc) and rules.can_edit(manager, doc)
    assert not rules.can_edit(elsewhere, doc) and not rules.can_edit(colleague, doc)
    with pytest.raises(Forbidden):
        rules.ensure_can_edit(colleague, doc)


def test_platform_names_and_message_ids_are_normalised():
    from crm_interactions.domain.model import EmailIn, SocialIn

    social = SocialIn.model_validate(
        {"channel": "social", "customer_id": "c", "occurred_at": NOW, "platform": " 钉钉 "}
    )
    assert social.platform == "DingTalk"
    other = SocialIn.model_validate({"channel": "social", "customer_id": "c", "occurred_at": NOW, "platform": "Zalo"})
    assert other.platform == "Zalo"
    email = EmailIn.model_validate(
        {
            "channel": "email",
            "customer_id": "c",
            "occurred_at": NOW,
            "subject": "s",
            "participants": ["Chen@Example.COM"],
            "message_id": " <abc@mail> ",
        }
    )
    assert email.message_id == "abc@mail" and email.participants == ["chen@example.com"]
