"""Receivable rules without I/O: plan sums and dates, instalments that received money, payment
allocation (oldest first, named instalment first, partial, over-payment kept as credit) and refunds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from crm_platform.errors import Conflict, ValidationFailed
from crm_sales.domain import receivables as rules

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TODAY = date(2026, 6, 1)


def contract(amount: str = "1000.00", status: str = "signed") -> dict[str, Any]:
    minor = int(amount.replace(".", ""))
    return {"_id": "c1", "status": status, "amount": amount, "amount_minor": minor, "currency": "CNY"}


def plan_in(*items: tuple[str, str], ids: list[str | None] | None = None) -> rules.PlanIn:
    ids = ids or [None] * len(items)
    return rules.PlanIn(
        instalments=[
            rules.InstalmentIn(id=i, due_date=date.fromisoformat(d), amount=a)
            for (d, a), i in zip(items, ids, strict=True)
        ]
    )


def planned(doc: dict[str, Any], *items: tuple[str, str]) -> dict[str, Any]:
    doc["plan"] = rules.new_plan(doc, plan_in(*items))
    rules.refresh(doc)
    return doc


def pay(doc: dict[str, Any], amount: str, instalment_id: str | None = None, pid: str = "p1") -> dict[str, Any]:
    data = rules.PaymentIn(amount=amount, received_on=TODAY, method="bank_transfer", instalment_id=instalment_id)
    return rules.receive(doc, pid, data, TODAY, "u1", NOW)


def error_field(exc: pytest.ExceptionInfo[ValidationFailed]) -> str:
    return exc.value.errors[0].field


def test_a_plan_must_sum_exactly_to_the_amount_saying_the_difference() -> None:
    with pytest.raises(ValidationFailed) as exc:
        rules.new_plan(contract(), plan_in(("2026-07-01", "400"), ("2026-08-01", "500")))
    assert error_field(exc) == "instalments" and "100.00 less" in exc.value.errors[0].reason
    with pytest.raises(ValidationFailed) as exc:
        rules.new_plan(contract(), plan_in(("2026-07-01", "600"), ("2026-08-01", "500")))
    assert "100.00 more" in exc.value.errors[0].reason
    plan = rules.new_plan(contract(), plan_in(("2026-07-01", "400.5"), ("2026-08-01", "599.5")))
    assert [(p["amount"], p["due_day"]) for p in plan] == [("400.50", 20635), ("599.50", 20666)]


def test_due_dates_ascend_and_amounts_are_positive() -> None:
    with pytest.raises(ValidationFailed) as exc:
        rules.new_plan(contract(), plan_in(("2026-08-01", "500"), ("2026-07-01", "500")))
    assert error_field(exc) == "instalments[1].due_date"
    for bad in ("0", "-1", "1.001"):
        with pytest.raises(ValidationFailed) as exc:
            rules.new_plan(contract(), plan_in(("2026-07-01", "1000"), ("2026-08-01", bad)))
        assert error_field(exc) == "instalments[1].amount"
    with pytest.raises(Conflict):
        rules.new_plan(contract(status="completed"), plan_in(("2026-07-01", "1000")))


def test_an_instalment_that_received_money_stays_and_not_below_it() -> None:
    doc = planned(contract(), ("2026-07-01", "400"), ("2026-08-01", "600"))
    first, second = (p["id"] for p in doc["plan"])
    pay(doc, "300")
    with pytest.raises(ValidationFailed) as exc:
        rules.new_plan(doc, plan_in(("2026-07-01", "1000")))
    assert error_field(exc) == "instalments" and first in exc.value.errors[0].reason
    with pytest.raises(ValidationFailed) as exc:
        rules.new_plan(doc, plan_in(("2026-07-01", "200"), ("2026-08-01", "800"), ids=[first, None]))
    assert error_field(exc) == "instalments[0].amount" and "300.00" in exc.value.errors[0].reason
    with pytest.raises(ValidationFailed) as exc:
        rules.new_plan(doc, plan_in(("2026-07-01", "1000"), ids=["nope"]))
    assert error_field(exc) == "instalments[0].id"
    kept = rules.new_plan(doc, plan_in(("2026-07-01", "300"), ("2026-09-01", "700"), ids=[first, None]))
    assert kept[0]["id"] == first and kept[0]["paid_minor"] == 30000 and second not in {p["id"] for p in kept}


def test_payments_go_to_the_oldest_unpaid_first_and_partial_leaves_partially_paid() -> None:
    doc = planned(contract(), ("2026-07-01", "400"), ("2026-08-01", "600"))
    payment = pay(doc, "500")
    ids = [p["id"] for p in doc["plan"]]
    assert payment["allocation"] == [
        {"instalment_id": ids[0], "amount_minor": 40000},
        {"instalment_id": ids[1], "amount_minor": 10000},
    ]
    assert [rules.instalment_status(p) for p in doc["plan"]] == ["paid", "partially_paid"]
    assert doc["totals"] == {"received": "500.00", "outstanding": "500.00", "credit": "0.00"}


def test_a_named_instalment_is_paid_first() -> None:
    doc = planned(contract(), ("2026-07-01", "400"), ("2026-08-01", "600"))
    second = doc["plan"][1]["id"]
    payment = pay(doc, "700", second)
    assert payment["allocation"][0] == {"instalment_id": second, "amount_minor": 60000}
    assert [rules.instalment_status(p) for p in doc["plan"]] == ["partially_paid", "paid"]
    with pytest.raises(ValidationFailed) as exc:
        pay(doc, "1", "nope")
    assert error_field(exc) == "instalment_id"


def test_an_over_payment_is_kept_as_credit() -> None:
    doc = planned(contract(), ("2026-07-01", "1000"))
    payment = pay(doc, "1200.01")
    assert payment["allocation"][-1] == {"instalment_id": None, "amount_minor": 20001}
    assert doc["totals"] == {"received": "1200.01", "outstanding": "0.00", "credit": "200.01"}


def test_payments_need_a_signed_contract_a_plan_and_a_day_not_in_the_future() -> None:
    with pytest.raises(Conflict):
        pay(planned(contract(status="draft"), ("2026-07-01", "1000")), "1")
    with pytest.raises(Conflict, match="plan"):
        pay(contract(), "1")
    doc = planned(contract(), ("2026-07-01", "1000"))
    data = rules.PaymentIn(amount="1", received_on=date(2026, 6, 2), method="cash")
    with pytest.raises(ValidationFailed) as exc:
        rules.receive(doc, "p", data, TODAY, "u", NOW)
    assert error_field(exc) == "received_on"
    with pytest.raises(ValidationFailed) as exc:
        pay(doc, "0")
    assert error_field(exc) == "amount"


def test_a_refund_takes_from_the_credit_first_then_the_latest_instalments_and_never_more_than_the_payment() -> None:
    doc = planned(contract(), ("2026-07-01", "400"), ("2026-08-01", "600"))
    pay(doc, "300", pid="p0")
    pay(doc, "900", pid="p1")  # 100 to the first, 600 to the second, 200 credit
    first, second = (p["id"] for p in doc["plan"])
    refund, _ = rules.refund(doc, "r1", rules.RefundIn(payment_id="p1", amount="500", reason="退货"), "u", NOW)
    assert refund["allocation"] == [
        {"instalment_id": None, "amount_minor": 20000},
        {"instalment_id": second, "amount_minor": 30000},
    ]
    assert doc["totals"] == {"received": "700.00", "outstanding": "300.00", "credit": "0.00"}
    with pytest.raises(ValidationFailed) as exc:
        rules.refund(doc, "r2", rules.RefundIn(payment_id="p1", amount="400.01", reason="x"), "u", NOW)
    assert error_field(exc) == "amount" and "400.00" in exc.value.errors[0].reason
    rules.refund(doc, "r3", rules.RefundIn(payment_id="p1", amount="400", reason="x"), "u", NOW)
    assert [p["paid_minor"] for p in doc["plan"]] == [30000, 0] and first
    with pytest.raises(ValidationFailed) as exc:
        rules.refund(doc, "r4", rules.RefundIn(payment_id="nope", amount="1", reason="x"), "u", NOW)
    assert error_field(exc) == "payment_id"
    with pytest.raises(ValidationFailed) as exc:
        rules.refund(doc, "r5", rules.RefundIn(payment_id="p0", amount="1", reason=" "), "u", NOW)
    assert error_field(exc) == "reason"


def test_a_new_plan_with_room_takes_the_credit_oldest_first_and_the_payments_hold_it_there() -> None:
    doc = planned(contract(), ("2026-07-01", "400"), ("2026-08-01", "300"), ("2026-09-01", "300"))
    pay(doc, "1000", pid="p1")
    pay(doc, "60", pid="p2")
    pay(doc, "40", pid="p3")  # 100 credit, from two payments
    a, b, _c = (p["id"] for p in doc["plan"])
    rules.refund(doc, "r1", rules.RefundIn(payment_id="p1", amount="300", reason="退"), "u", NOW)  # from c
    assert [p["paid_minor"] for p in doc["plan"]] == [40000, 30000, 0] and doc["credit_minor"] == 10000
    # c (now unpaid) goes, b is raised to 600: room 300 on b, the credit's 100 goes there
    doc["plan"] = rules.new_plan(doc, plan_in(("2026-07-01", "400"), ("2026-08-01", "600"), ids=[a, b]))
    rules.refresh(doc)
    applied = rules.apply_credit(doc)
    assert applied == [{"instalment_id": b, "amount_minor": 10000}]
    assert [p["paid_minor"] for p in doc["plan"]] == [40000, 40000]
    assert doc["totals"] == {"received": "800.00", "outstanding": "200.00", "credit": "0.00"}
    assert [p["held"] for p in doc["payments"][1:]] == [
        [{"instalment_id": b, "amount_minor": 6000}],
        [{"instalment_id": b, "amount_minor": 4000}],
    ]
    refund, _ = rules.refund(doc, "r2", rules.RefundIn(payment_id="p3", amount="40", reason="退"), "u", NOW)
    assert refund["allocation"] == [{"instalment_id": b, "amount_minor": 4000}]
    assert rules.apply_credit(doc) == []  # no credit: nothing moves


def test_the_credit_fills_the_oldest_due_instalment_first_then_the_next() -> None:
    doc = planned(contract(), ("2026-07-01", "500"), ("2026-08-01", "500"))
    pay(doc, "1000", pid="p1")
    pay(doc, "300", pid="p2")
    first, second = (p["id"] for p in doc["plan"])
    rules.refund(doc, "r1", rules.RefundIn(payment_id="p1", amount="700", reason="退"), "u", NOW)
    assert [p["paid_minor"] for p in doc["plan"]] == [30000, 0] and doc["credit_minor"] == 30000
    doc["plan"] = rules.new_plan(doc, plan_in(("2026-07-01", "500"), ("2026-08-01", "500"), ids=[first, second]))
    assert rules.apply_credit(doc) == [
        {"instalment_id": first, "amount_minor": 20000},
        {"instalment_id": second, "amount_minor": 10000},
    ]
    assert doc["credit_minor"] == 0 and doc["totals"]["outstanding"] == "400.00"


def test_the_overdue_key_is_the_earliest_unpaid_unreported_due_day() -> None:
    doc = planned(contract(), ("2026-07-01", "400"), ("2026-08-01", "600"))
    assert doc["next_due_day"] == doc["plan"][0]["due_day"]
    pay(doc, "400")
    assert doc["next_due_day"] == doc["plan"][1]["due_day"]
    doc["status"] = "terminated"
    rules.refresh(doc)
    assert doc["next_due_day"] is None
