"""Which events make an entry, and what it says (the domain rules, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_audit.domain.entries import bound, entry_for, sort_key, to_document, to_view
from crm_audit.domain.search import Search, SearchError, decode_cursor, encode_cursor
from crm_platform.contracts import customers as cev
from crm_platform.contracts import directory as dev
from crm_platform.contracts import export_approval as xev
from crm_platform.events import EventEnvelope, EventType
from crm_platform.testing.event_feed import customer

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


def event(event_type: EventType[object], subject: str, data: object, actor: str | None = "admin-1") -> EventEnvelope:
    return event_type.build(  # type: ignore[arg-type]
        source="/crm/x", subject=subject, data=data, aggregate_version=1, time=NOW, actor=actor
    ).model_copy(update={"clientaddress": "203.0.113.7"})


def user(roles: list[str]) -> dev.UserSnapshot:
    return dev.UserSnapshot(
        user_id="u1",
        email="u1@example.com",
        name="李雷",
        roles=roles,  # type: ignore[arg-type]
        department_id="hq",
        department_path="/hq",
        created_at=NOW,
        updated_at=NOW,
    )


def test_a_merge_is_one_entry_on_the_survivor_and_the_merged_away_side_makes_none() -> None:
    snap = customer("c1", "rep-1", "/hq", NOW)
    entry = entry_for(event(cev.MERGED, "c1", cev.Merged(customer=snap, merged_customer_id="c2")))
    assert entry is not None
    assert (entry.action, entry.target_type, entry.target_id) == ("customer.merged", "customer", "c1")
    assert entry.details["merged_customer_id"] == "c2"
    assert (entry.actor_id, entry.client_address, entry.at) == ("admin-1", "203.0.113.7", NOW)
    assert entry_for(event(cev.MERGED_AWAY, "c2", cev.MergedAway(customer=snap, survivor_id="c1"))) is None


def test_an_import_is_one_entry_with_its_counts_and_its_customers_make_none() -> None:
    snap = customer("c1", "rep-1", "/hq", NOW)
    assert entry_for(event(cev.CUSTOMER_CREATED, "c1", cev.CustomerCreated(customer=snap))) is None
    assert entry_for(event(cev.CUSTOMER_CREATED, "c1", cev.CustomerCreated(customer=snap, via="import"))) is None
    data = cev.CustomersImported(import_id="i1", total_rows=5, valid_rows=4, imported=3, errors=1, duplicates=1)
    imported = entry_for(event(cev.CUSTOMERS_IMPORTED, "i1", data))
    assert imported is not None
    assert (imported.action, imported.target_type, imported.target_id) == (
        "customer.imported",
        "customers_import",
        "i1",
    )
    assert imported.details == {"total_rows": 5, "valid_rows": 4, "imported": 3, "errors": 1, "duplicates": 1}


def test_a_role_change_is_named_as_such_and_a_department_cascade_is_not_audited() -> None:
    change = dev.FieldChange(field="roles", old=["rep"], new=["manager"])
    roles = entry_for(event(dev.USER_UPDATED, "u1", dev.UserUpdated(user=user(["manager"]), changes=[change])))
    assert roles is not None and roles.action == "user.roles_changed"
    name = dev.FieldChange(field="name", old="李", new="李雷")
    renamed = entry_for(event(dev.USER_UPDATED, "u1", dev.UserUpdated(user=user(["rep"]), changes=[name])))
    assert renamed is not None and renamed.action == "user.updated"
    moved = dev.UserUpdated(user=user(["rep"]), changes=[], cause="department_moved:east")
    assert entry_for(event(dev.USER_UPDATED, "u1", moved)) is None


def test_a_failed_sign_in_has_no_actor_and_business_events_make_nothing() -> None:
    failed = entry_for(
        event(
            dev.SIGN_IN_FAILED,
            "attempt-1",
            dev.SignInFailed(email="x@example.com", reason="invalid_credentials"),
            actor=None,
        )
    )
    assert failed is not None and failed.actor_id is None and failed.target_type == "sign_in"
    snap = customer("c1", "rep-1", "/hq", NOW)
    assert entry_for(event(cev.CUSTOMER_UPDATED, "c1", cev.CustomerUpdated(customer=snap, changes=[]))) is None


def test_unknown_role_events_are_kept_generically_and_other_unknown_types_are_not() -> None:
    def raw(event_type: str, data: dict[str, object]) -> EventEnvelope:
        return EventEnvelope(
            id="e1",
            source="/crm/directory",
            type=event_type,
            subject="r1",
            time=NOW,
            schemaversion=1,
            aggregateversion=1,
            data=data,
        )

    entry = entry_for(raw("crm.role.permissions_changed", {"role": {"name": "x"}}))
    assert entry is not None
    assert (entry.action, entry.target_type, entry.details) == (
        "role.permissions_changed",
        "role",
        {"role": {"name": "x"}},
    )
    big = entry_for(raw("crm.role.created", {"blob": "x" * 5000}))
    assert big is not None and big.details["truncated"] is True and len(big.details["text"]) == 2000
    assert entry_for(raw("crm.something.else", {})) is None


def test_the_sort_key_orders_by_time_then_id_and_the_stored_form_reads_back() -> None:
    early, late = int(NOW.timestamp() * 1000), int((NOW + timedelta(milliseconds=1)).timestamp() * 1000)
    assert sort_key(early, "zzz") < sort_key(late, "aaa")
    assert bound(NOW) <= sort_key(early, "a") < bound(NOW + timedelta(milliseconds=1))
    snap = customer("c1", "rep-1", "/hq", NOW)
    entry = entry_for(event(cev.MERGED, "c1", cev.Merged(customer=snap, merged_customer_id="c2")))
    assert entry is not None
    view = to_view(to_document(entry, "王管理"))
    assert view["at"] == "2026-11-20T04:00:00Z" and view["actor_name"] == "王管理"


def test_a_search_is_equalities_and_one_range_on_the_key() -> None:
    cursor = encode_cursor(sort_key(1_000, "e9"))
    search = Search(actor_id="a", start=NOW, end=NOW + timedelta(days=1), cursor=cursor)
    query = search.query()
    assert query == {"actor_id": "a", "k": {"$gte": bound(NOW), "$lt": sort_key(1_000, "e9")}}
    assert decode_cursor(cursor) == sort_key(1_000, "e9")
    for bad, field in (
        (Search(start=NOW.replace(tzinfo=None)), "from"),
        (Search(start=NOW, end=NOW), "to"),
        (Search(cursor="bm90IGEga2V5"), "cursor"),
        (Search(cursor="%%%"), "cursor"),
    ):
        with pytest.raises(SearchError) as raised:
            bad.query()
        assert raised.value.field == field


def test_every_rule_names_an_event_type_the_contracts_define() -> None:
    from crm_audit.domain.entries import RULES
    from crm_platform.events import registry

    assert [t for t in RULES if registry.get(t) is None] == []


def test_export_approval_steps_and_policy_changes_are_entries() -> None:
    request = xev.ExportRequestSnapshot(
        request_id="r1",
        requester_id="rep-1",
        requester_department_path="/hq/east",
        filter={"tags_all": "华东"},
        rows=1200,
        threshold=1000,
        status="approved",
        requested_at=NOW,
        decided_by="mgr-1",
        decided_at=NOW,
        comment="季度复盘",
        valid_until=NOW + timedelta(hours=24),
    )
    approved = entry_for(event(xev.EXPORT_APPROVED, "r1", xev.ExportRequestDecided(request=request), "mgr-1"))
    assert approved is not None
    assert (approved.action, approved.target_type, approved.target_id, approved.actor_id) == (
        "customer.export_approved",
        "export_request",
        "r1",
        "mgr-1",
    )
    assert approved.details["comment"] == "季度复盘" and approved.details["filter"] == {"tags_all": "华东"}
    assert approved.details["requester_id"] == "rep-1" and approved.details["rows"] == 1200
    downloaded = entry_for(
        event(xev.EXPORT_DOWNLOADED, "r1", xev.ExportRequestDownloaded(request=request, rows=1250), "rep-1")
    )
    assert downloaded is not None and downloaded.action == "customer.export_downloaded"
    assert downloaded.details["rows"] == 1250  # as many as the file held, at download time
    requested = entry_for(event(xev.EXPORT_REQUESTED, "r1", xev.ExportRequested(request=request), "rep-1"))
    assert requested is not None and requested.action == "customer.export_requested"
    policy = entry_for(
        event(
            xev.EXPORT_POLICY_CHANGED, "export-policy", xev.ExportPolicyChanged(approval_above_rows=1000, previous=None)
        )
    )
    assert policy is not None and policy.action == "customer.export_policy_changed"
    assert policy.details == {"approval_above_rows": 1000, "previous": None}
