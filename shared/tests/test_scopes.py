"""Data scopes on the Principal (crm_platform.auth): own, department, subtree and all, for the
record checks and the MongoDB filters; several roles give the widest; a principal built without
a role book falls back to the built-in roles' scopes; and the RoleBook resolves them per request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from crm_platform.auth import Principal, Role, Scope, widest
from crm_platform.permissions import Permission
from crm_platform.roles import RoleBook
from crm_platform.testing.backends import Backend
from crm_platform.testing.roles import role_created

MINE = "/hq/east"
CHILD = "/hq/east/team-1"
SIBLING = "/hq/west"
PREFIX_TWIN = "/hq/eastern"  # shares the text prefix, not the department


def caller(scope: Scope | None, module: str = "customers") -> Principal:
    scopes: dict[str, Scope] = {} if scope is None else {module: scope}
    return Principal(user_id="me", roles=frozenset({"custom"}), department_path=MINE, scopes=scopes)


@pytest.mark.parametrize(
    ("scope", "reached"),
    [
        ("own", set()),
        ("department", {MINE}),
        ("subtree", {MINE, CHILD}),
        ("all", {MINE, CHILD, SIBLING, PREFIX_TWIN, None}),
        (None, set()),
    ],
)
def test_which_departments_each_scope_reaches(scope: Scope | None, reached: set[str | None]) -> None:
    p = caller(scope)
    for path in (MINE, CHILD, SIBLING, PREFIX_TWIN, None):
        assert p.reaches_path(path, "customers") is (path in reached), (scope, path)
        # Another module: the scope is per module, and an absent one reaches nothing.
        assert p.reaches_path(path, "tasks") is False
        expected = path in reached
        assert p.can_see_owned("someone-else", path, module="customers") is expected
    # Own records are always visible, except to a caller with no scope at all in the module.
    assert p.can_see_owned("me", SIBLING, module="customers") is (scope is not None)


def test_the_filters_each_scope_gives() -> None:
    assert caller("own").mongo_visibility(module="customers") == {"owner_id": "me"}
    assert caller("department").mongo_visibility("author_id", "author_path", module="customers") == {
        "$or": [{"author_id": "me"}, {"author_path": MINE}]
    }
    assert caller("subtree").mongo_visibility(module="customers") == {
        "$or": [{"owner_id": "me"}, {"department_path": {"$regex": "^/hq/east(/|$)"}}]
    }
    assert caller("all").mongo_visibility(module="customers") == {}
    assert caller(None).mongo_visibility(module="customers") == {"_id": None}  # nothing, by the _id index
    # Without a department of one's own, department and subtree reach only one's own records.
    homeless = Principal(user_id="me", scopes={"customers": "department"})
    assert homeless.mongo_visibility(module="customers") == {"owner_id": "me"}


def test_widest_of_several() -> None:
    assert widest(["own", "subtree", "department"]) == "subtree"
    assert widest([None, "own"]) == "own"
    assert widest([None, None]) is None
    assert widest(["all", "own"]) == "all"


def test_without_a_book_the_builtin_roles_decide() -> None:
    rep = Principal(user_id="r", roles=frozenset({Role.rep}), department_path=MINE)
    manager = Principal(user_id="m", roles=frozenset({Role.manager}), department_path=MINE)
    admin = Principal(user_id="a", roles=frozenset({Role.admin}))
    both = Principal(user_id="b", roles=frozenset({Role.rep, Role.manager}), department_path=MINE)
    stranger = Principal(user_id="s", roles=frozenset({"nobody-knows"}))
    assert rep.scope("customers") == "own"
    assert manager.scope("opportunities") == "subtree"
    assert admin.scope("webhooks") == "all"
    assert both.scope("tasks") == "subtree"
    assert stranger.scope("customers") is None
    assert manager.reaches_path(CHILD, "customers") and not manager.reaches_path(SIBLING, "customers")
    assert manager.holds(Permission.customers_assign) and not rep.holds(Permission.customers_assign)
    assert admin.holds(Permission.customers_purge) and not stranger.holds(Permission.customers_view)


@pytest.fixture
async def book(backend: Backend) -> AsyncIterator[RoleBook]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    try:
        yield RoleBook(mongo[f"scopes_{uuid.uuid4().hex[:8]}"]["role_definitions"])
    finally:
        await mongo.close()


async def test_the_book_resolves_the_widest_scope_over_the_callers_roles(book: RoleBook) -> None:
    await book.apply(role_created("east-viewer", ["customers:view"], {"customers": "department", "tasks": "subtree"}))
    await book.apply(role_created("auditor", ["reports:view"], {"customers": "all", "reports": "all"}))
    viewer = book.resolve(Principal(user_id="v", roles=frozenset({"east-viewer"}), department_path=MINE))
    assert viewer.scope("customers") == "department"
    assert viewer.scope("tasks") == "subtree"
    assert viewer.scope("opportunities") == "own"  # a defined role gives "own" where it names no scope
    assert viewer.holds(Permission.customers_view) and not viewer.holds(Permission.customers_edit)

    both = book.resolve(Principal(user_id="b", roles=frozenset({"east-viewer", "auditor"}), department_path=MINE))
    assert both.scope("customers") == "all" and both.scope("tasks") == "subtree"
    assert both.holds(Permission.reports_view) and both.holds(Permission.customers_view)

    # A built-in role without a definition yet keeps its default; an unknown role gives nothing.
    manager = book.resolve(Principal(user_id="m", roles=frozenset({Role.manager}), department_path=MINE))
    assert manager.scope("customers") == "subtree" and manager.holds(Permission.customers_assign)
    ghost = book.resolve(Principal(user_id="g", roles=frozenset({"ghost"})))
    assert ghost.scope("customers") is None and ghost.permissions == frozenset()
    assert ghost.mongo_visibility(module="customers") == {"_id": None}

    # A redefined built-in: its definition's scope wins over the default.
    await book.apply(role_created("manager", ["customers:view"], {"customers": "department"}, version=2))
    narrowed = book.resolve(Principal(user_id="m", roles=frozenset({Role.manager}), department_path=MINE))
    assert narrowed.scope("customers") == "department" and not narrowed.reaches_path(CHILD, "customers")
