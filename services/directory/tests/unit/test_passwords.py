"""Password policy and argon2 hashing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_directory.domain.passwords import (
    Argon2Parameters,
    Passwords,
    ensure_acceptable,
    generate_password,
    policy_violations,
)
from crm_platform.errors import ValidationFailed

CHEAP = Argon2Parameters(time_cost=1, memory_kib=256, parallelism=1)


def test_short_passwords_are_refused_with_the_length_in_words():
    assert policy_violations("abc", None, 10) == ["must be at least 10 characters long (it has 3)"]
    assert policy_violations("0123456789", None, 10) == []


def test_the_email_is_not_a_password_whatever_its_case_or_width():
    email = "zhang.san@example.com"
    assert "must not be your email address" in policy_violations("Zhang.San@Example.com", email, 10)
    assert "must not be your email address" in policy_violations("ｚhang.san@example.com ", email, 10)
    assert policy_violations("zhang.san@example.com!", email, 10) == []


def test_only_spaces_and_overlong_are_refused():
    assert "must not be only spaces" in policy_violations(" " * 12, None, 10)
    assert any("at most" in r for r in policy_violations("x" * 2000, None, 10))


def test_ensure_acceptable_reports_each_reason_on_the_field():
    with pytest.raises(ValidationFailed) as caught:
        ensure_acceptable("a@b.cn", "a@b.cn", 10, field="new_password")
    reasons = [(e.field, e.reason) for e in caught.value.errors]
    assert ("new_password", "must be at least 10 characters long (it has 6)") in reasons
    assert ("new_password", "must not be your email address") in reasons


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=12, max_value=40))
def test_generated_passwords_meet_the_policy(length: int):
    password = generate_password(length)
    assert len(password) == length
    assert policy_violations(password, "someone@example.com", 10) == []


def test_hash_verify_and_rehash_when_the_parameters_change():
    old = Passwords(CHEAP)
    stored = old.hash("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert old.verify(stored, "correct horse battery")
    assert not old.verify(stored, "wrong horse battery")
    assert not old.needs_rehash(stored)
    stronger = Passwords(Argon2Parameters(time_cost=2, memory_kib=512, parallelism=1))
    assert stronger.verify(stored, "correct horse battery"), "old hashes keep working"
    assert stronger.needs_rehash(stored)
    assert not stronger.needs_rehash(stronger.hash("correct horse battery"))


def test_unknown_accounts_are_checked_against_a_dummy_hash_and_always_fail():
    passwords = Passwords(CHEAP)
    assert passwords.dummy_hash.startswith("$argon2id$")
    assert not passwords.verify(None, "anything at all")
    assert not passwords.verify("not a hash", "anything at all")
    assert passwords.needs_rehash("not a hash")


def test_production_defaults_are_argon2_cffi_defaults():
    from argon2 import PasswordHasher

    from crm_directory.settings import DirectorySettings

    s = DirectorySettings()
    default = PasswordHasher()
    assert (s.directory_argon2_time_cost, s.directory_argon2_memory_kib, s.directory_argon2_parallelism) == (
        default.time_cost,
        default.memory_cost,
        default.parallelism,
    )
