"""The platform part of Idempotency-Key: the key's syntax, the derived ids and the request fingerprint."""

from __future__ import annotations

import pytest

from crm_platform.errors import Conflict, ValidationFailed
from crm_platform.idempotency import FINGERPRINT, IdempotencyKey, KeyReused, fingerprint, parse_key

JSON = "application/json"


def key(key: str = "k-1", principal: str = "rep-1", scope: str = "POST /v1/customers") -> IdempotencyKey:
    return IdempotencyKey(key=key, principal_id=principal, scope=scope, fingerprint=fingerprint(b"{}", JSON))


def test_the_id_depends_on_user_route_and_key_and_on_nothing_else():
    assert key().record_id == key().record_id, "a retry, even in another process, names the same record"
    others = {key("k-2").record_id, key(principal="rep-2").record_id, key(scope="POST /v1/tasks").record_id}
    assert len(others | {key().record_id}) == 4
    assert key().uuid("line 2") != key().uuid("line 3") != key().uuid()


def test_json_is_compared_by_value_and_the_query_counts():
    assert fingerprint(b'{"a": 1, "b": [1, 2]}', JSON) == fingerprint(b'{"b":[1,2],"a":1}', "application/json; x=y")
    assert fingerprint(b'{"a": 1}', JSON) != fingerprint(b'{"a": 2}', JSON)
    assert fingerprint(b"x", "text/csv", "dry_run=false") != fingerprint(b"x", "text/csv", "dry_run=true")
    assert fingerprint(b"x", "text/csv", "a=1&b=2") == fingerprint(b"x", "text/csv", "b=2&a=1")


def test_secrets_are_not_part_of_the_fingerprint():
    # Whoever reads the store must not be able to test password guesses against a plain hash.
    one = fingerprint(b'{"email": "a@b.cn", "password": "correct horse", "nested": {"secret": "s1"}}', JSON)
    two = fingerprint(b'{"email": "a@b.cn", "password": "battery staple", "nested": {"secret": "s2"}}', JSON)
    assert one == two


@pytest.mark.parametrize("raw", ["", "x" * 256, "naïve", "line\nbreak", "tab\t"])
def test_a_bad_key_is_refused_naming_the_header(raw: str):
    with pytest.raises(ValidationFailed) as refused:
        parse_key(raw)
    assert refused.value.errors[0].field == "Idempotency-Key" and refused.value.errors[0].location == "header"


def test_good_keys():
    assert parse_key(None) is None
    for raw in ("a", "x" * 255, "8e0f6a6c-8a3b-4a39-9d0e-3a2b1c0d9e8f", "order 42 / retry"):
        assert parse_key(raw) == raw


def test_a_replay_needs_the_same_request():
    k = key()
    with pytest.raises(KeyReused):
        k.replay({"_id": k.record_id, FINGERPRINT: "another request"})
    assert not k.replayed
    with pytest.raises(Conflict):
        k.replay({"_id": k.record_id, "status": "purged"})  # a tombstone keeps no fingerprint
    stored = k.stamp({"_id": k.record_id})
    assert k.replay(stored) is stored and k.replayed
