"""The department tree's rules: ids, paths, cycles, nesting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_directory.domain import departments as rules
from crm_platform.errors import Conflict, ValidationFailed

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def dept(department_id: str, path: str, parent_id: str | None = None, name: str | None = None) -> dict:
    return {"_id": department_id, "path": path, "parent_id": parent_id, "name": name or department_id}


@pytest.mark.parametrize("good", ["hq", "sh-team-1", "east_2", "0a", "a" * 63])
def test_valid_ids(good):
    assert rules.validate_id(good) == good


@pytest.mark.parametrize("bad", ["", "HQ", "-hq", "a/b", "东区", "a b", "a" * 64, "tree"])
def test_invalid_ids_are_422_on_the_field(bad):
    with pytest.raises(ValidationFailed) as caught:
        rules.validate_id(bad, "parent_id")
    assert caught.value.errors[0].field == "parent_id"


def test_ids_generated_from_names():
    assert rules.generated_id("East China Sales") == "east-china-sales"
    assert rules.generated_id("  Über  Team!! ") == "uber-team"
    assert rules.generated_id("华东销售部").startswith("dept-")
    assert rules.validate_id(rules.with_suffix("a" * 63))


def test_paths_and_prefixes_stop_at_segment_boundaries():
    assert rules.child_path(None, "hq") == "/hq"
    assert rules.child_path("/hq/east", "sh-team-1") == "/hq/east/sh-team-1"
    assert rules.is_within("/hq/east/sh", "/hq/east")
    assert rules.is_within("/hq/east", "/hq/east")
    assert not rules.is_within("/hq/eastern", "/hq/east")
    assert not rules.is_within("/hq", "/hq/east")


@given(st.lists(st.from_regex(r"[a-z0-9][a-z0-9-]{0,5}", fullmatch=True), min_size=1, max_size=6))
def test_subtree_regex_matches_exactly_the_paths_within(segments):
    import re

    path = "/" + "/".join(segments)
    pattern = re.compile(rules.subtree_regex(path))
    assert pattern.match(path)
    assert pattern.match(path + "/x")
    assert not pattern.match(path + "x")
    assert not pattern.match("/Q" + path), "anchored at the root"


def test_a_department_cannot_move_under_itself_or_below_itself():
    east = dept("east", "/hq/east", "hq")
    team = dept("team", "/hq/east/team", "east")
    west = dept("west", "/hq/west", "hq")
    for target in (east, team):
        with pytest.raises(Conflict) as caught:
            rules.ensure_not_into_itself(east, target)
        assert caught.value.errors[0].field == "parent_id"
    rules.ensure_not_into_itself(east, west)
    rules.ensure_not_into_itself(east, None)
    rules.ensure_not_into_itself(dept("eastern", "/hq/eastern", "hq"), team)


def test_new_departments_take_their_path_from_the_parent():
    hq = rules.new_department("hq", "总部", None, None, "admin", NOW)
    east = rules.new_department("east", "华东", hq, "m1", "admin", NOW)
    assert (hq["path"], hq["parent_id"]) == ("/hq", None)
    assert (east["path"], east["parent_id"], east["manager_id"]) == ("/hq/east", "hq", "m1")
    snapshot = rules.snapshot({**east, "version": 1})
    assert snapshot.path == "/hq/east" and snapshot.status == "active"


def test_build_tree_nests_by_parent_and_sorts_children_by_name():
    docs = [
        dept("hq", "/hq", None, "HQ"),
        dept("west", "/hq/west", "hq", "West"),
        dept("east", "/hq/east", "hq", "East"),
        dept("t1", "/hq/east/t1", "east", "Team"),
        dept("other", "/other", None, "Other root"),
    ]
    roots = rules.build_tree(docs)
    assert [r["department"]["_id"] for r in roots] == ["hq", "other"]
    hq = roots[0]
    assert [c["department"]["_id"] for c in hq["children"]] == ["east", "west"]
    assert [c["department"]["_id"] for c in hq["children"][0]["children"]] == ["t1"]
    sub = rules.build_tree([d for d in docs if d["path"].startswith("/hq/east")], "east")
    assert [r["department"]["_id"] for r in sub] == ["east"]
