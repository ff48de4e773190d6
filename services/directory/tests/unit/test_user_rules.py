"""The user aggregate's rules: changes, snapshots without secrets, who may read and edit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_directory.domain import users as rules
from crm_platform.auth import Principal, Role
from crm_platform.errors import Forbidden, NotFound, ValidationFailed

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EAST = {"_id": "east", "path": "/hq/east"}


def user(**overrides) -> dict:
    doc = rules.new_user(
        user_id="u1",
        email="li.si@example.com",
        name="李四",
        phone="+8613800138000",
        language="zh-CN",
        roles=["rep"],
        department=EAST,
        password_hash="$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA",
        active=True,
        actor="admin",
        now=NOW,
    )
    doc.update(overrides)
    return doc


def principal(user_id: str, *roles: Role, path: str | None = "/hq") -> Principal:
    return Principal(user_id=user_id, roles=frozenset(roles), department_path=path)


def test_snapshots_carry_email_and_language_and_nothing_of_the_password():
    snap = rules.snapshot({**user(), "version": 1}).model_dump(mode="json")
    assert snap["email"] == "li.si@example.com" and snap["language"] == "zh-CN"
    assert snap["department_path"] == "/hq/east"
    assert "password" not in snap and "argon2" not in str(snap)


def test_apply_changes_reports_only_real_changes():
    doc = user()
    changes = rules.apply_changes(doc, {"name": "李四", "language": "en", "roles": ["manager", "rep", "manager"]})
    assert [(c.field, c.old, c.new) for c in changes] == [
        ("language", "zh-CN", "en"),
        ("roles", ["rep"], ["manager", "rep"]),
    ]
    assert rules.apply_changes(doc, {"language": "en"}) == []
    assert doc["search"] == "李四 li.si@example.com"


def test_emails_and_phones_are_normalised_or_refused_on_their_field():
    assert rules.email_or_422(" Li.Si@Example.COM ") == "li.si@example.com"
    assert rules.phone_or_422("138 0013 8000", "CN") == "+8613800138000"
    assert rules.phone_or_422("  ", "CN") is None
    with pytest.raises(ValidationFailed) as caught:
        rules.email_or_422("not-an-email")
    assert caught.value.errors[0].field == "email"
    with pytest.raises(ValidationFailed) as caught:
        rules.phone_or_422("12345", "CN")
    assert caught.value.errors[0].field == "phone"


def test_who_reads_the_full_record():
    doc = user()
    assert rules.can_read_full(principal("admin", Role.admin), doc)
    assert rules.can_read_full(principal("u1", Role.rep, path="/hq/east"), doc), "oneself"
    assert rules.can_read_full(principal("m", Role.manager, path="/hq"), doc), "a manager above"
    assert not rules.can_read_full(principal("m", Role.manager, path="/hq/west"), doc)
    assert not rules.can_read_full(principal("m", Role.manager, path="/hq/eas"), doc)
    assert not rules.can_read_full(principal("r", Role.rep, path="/hq/east"), doc), "a colleague rep"
    with pytest.raises(NotFound):
        rules.ensure_readable(principal("r", Role.rep), doc, "u1")


def test_who_edits_what():
    doc = user()
    rules.ensure_may_edit(principal("admin", Role.admin), doc, {"roles", "email"})
    rules.ensure_may_edit(principal("u1", Role.rep), doc, {"name", "phone", "language"})
    with pytest.raises(Forbidden, match="roles"):
        rules.ensure_may_edit(principal("u1", Role.rep), doc, {"name", "roles"})
    with pytest.raises(Forbidden):
        rules.ensure_may_edit(principal("m", Role.manager, path="/hq"), doc, {"name"})
    with pytest.raises(NotFound):
        rules.ensure_may_edit(principal("r", Role.rep), doc, {"name"})
