"""The order-reversing copy of a sort key, and the sorts that use it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm_customers.application.queries import list_order
from crm_customers.domain.rules import TIEBREAK, descending_copy
from crm_platform.listing import SortKey


@given(st.lists(st.text(max_size=6), min_size=2, max_size=20))
def test_ascending_on_the_copy_is_descending_on_the_text(texts: list[str]) -> None:
    assert sorted(texts, key=descending_copy) == sorted(texts, reverse=True)


def test_the_copy_is_plain_ascii() -> None:
    assert descending_copy("") == "~"
    assert descending_copy("A").isascii() and descending_copy("客户").isascii()
    assert descending_copy("A") < descending_copy("")  # a prefix after the strings it starts


def test_a_mixed_order_runs_one_way_on_the_copies() -> None:
    """``-tier,name`` becomes ascending tier copy, name, id: one ascending index serves it."""
    keys = list_order("-tier,name")
    assert keys == [SortKey("s.tier_desc", 1), SortKey("s.name", 1), SortKey(TIEBREAK, 1)]
    # One direction throughout: the key itself, walked backwards on (…, s.tier, s.id).
    keys = list_order("-tier")
    assert keys == [SortKey("s.tier", -1), SortKey(TIEBREAK, -1)]
