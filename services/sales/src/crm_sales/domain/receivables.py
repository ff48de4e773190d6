"""Receivables (回款) of a contract: its payment plan, payments received, refunds, and what each
instalment has received (no I/O). Money is kept in integer minor units beside its decimal string.

* **Plan**: instalments ``{due_date, amount, note}`` whose amounts sum exactly to the contract's
  amount, due dates ascending. An instalment that received money keeps its id across a new plan
  (send its ``id``): it cannot be removed nor set below what it received.
* **Payment**: applied to the instalment named (if any) first, then to the oldest unpaid ones;
  what is left beyond the whole plan is the contract's ``credit`` (reported, never lost).
* **Credit on a new plan**: a plan that adds or raises instalments while the contract holds credit
  gets it applied (:func:`apply_credit`), oldest due first, and the payments that made it now hold
  those instalments instead (a later refund takes it back from there).
* **Refund**: at most what the payment still holds; taken back from the credit it made first,
  then from the instalments it paid, the latest first.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, ValidationFailed
from crm_sales.domain import money

Document = dict[str, Any]
MAX_INSTALMENTS = 120
MAX_PAYMENTS = 2000  # payments and refunds live in the contract's own document
EPOCH = date(1970, 1, 1)
PAYABLE = ("signed", "executing", "completed")
PLANNABLE = ("draft", "under_approval", "signed", "executing")
Method = Literal["bank_transfer", "cash", "cheque", "online", "other"]


class InstalmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=100, description="Keep an existing instalment (and its money).")
    due_date: date
    amount: str = Field(min_length=1, max_length=40, description="Decimal string above 0.")
    note: str | None = Field(default=None, max_length=500)


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instalments: list[InstalmentIn] = Field(min_length=1, max_length=MAX_INSTALMENTS)


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(min_length=1, max_length=40, description="Decimal string above 0.")
    received_on: date
    method: Method
    reference: str | None = Field(default=None, max_length=200)
    instalment_id: str | None = Field(default=None, max_length=100)


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: str = Field(min_length=1, max_length=100)
    amount: str = Field(min_length=1, max_length=40)
    reason: str = Field(max_length=2000)


def day_number(day: date) -> int:
    """Days since 1970-01-01: an integer the store compares and indexes as such."""
    return (day - EPOCH).days


def positive(raw: str, currency: str, field: str) -> int:
    """A decimal string above 0 in the currency, as minor units; 422 naming ``field``."""
    try:
        minor = money.to_minor(raw, currency)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field(field, str(exc)) from exc
    if minor <= 0:
        raise ValidationFailed.for_field(field, "must be more than 0")
    return minor


def fmt(minor: int, currency: str) -> str:
    return money.format_minor(minor, currency)


# --- the plan ------------------------------------------------------------------------------------


def check_plannable(doc: Document) -> None:
    if doc["status"] not in PLANNABLE:
        raise Conflict(
            f"The payment plan of a {doc['status']} contract cannot change.",
            extra={"status": doc["status"], "action": "plan"},
        )


def new_plan(doc: Document, data: PlanIn) -> list[Document]:
    """The contract's new instalments (ids kept where sent), checked against what they received."""
    check_plannable(doc)
    currency = doc["currency"]
    current = {i["id"]: i for i in doc.get("plan") or []}
    plan: list[Document] = []
    seen: set[str] = set()
    for i, item in enumerate(data.instalments):
        minor = positive(item.amount, currency, f"instalments[{i}].amount")
        if plan and item.due_date < date.fromisoformat(plan[-1]["due_date"]):
            raise ValidationFailed.for_field(
                f"instalments[{i}].due_date", f"{item.due_date.isoformat()} is before the instalment above it"
            )
        paid = 0
        if item.id is not None:
            if item.id not in current or item.id in seen:
                raise ValidationFailed.for_field(f"instalments[{i}].id", f"no instalment {item.id} on this plan")
            seen.add(item.id)
            paid = int(current[item.id].get("paid_minor", 0))
            if minor < paid:
                raise ValidationFailed.for_field(
                    f"instalments[{i}].amount",
                    f"it received {fmt(paid, currency)} already: it cannot be set below that",
                )
        plan.append(
            {
                "id": item.id or f"i-{uuid.uuid4().hex[:12]}",
                "due_date": item.due_date.isoformat(),
                "due_day": day_number(item.due_date),
                "amount": fmt(minor, currency),
                "amount_minor": minor,
                "note": (item.note or "").strip() or None,
                "paid_minor": paid,
                "overdue_notified": bool(current.get(item.id or "", {}).get("overdue_notified"))
                and item.due_date.isoformat() == current.get(item.id or "", {}).get("due_date"),
            }
        )
    total = sum(p["amount_minor"] for p in plan)
    if total != int(doc["amount_minor"]):
        diff = total - int(doc["amount_minor"])
        what = "more" if diff > 0 else "less"
        raise ValidationFailed.for_field(
            "instalments",
            f"the instalments sum to {fmt(total, currency)}, {fmt(abs(diff), currency)} {what} than the "
            f"contract's amount {doc['amount']} {currency}",
        )
    for kept_id, kept in current.items():
        if int(kept.get("paid_minor", 0)) > 0 and kept_id not in seen:
            raise ValidationFailed.for_field(
                "instalments",
                f"instalment {kept_id} (due {kept['due_date']}) received {fmt(int(kept['paid_minor']), currency)}: "
                "keep it (send its id)",
            )
    return plan


def instalment_status(item: Document) -> str:
    paid, amount = int(item.get("paid_minor", 0)), int(item["amount_minor"])
    if paid >= amount:
        return "paid"
    return "partially_paid" if paid > 0 else "unpaid"


def instalment_states(doc: Document) -> list[ev.InstalmentState]:
    currency = doc["currency"]
    return [
        ev.InstalmentState(
            instalment_id=i["id"],
            due_date=date.fromisoformat(i["due_date"]),
            amount=i["amount"],
            note=i.get("note"),
            paid=fmt(int(i.get("paid_minor", 0)), currency),
            outstanding=fmt(max(0, int(i["amount_minor"]) - int(i.get("paid_minor", 0))), currency),
            status=instalment_status(i),
        )
        for i in doc.get("plan") or []
    ]


def next_due_day(doc: Document) -> int | None:
    """The earliest due day of an instalment not fully paid and not yet reported overdue (what the
    overdue scheduler looks for); None when there is none or the contract is closed."""
    if doc["status"] in ("completed", "terminated", "draft", "under_approval"):
        return None
    days = [
        int(i["due_day"])
        for i in doc.get("plan") or []
        if instalment_status(i) != "paid" and not i.get("overdue_notified")
    ]
    return min(days) if days else None


def refresh(doc: Document) -> None:
    """Recompute the totals and the overdue key after any change of plan, payment or status."""
    currency = doc["currency"]
    paid = sum(int(i.get("paid_minor", 0)) for i in doc.get("plan") or [])
    credit = int(doc.get("credit_minor", 0))
    doc["totals"] = {
        "received": fmt(paid + credit, currency),
        "outstanding": fmt(max(0, int(doc["amount_minor"]) - paid), currency),
        "credit": fmt(credit, currency),
    }
    doc["next_due_day"] = next_due_day(doc)


# --- payments and refunds ------------------------------------------------------------------------


def allocate(plan: list[Document], amount_minor: int, instalment_id: str | None) -> tuple[list[Document], int]:
    """Where ``amount_minor`` goes: [(instalment id, minor)] and the credit left beyond the plan.
    ``plan`` is updated in place (its ``paid_minor``)."""
    order = sorted(plan, key=lambda i: (i["due_day"], plan.index(i)))
    if instalment_id is not None:
        order = [i for i in order if i["id"] == instalment_id] + [i for i in order if i["id"] != instalment_id]
    left = amount_minor
    allocation: list[Document] = []
    for item in order:
        room = int(item["amount_minor"]) - int(item.get("paid_minor", 0))
        if left <= 0 or room <= 0:
            continue
        take = min(room, left)
        item["paid_minor"] = int(item.get("paid_minor", 0)) + take
        allocation.append({"instalment_id": item["id"], "amount_minor": take})
        left -= take
    return allocation, left


def apply_credit(doc: Document) -> list[Document]:
    """Apply the contract's credit (in place) to the instalments of its plan with room, oldest due
    first; returns where it went, [{instalment_id, amount_minor}] (empty when there is no credit or
    no room). The payments holding credit, oldest first, now hold those instalments instead, so a
    refund of one takes its money back from where it went."""
    credit = int(doc.get("credit_minor", 0))
    if credit <= 0 or not doc.get("plan"):
        return []
    allocation, left = allocate(doc["plan"], credit, None)
    if not allocation:
        return []
    doc["credit_minor"] = left
    queue = [dict(a) for a in allocation]
    for payment in doc.get("payments") or []:
        if not queue:
            break
        moved: list[Document] = []
        for part in payment.get("held") or []:
            while part["instalment_id"] is None and int(part["amount_minor"]) > 0 and queue:
                head = queue[0]
                take = min(int(part["amount_minor"]), int(head["amount_minor"]))
                part["amount_minor"] = int(part["amount_minor"]) - take
                head["amount_minor"] = int(head["amount_minor"]) - take
                moved.append({"instalment_id": head["instalment_id"], "amount_minor": take})
                if int(head["amount_minor"]) == 0:
                    queue.pop(0)
        if moved:
            payment["held"] = [a for a in payment["held"] if int(a["amount_minor"]) > 0] + moved
    refresh(doc)
    return allocation


def check_payable(doc: Document) -> None:
    if doc["status"] not in PAYABLE:
        raise Conflict(
            f"A {doc['status']} contract receives no payment (only once signed).",
            extra={"status": doc["status"], "action": "payment", "reason": "status"},
        )
    if not doc.get("plan"):
        raise Conflict(
            "Set the contract's payment plan first (PUT /plan).",
            extra={"status": doc["status"], "action": "payment", "reason": "plan-required"},
        )
    if len(doc.get("payments") or []) + len(doc.get("refunds") or []) >= MAX_PAYMENTS:
        raise Conflict(f"A contract holds at most {MAX_PAYMENTS} payments and refunds.")


def receive(doc: Document, payment_id: str, data: PaymentIn, today: date, actor: str, now: datetime) -> Document:
    """Apply a payment to ``doc`` (in place); returns the stored payment."""
    check_payable(doc)
    currency = doc["currency"]
    minor = positive(data.amount, currency, "amount")
    if data.received_on > today:
        raise ValidationFailed.for_field(
            "received_on", f"{data.received_on.isoformat()} is in the future (today is {today.isoformat()})"
        )
    if data.instalment_id is not None and data.instalment_id not in {i["id"] for i in doc["plan"]}:
        raise ValidationFailed.for_field("instalment_id", f"no instalment {data.instalment_id} on this plan")
    allocation, credit = allocate(doc["plan"], minor, data.instalment_id)
    if credit:
        allocation.append({"instalment_id": None, "amount_minor": credit})
        doc["credit_minor"] = int(doc.get("credit_minor", 0)) + credit
    payment = {
        "id": payment_id,
        "amount": fmt(minor, currency),
        "amount_minor": minor,
        "received_on": data.received_on.isoformat(),
        "method": data.method,
        "reference": (data.reference or "").strip() or None,
        "instalment_id": data.instalment_id,
        "allocation": allocation,
        "held": [dict(a) for a in allocation],  # what it still holds (refunds take from it)
        "refunded_minor": 0,
        "at": now,
        "by": actor,
    }
    doc["payments"] = [*(doc.get("payments") or []), payment]
    refresh(doc)
    return payment


def refund(doc: Document, refund_id: str, data: RefundIn, actor: str, now: datetime) -> tuple[Document, Document]:
    """Take back part or all of a payment (in place); returns (the refund, the payment)."""
    currency = doc["currency"]
    reason = data.reason.strip()
    if not reason:
        raise ValidationFailed.for_field("reason", "say why the money goes back")
    payments = {p["id"]: p for p in doc.get("payments") or []}
    payment = payments.get(data.payment_id)
    if payment is None:
        raise ValidationFailed.for_field("payment_id", f"no payment {data.payment_id} on this contract")
    minor = positive(data.amount, currency, "amount")
    refundable = int(payment["amount_minor"]) - int(payment.get("refunded_minor", 0))
    if minor > refundable:
        raise ValidationFailed.for_field(
            "amount",
            f"the payment brought {payment['amount']} and {fmt(refundable, currency)} of it is left to refund",
        )
    plan = {i["id"]: i for i in doc.get("plan") or []}
    left = minor
    taken: list[Document] = []
    held = payment["held"]
    # The credit it made first, then the instalments it paid, the latest first.
    order = [a for a in held if a["instalment_id"] is None] + list(reversed([a for a in held if a["instalment_id"]]))
    for part in order:
        if left <= 0:
            break
        if part["instalment_id"] is None:
            room = min(int(part["amount_minor"]), int(doc.get("credit_minor", 0)))
        else:
            item = plan[part["instalment_id"]]
            room = min(int(part["amount_minor"]), int(item.get("paid_minor", 0)))
        take = min(room, left)
        if take <= 0:
            continue
        part["amount_minor"] = int(part["amount_minor"]) - take
        if part["instalment_id"] is None:
            doc["credit_minor"] = int(doc.get("credit_minor", 0)) - take
        else:
            plan[part["instalment_id"]]["paid_minor"] = int(plan[part["instalment_id"]]["paid_minor"]) - take
        taken.append({"instalment_id": part["instalment_id"], "amount_minor": take})
        left -= take
    if left > 0:  # pragma: no cover - the payment's holdings always cover what is left to refund
        raise Conflict("The payment's money is no longer where it went; nothing was refunded.")
    payment["held"] = [a for a in held if int(a["amount_minor"]) > 0]
    payment["refunded_minor"] = int(payment.get("refunded_minor", 0)) + minor
    stored = {
        "id": refund_id,
        "payment_id": payment["id"],
        "amount": fmt(minor, currency),
        "amount_minor": minor,
        "reason": reason,
        "allocation": taken,
        "at": now,
        "by": actor,
    }
    doc["refunds"] = [*(doc.get("refunds") or []), stored]
    refresh(doc)
    return stored, payment


def allocations(parts: list[Document], currency: str) -> list[ev.Allocation]:
    return [
        ev.Allocation(instalment_id=a["instalment_id"], amount=fmt(int(a["amount_minor"]), currency)) for a in parts
    ]


# --- overdue --------------------------------------------------------------------------------------


def overdue_now(doc: Document, today: date) -> list[Document]:
    """Mark (in place) the instalments past due, not fully paid and not yet reported; returns them."""
    if doc["status"] not in PAYABLE or doc["status"] == "completed":
        return []
    today_day = day_number(today)
    found = [
        item
        for item in doc.get("plan") or []
        if int(item["due_day"]) < today_day and instalment_status(item) != "paid" and not item.get("overdue_notified")
    ]
    for item in found:
        item["overdue_notified"] = True
    if found:
        refresh(doc)
    return found


def instalment_state(doc: Document, item: Document) -> ev.InstalmentState:
    return next(s for s in instalment_states(doc) if s.instalment_id == item["id"])
