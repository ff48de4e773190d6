"""The read copy of the role definitions every service enforces (crm_platform.roles.RoleBook), on
the real store: definitions applied by version (stale and repeated events change nothing), a
role it does not know grants nothing, the built-in defaults hold until their first definition,
and another replica learns the definitions from the collection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from crm_platform.auth import Principal, Role
from crm_platform.contracts import directory as ev
from crm_platform.events import EventEnvelope
from crm_platform.permissions import ROLE_PERMISSIONS, Permission, PermissionDenied, ensure_permitted, granted
from crm_platform.roles import RoleBook
from crm_platform.testing.backends import Backend

P = Permission
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Any]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    try:
        yield mongo[f"roles_{uuid.uuid4().hex[:8]}"]
    finally:
        await mongo.close()


def role_event(
    role_id: str,
    version: int,
    permissions: list[str],
    *,
    kind: str = "updated",
    scopes: dict[str, str] | None = None,
    builtin: bool = False,
) -> EventEnvelope:
    snapshot = ev.RoleSnapshot(
        role_id=role_id,
        names={"zh-CN": "角色", "en": "Role"},
        permissions=permissions,
        scopes=scopes or {},  # type: ignore[arg-type]
        builtin=builtin,
        status="deleted" if kind == "deleted" else "active",
        created_at=NOW,
        updated_at=NOW,
    )
    if kind == "created":
        return ev.ROLE_CREATED.build(
            source="/crm/directory",
            subject=role_id,
            data=ev.RoleCreated(role=snapshot),
            aggregate_version=version,
            time=NOW,
            actor="admin",
        )
    if kind == "deleted":
        return ev.ROLE_DELETED.build(
            source="/crm/directory",
            subject=role_id,
            data=ev.RoleDeleted(role=snapshot),
            aggregate_version=version,
            time=NOW,
            actor="admin",
        )
    return ev.ROLE_UPDATED.build(
        source="/crm/directory",
        subject=role_id,
        data=ev.RoleUpdated(role=snapshot, changes=[]),
        aggregate_version=version,
        time=NOW,
        actor="admin",
    )


async def test_definitions_apply_in_version_order_and_stale_or_repeated_ones_change_nothing(db: Any) -> None:
    book = RoleBook(db["role_definitions"])
    await book.ensure_indexes()
    created = role_event("key-account", 1, ["customers:view"], kind="created", scopes={"customers": "subtree"})
    edited = role_event("key-account", 2, ["customers:view", "customers:edit"])
    taken_away = role_event("key-account", 3, ["customers:view"])

    await book.apply(created)
    assert book.permissions_of("key-account") == {P.customers_view}
    assert book.scope_of("key-account", "customers") == "subtree"
    assert book.scope_of("key-account", "opportunities") == "own", "a module not listed: own"
    await book.apply(taken_away)
    await book.apply(edited)  # older than what is there: ignored, in memory and in the store
    await book.apply(taken_away)  # repeated
    assert book.permissions_of("key-account") == {P.customers_view}
    stored = await db["role_definitions"].find_one({"_id": "key-account"})
    assert stored["source_version"] == 3 and stored["permissions"] == ["customers:view"]

    await book.apply(role_event("key-account", 4, ["customers:view"], kind="deleted"))
    assert book.permissions_of("key-account") == frozenset()
    assert book.scope_of("key-account", "customers") is None


async def test_an_unknown_role_grants_nothing_and_the_built_ins_hold_until_defined(db: Any) -> None:
    book = RoleBook(db["role_definitions"])
    await book.ensure_indexes()
    stranger = Principal(user_id="u1", roles=frozenset({"not-defined-anywhere"}))
    with pytest.raises(PermissionDenied):
        ensure_permitted(stranger, P.account_self, book)
    assert granted(["not-defined-anywhere"], book) == frozenset()

    # Before the directory has published: the platform's defaults for the built-in roles.
    assert book.permissions_of("rep") == ROLE_PERMISSIONS[Role.rep]
    assert book.scope_of("manager", "customers") == "subtree"
    # The directory's definition wins once it arrives, also when it grants less.
    await book.apply(role_event("rep", 2, ["account:self", "customers:view"], builtin=True))
    assert book.permissions_of("rep") == {P.account_self, P.customers_view}
    rep = Principal(user_id="u2", roles=frozenset({"rep"}))
    with pytest.raises(PermissionDenied) as denied:
        ensure_permitted(rep, P.customers_create, book)
    assert "(roles: admin, manager)" in denied.value.detail, "the refusal names who has it now"
    # A permission this code does not know (a newer directory) is ignored, not fatal.
    await book.apply(role_event("auditor", 1, ["customers:view", "audits:read"], kind="created"))
    assert book.permissions_of("auditor") == {P.customers_view}


async def test_another_replica_learns_the_definitions_from_the_collection(db: Any) -> None:
    first, second = RoleBook(db["role_definitions"]), RoleBook(db["role_definitions"])
    await first.ensure_indexes()
    await first.apply(role_event("analyst", 1, ["reports:view"], kind="created"))
    await first.apply(role_event("gone", 1, ["reports:view"], kind="created"))
    await first.apply(role_event("gone", 2, ["reports:view"], kind="deleted"))
    assert second.permissions_of("analyst") == frozenset()
    await second.load()
    assert second.permissions_of("analyst") == {P.reports_view}
    assert second.permissions_of("gone") == frozenset()
    assert sorted(second.roles_with(P.reports_view)) == ["admin", "analyst", "manager", "rep"]
