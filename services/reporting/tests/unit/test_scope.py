"""Visibility of report figures: reps their own, managers their subtree, admins everything."""

from __future__ import annotations

import pytest

from crm_platform.auth import Principal, Role
from crm_platform.errors import Forbidden
from crm_reporting.application.scope import Scope

REP = Principal(user_id="u1", roles=frozenset({Role.rep}), department_path="/hq/east/t1")
MANAGER = Principal(user_id="m1", roles=frozenset({Role.manager}), department_path="/hq/east")
ADMIN = Principal(user_id="a1", roles=frozenset({Role.admin}), department_path="/hq")


def test_a_rep_sees_only_their_own_work() -> None:
    with pytest.raises(Forbidden):
        Scope.check(REP, "u2", None)
    with pytest.raises(Forbidden):
        Scope.check(REP, None, "/hq/east/t1")
    scope = Scope.check(REP, "u1", None)
    assert scope.query() == {"owner_id": "u1"}
    assert scope.allows("u1", "/hq/east/t1") and not scope.allows("u2", "/hq/east/t1")


def test_a_manager_sees_their_subtree_and_may_narrow_it() -> None:
    with pytest.raises(Forbidden):
        Scope.check(MANAGER, None, "/hq/west")
    scope = Scope.check(MANAGER, "u1", "/hq/east/t1")
    assert scope.allows("u1", "/hq/east/t1")
    assert not scope.allows("u3", "/hq/east/t1")  # narrowed to u1
    assert not Scope.check(MANAGER, None, None).allows("u9", "/hq/eastern")  # a prefix is not a subtree
    query = Scope.check(MANAGER, None, "/hq/east/t1").query("author_id", "author_department_path")
    assert query["author_department_path"] == {"$regex": "^/hq/east/t1(/|$)"}


def test_an_admin_sees_everything() -> None:
    assert Scope.check(ADMIN, None, None).query() == {}
    assert Scope.check(ADMIN, "anyone", "/x").allows("anyone", "/x/y")


def test_a_configured_department_scope_covers_its_department_only() -> None:
    lead = Principal(
        user_id="l1", roles=frozenset({"team-lead"}), department_path="/hq/east", scopes={"reports": "department"}
    )
    assert Scope.check(lead, None, None).query() == {"$or": [{"owner_id": "l1"}, {"department_path": "/hq/east"}]}
    assert Scope.check(lead, "u1", None).allows("u1", "/hq/east")
    assert not Scope.check(lead, None, None).allows("u1", "/hq/east/t1")  # below: not in a department scope
    with pytest.raises(Forbidden):
        Scope.check(lead, None, "/hq/east/t1")
    with pytest.raises(Forbidden):
        Scope.check(lead, None, "/hq/west")
    # The reports scope is what counts, not another module's.
    other = Principal(user_id="o1", roles=frozenset({"x"}), department_path="/hq/east", scopes={"customers": "all"})
    assert Scope.check(other, None, None).query() == {"_id": None}
