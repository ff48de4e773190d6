"""Invoices of a contract's payments (no I/O).

An invoice covers what a payment brought net of its refunds and not yet invoiced; its ``amount``
includes the tax (价税合计): ``net = amount / (1 + tax_rate / 100)`` quantized to the currency (half
up) and ``tax = amount - net``, so net + tax is the amount to the cent. The sum of the invoices of
a payment never exceeds it (409). Numbers ``INV-YYYY-NNNNNN`` per year, without gaps: the invoice
is first reserved on the contract (its amount held, no number), then the number is taken, then it
is issued with it (a write that cannot be refused any more).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, ValidationFailed
from crm_sales.domain import money

Document = dict[str, Any]
NUMBER_DIGITS = 6
MAX_INVOICES = 2000
_TAX_ID = re.compile(r"^[0-9A-Z]{15,20}$")
_RATE = re.compile(r"^([0-9]{1,2}|100)(\.[0-9]{1,2})?$")


class InvoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: str = Field(min_length=1, max_length=100)
    tax_rate: str = Field(min_length=1, max_length=10, description="Decimal percent 0..100, e.g. '13'.")
    title: str = Field(max_length=200, description="The buyer's name on the invoice (发票抬头).")
    buyer_tax_id: str | None = Field(default=None, max_length=40, description="纳税人识别号 (15-20 letters/digits).")


def format_number(year: int, seq: int) -> str:
    if seq < 1:
        raise ValueError("an invoice number's sequence starts at 1")
    return f"INV-{year:04d}-{seq:0{NUMBER_DIGITS}d}"


def counter_id(year: int) -> str:
    return f"invoice:{year:04d}"


def tax_rate(raw: str) -> Decimal:
    text = raw.strip()
    if not _RATE.match(text) or Decimal(text) > 100:
        raise ValidationFailed.for_field("tax_rate", f"'{raw}' is not a percent from 0 to 100 (at most 2 decimals)")
    return Decimal(text)


def split(amount_minor: int, rate: Decimal, currency: str) -> tuple[int, int]:
    """(net, tax) in minor units of a tax-included amount."""
    amount = Decimal(amount_minor)
    net = int((amount * 100 / (100 + rate)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return net, amount_minor - net


def invoiceable(doc: Document, payment_id: str) -> tuple[Document, int]:
    """The payment and what of it is left to invoice (net of refunds and earlier invoices)."""
    payment = next((p for p in doc.get("payments") or [] if p["id"] == payment_id), None)
    if payment is None:
        raise ValidationFailed.for_field("payment_id", f"no payment {payment_id} on this contract")
    invoiced = sum(int(i["amount_minor"]) for i in doc.get("invoices") or [] if i["payment_id"] == payment_id)
    net = int(payment["amount_minor"]) - int(payment.get("refunded_minor", 0))
    return payment, net - invoiced


def reserve(doc: Document, invoice_id: str, data: InvoiceIn, actor: str, now: datetime) -> Document:
    """Hold the invoice on the contract (in place), without its number; 409 when nothing is left."""
    currency = doc["currency"]
    rate = tax_rate(data.tax_rate)
    title = data.title.strip()
    if not title:
        raise ValidationFailed.for_field("title", "the buyer's name on the invoice")
    tax_id = (data.buyer_tax_id or "").strip().upper() or None
    if tax_id is not None and not _TAX_ID.match(tax_id):
        raise ValidationFailed.for_field("buyer_tax_id", "15 to 20 letters and digits (e.g. the 18 of a USCC)")
    payment, left = invoiceable(doc, data.payment_id)
    if left <= 0:
        raise Conflict(
            f"Payment {payment['id']} ({payment['amount']} {currency}) is invoiced in full already.",
            extra={"payment_id": payment["id"], "reason": "invoiced"},
        )
    if len(doc.get("invoices") or []) >= MAX_INVOICES:
        raise Conflict(f"A contract holds at most {MAX_INVOICES} invoices.")
    net, tax = split(left, rate, currency)
    invoice = {
        "id": invoice_id,
        "number": None,
        "payment_id": payment["id"],
        "amount": money.format_minor(left, currency),
        "amount_minor": left,
        "tax_rate": format(rate.normalize(), "f") if rate else "0",
        "net": money.format_minor(net, currency),
        "tax": money.format_minor(tax, currency),
        "title": title,
        "buyer_tax_id": tax_id,
        "issued_at": now,
        "issued_by": actor,
    }
    doc["invoices"] = [*(doc.get("invoices") or []), invoice]
    return invoice


def issue(doc: Document, invoice_id: str, year: int, seq: int) -> Document | None:
    """Give the reserved invoice its number (in place); None when it has one already (a retry)."""
    invoice: Document = next(i for i in doc["invoices"] if i["id"] == invoice_id)
    if invoice.get("number"):
        return None
    invoice.update(number=format_number(year, seq), year=year, seq=seq)
    return invoice


def snapshot(invoice: Document, currency: str) -> ev.InvoiceSnapshot:
    return ev.InvoiceSnapshot(
        invoice_id=invoice["id"],
        number=invoice["number"],
        payment_id=invoice["payment_id"],
        amount=invoice["amount"],
        tax_rate=invoice["tax_rate"],
        net=invoice["net"],
        tax=invoice["tax"],
        currency=currency,
        title=invoice["title"],
        buyer_tax_id=invoice.get("buyer_tax_id"),
        issued_at=invoice["issued_at"],
    )
