"""CSV rendering, money and one-line timeline summaries."""

from __future__ import annotations

from decimal import Decimal

from crm_reporting.application.lag import percentile
from crm_reporting.domain.money import dec, money_in, ratio
from crm_reporting.domain.summaries import summarize
from crm_reporting.entrypoints.rendering import to_csv


def test_csv_has_a_bom_a_header_and_quotes_what_needs_it() -> None:
    text = to_csv([{"name": "华南, 制造", "count": 2}, {"name": "零售", "count": None, "extra": [1, 2]}])
    assert text.startswith("\ufeff")
    assert text.lstrip("\ufeff").splitlines() == ["name,count,extra", '"华南, 制造",2,', '零售,,"[1, 2]"']
    assert to_csv([]) == "\ufeff\r\n"


def test_money_is_decimal_and_ratios_are_rounded() -> None:
    assert money_in(dec("0.1") + dec("0.2"), "CNY") == "0.30"
    assert money_in(Decimal("80000.00") * 60 / 100, "CNY") == "48000.00"
    assert money_in(Decimal("80000.5"), "JPY") == "80001" and money_in(Decimal("1.2345"), "KWD") == "1.235"
    assert dec(None) == 0 and dec("garbage") == 0
    assert ratio(2, 3) == 0.6667 and ratio(1, 0) is None


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile([3.0], 99)) == (50.0, 99.0, 3.0)


def test_summaries() -> None:
    assert summarize("crm.customer.updated", {"changes": [{"field": "tier"}, {"field": "industry"}]}) == (
        "Customer updated: tier, industry"
    )
    move = {"from_stage_name": "初步接洽", "to_stage_name": "方案报价"}
    assert summarize("crm.opportunity.stage_changed", {"opportunity": {"name": "X"}, "move": move}) == (
        "Opportunity X: 初步接洽 → 方案报价"
    )
    assert summarize("crm.task.completed", {"task": {"title": "回访"}}) == "Task 回访: completed"
    assert summarize("crm.something.new", {}) == "something.new"


def test_an_opportunity_without_an_amount_is_summarised_without_one() -> None:
    created = summarize("crm.opportunity.created", {"opportunity": {"name": "ERP", "amount": None, "currency": "CNY"}})
    assert created == "Opportunity ERP created"
    won = summarize("crm.opportunity.won", {"opportunity": {"name": "ERP", "amount": "120000.00", "currency": "CNY"}})
    assert won == "Opportunity ERP won: 120000.00 CNY"
