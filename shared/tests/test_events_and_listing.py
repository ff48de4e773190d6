"""Envelopes on the wire, sort parsing and cursors (pure, no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from crm_platform.contracts import customers
from crm_platform.errors import ValidationFailed
from crm_platform.events import decode_event, registry, to_kafka
from crm_platform.listing import SortKey, decode_cursor, encode_cursor, keyset_filter, parse_sort

NOW = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


def snapshot() -> customers.CustomerSnapshot:
    return customers.CustomerSnapshot(customer_id="c1", kind="company", name="华为", created_at=NOW, updated_at=NOW)


def test_structured_cloudevent_on_the_wire():
    env = customers.CUSTOMER_CREATED.build(
        source="/crm/customers",
        subject="c1",
        data=customers.CustomerCreated(customer=snapshot()),
        aggregate_version=1,
        time=NOW,
        actor="u1",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    key, value, headers = to_kafka(env.model_dump(mode="json"))
    assert key == b"c1"
    assert headers["content-type"] == "application/cloudevents+json"
    assert headers["traceparent"].startswith("00-aaaa")
    wire = json.loads(value)
    for attribute in (
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "schemaversion",
        "aggregateversion",
    ):
        assert attribute in wire
    assert wire["type"] == "crm.customer.created" and wire["schemaversion"] == 1
    assert wire["data"]["customer"]["name"] == "华为"
    back = decode_event(value)
    assert back.id == env.id and customers.CUSTOMER_CREATED.parse(back).customer.customer_id == "c1"


def test_every_customer_event_type_is_registered_with_a_schema():
    names = {t.name for t in registry.for_topic(customers.TOPIC)}
    assert {
        "crm.customer.created",
        "crm.customer.updated",
        "crm.customer.owner_changed",
        "crm.customer.released",
        "crm.customer.claimed",
        "crm.customer.locked",
        "crm.customer.unlocked",
        "crm.customer.deleted",
        "crm.customer.restored",
        "crm.customer.merged",
        "crm.customer.contact_added",
        "crm.customer.contact_changed",
        "crm.customer.contact_removed",
        "crm.customer.purged",
    } <= names
    for event_type in registry.for_topic(customers.TOPIC):
        schema = event_type.envelope_model().model_json_schema()
        assert schema["properties"]["type"]["const"] == event_type.name


ALLOWED = {"name": "s.name", "updated_at": "s.updated_at", "tier": "s.tier", "city": "s.city", "kind": "s.kind"}


def test_parse_sort():
    assert parse_sort("-updated_at,name", ALLOWED, "name") == [
        SortKey("s.updated_at", -1),
        SortKey("s.name", 1),
        SortKey("_id", 1),
    ]
    assert parse_sort(None, ALLOWED, "-tier") == [SortKey("s.tier", -1), SortKey("_id", 1)]
    # Asked for: the id runs the way the last key does (an index walked backwards serves it).
    assert parse_sort("-tier", ALLOWED, "name", "s.id", tie_follows_last=True) == [
        SortKey("s.tier", -1),
        SortKey("s.id", -1),
    ]
    assert parse_sort("-tier,name", ALLOWED, "name", tie_follows_last=True)[-1] == SortKey("_id", 1)
    for bad, reason in (
        ("nope", "unknown sort key"),
        ("name,-name", "named twice"),
        ("name,tier,city,kind,updated_at", "at most 4"),
    ):
        with pytest.raises(ValidationFailed) as info:
            parse_sort(bad, ALLOWED, "name")
        assert info.value.errors[0].field == "sort" and reason in info.value.errors[0].reason


def test_cursor_round_trip_and_tamper_detection():
    keys = parse_sort("-updated_at,name", ALLOWED, "name")
    doc = {"_id": "c9", "s": {"updated_at": NOW, "name": "acme"}}
    token = encode_cursor(doc, keys)
    assert decode_cursor(token, keys) == [NOW, "acme", "c9"]
    with pytest.raises(ValidationFailed):
        decode_cursor(token, parse_sort("name", ALLOWED, "name"))  # a cursor for another sort
    with pytest.raises(ValidationFailed):
        decode_cursor("not-a-cursor", keys)


def test_keyset_filter_shape():
    keys = [SortKey("s.tier", 1), SortKey("_id", 1)]
    assert keyset_filter(keys, ["B", "c5"]) == {
        "$or": [{"s.tier": {"$gt": "B"}}, {"$and": [{"s.tier": "B"}, {"_id": {"$gt": "c5"}}]}]
    }


def test_all_of_flattens_and_keeps_repeats():
    from crm_platform.listing import all_of

    assert all_of({"a": 1}, {"b": 2, "$and": [{"c": 3}]}) == {"a": 1, "b": 2, "c": 3}
    assert all_of({"a": 1, "$or": [{"x": 1}]}, {"a": {"$gt": 0}, "$or": [{"y": 1}]}) == {
        "a": {"$eq": 1, "$gt": 0},
        "$or": [{"x": 1}],
        "$and": [{"$or": [{"y": 1}]}],
    }


def test_all_of_merges_two_conditions_on_one_field():
    """The embedded store filters a query with ``$and`` in Python, reading every row: a manager's
    subtree regex and a cursor's range on the same field must stay one top-level condition."""
    from crm_platform.listing import all_of

    regex = {"department_path": {"$regex": "^/a(/|$)"}}
    assert all_of(regex, {"department_path": {"$gt": "/a/b"}}) == {
        "department_path": {"$regex": "^/a(/|$)", "$gt": "/a/b"}
    }
    assert all_of(regex, {"department_path": "/a/b", "s.id": {"$gt": "x"}}) == {
        "department_path": {"$regex": "^/a(/|$)", "$eq": "/a/b"},
        "s.id": {"$gt": "x"},
    }
    # An operator on both sides cannot be one document: kept apart, in $and.
    assert all_of({"n": {"$gt": 1}}, {"n": {"$gt": 2}}) == {"n": {"$gt": 1}, "$and": [{"n": {"$gt": 2}}]}
    assert all_of({"q": {"$regex": "a", "$options": "i"}}, {"q": "a"}) == {
        "q": {"$regex": "a", "$options": "i"},
        "$and": [{"q": "a"}],
    }


def test_or_branches_expand_visibility_and_cursor():
    from crm_platform.listing import or_branches

    query = {"status": "active", "$or": [{"owner_id": "r1"}, {"in_pool": True}]}
    assert or_branches(query) == [{"status": "active", "owner_id": "r1"}, {"status": "active", "in_pool": True}]
    keys = [SortKey("s.tier", 1), SortKey("_id", 1)]
    with_cursor = {**query, "$and": [keyset_filter(keys, ["B", "c5"])]}
    branches = or_branches(with_cursor)
    assert branches is not None and len(branches) == 4
    assert {"status": "active", "owner_id": "r1", "s.tier": "B", "_id": {"$gt": "c5"}} in branches


def test_all_of_drops_a_repeated_identical_condition():
    from crm_platform.listing import all_of

    assert all_of({"owner_id": "r1", "status": "active"}, {"owner_id": "r1"}) == {"owner_id": "r1", "status": "active"}
