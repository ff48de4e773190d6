"""The rollup arithmetic: contributions, their difference, field names and quarter hours."""

from __future__ import annotations

from crm_reporting.adapters.rollups import (
    DAY_MS,
    QUARTER_MS,
    Contribution,
    dec_,
    enc,
    quarter_field,
    scaled,
    unscaled,
)
from crm_reporting.application.contributions import group_counter, group_values
from crm_reporting.application.reports import GroupBy
from crm_reporting.domain.money import dec


def test_the_difference_of_two_contributions_moves_only_what_changed() -> None:
    before = Contribution()
    before.add("roll_customers", {"field": "industry", "value": "制造业", "owner_id": "a"}, "n")
    before.add("roll_customers", {"field": "*", "value": "", "owner_id": "a"}, "n")
    after = Contribution.decode(before.encode())  # stored and read back
    after.counters.pop(("roll_customers", (("field", "industry"), ("value", "制造业"), ("owner_id", "a"))))
    after.add("roll_customers", {"field": "industry", "value": "零售", "owner_id": "a"}, "n")
    delta = after.minus(before)
    assert delta == {
        ("roll_customers", (("field", "industry"), ("value", "零售"), ("owner_id", "a"))): {"n": 1},
        ("roll_customers", (("field", "industry"), ("value", "制造业"), ("owner_id", "a"))): {"n": -1},
    }
    assert after.minus(Contribution.decode(after.encode())) == {}  # a repeat moves nothing


def test_field_names_never_carry_a_dot_or_a_separator_and_read_back() -> None:
    for raw in ("s1.v2", "$x", "a:b@c,d%e", "线索 Lead"):
        encoded = enc(raw)
        assert not any(ch in encoded for ch in ".$:@,")
        assert dec_(encoded) == raw


def test_quarter_hours_and_money() -> None:
    t = 20_000 * DAY_MS + 13 * 3_600_000 + 31 * 60_000  # 13:31 UTC
    assert quarter_field("ch:phone", t) == "ch:phone@54"  # 13:30 is the 54th quarter hour
    assert (t % DAY_MS) // QUARTER_MS * QUARTER_MS == 13 * 3_600_000 + 30 * 60_000
    assert unscaled(scaled(dec("100000.05")) * 60) / 100 == dec("60000.03")


def test_custom_value_counters_read_back_whatever_the_value_holds() -> None:
    assert group_values(["a", "b", "a"]) == ["a", "b"]  # a multi-choice value: once per option
    assert group_values([]) == ["(none)"] and group_values(None) == ["(none)"] and group_values("") == ["(none)"]
    assert group_values(True) == ["true"] and group_values(False) == ["false"]
    group = GroupBy("opportunities", "seg", "choice")
    for value in ("a.b", "x:y", "50%", "u@corp", "1,2", "$v", "行业"):
        name = group_counter("on", "seg", value)
        assert "." not in name and "@" not in name and "$" not in name  # a safe rollup field name
        assert group.value_of(name, "on") == value
        assert group.value_of(name, "oa") is None  # another figure
        assert GroupBy("opportunities", "segment", "choice").value_of(name, "on") is None  # another field
