"""Events of the sales service, on ``crm.sales.v1``: the product catalogue and its price lists (what
follows a won opportunity is built on them: quotations, contracts, payments, later).

Product events are keyed by the product id and carry the whole :class:`ProductSnapshot` after the
change. Price list events are keyed by the price list id and carry the list's header
(:class:`PriceListSnapshot`, without its entries); an entry event carries the entry set or removed
(and the one it replaced). A consumer keeps a read copy by applying them by ``aggregateversion``.
Money is a decimal string quantized to the currency's minor unit with an ISO 4217 code, never a float.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from crm_platform.events import define

TOPIC = "crm.sales.v1"


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class ProductSnapshot(BaseModel):
    product_id: str
    sku: str = Field(description="Trimmed and upper-cased; unique in the organisation.", examples=["ECS-STD-2C4G"])
    name: str = Field(examples=["云服务器 标准版 2核4G"])
    unit: str = Field(description="The unit it is sold in: 个, 台, 套, 年 ... (free text).", examples=["台"])
    category: str | None = Field(default=None, examples=["云计算"])
    description: str | None = None
    active: bool = Field(description="A deactivated product goes on no new price list or line item.")
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime


class ProductCreated(BaseModel):
    product: ProductSnapshot


class ProductUpdated(BaseModel):
    product: ProductSnapshot
    changes: list[FieldChange]


class ProductDeactivated(BaseModel):
    product: ProductSnapshot


class ProductActivated(BaseModel):
    product: ProductSnapshot


class PriceListSnapshot(BaseModel):
    price_list_id: str
    name: str = Field(examples=["2026 年标准价目表"])
    currency: str = Field(description="ISO 4217, e.g. CNY: every price of the list is in it.")
    tier: str | None = Field(
        default=None,
        description="The customer tier it is for (A, B, VIP ...); null: the default list.",
        examples=["VIP"],
    )
    active: bool
    valid_from: date | None = Field(default=None, description="First day it applies (null: since always).")
    valid_to: date | None = Field(default=None, description="Last day it applies (null: open-ended).")
    entry_count: int = 0
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime


class PriceEntry(BaseModel):
    product_id: str
    unit_price: str = Field(
        description="Decimal string in the list's currency, e.g. '1280.00' (never a float).", examples=["1280.00"]
    )
    min_quantity: str | None = Field(
        default=None, description="Decimal string: the least quantity it is sold at.", examples=["10"]
    )
    set_at: datetime
    set_by: str | None = None


class PriceListCreated(BaseModel):
    price_list: PriceListSnapshot


class PriceListUpdated(BaseModel):
    price_list: PriceListSnapshot
    changes: list[FieldChange]


class PriceListEntrySet(BaseModel):
    price_list: PriceListSnapshot
    entry: PriceEntry
    previous: PriceEntry | None = Field(default=None, description="The entry it replaced (null: a new entry).")


class PriceListEntryRemoved(BaseModel):
    price_list: PriceListSnapshot
    entry: PriceEntry = Field(description="The entry as it was before it was removed.")


PRODUCT_CREATED = define(
    "crm.product.created", ProductCreated, TOPIC, description="A product was added to the catalogue."
)
PRODUCT_UPDATED = define(
    "crm.product.updated", ProductUpdated, TOPIC, description="A product's fields changed (SKU, name, unit, ...)."
)
PRODUCT_DEACTIVATED = define(
    "crm.product.deactivated",
    ProductDeactivated,
    TOPIC,
    description="A product was taken out of sale: it goes on no new price list or line item.",
)
PRODUCT_ACTIVATED = define(
    "crm.product.activated", ProductActivated, TOPIC, description="A deactivated product is on sale again."
)
PRICE_LIST_CREATED = define(
    "crm.price_list.created", PriceListCreated, TOPIC, description="A price list was created (no entries yet)."
)
PRICE_LIST_UPDATED = define(
    "crm.price_list.updated",
    PriceListUpdated,
    TOPIC,
    description="A price list's name, tier, validity or active flag changed.",
)
PRICE_LIST_ENTRY_SET = define(
    "crm.price_list.entry_set",
    PriceListEntrySet,
    TOPIC,
    description="A product's price on a price list was set (added or changed).",
)
PRICE_LIST_ENTRY_REMOVED = define(
    "crm.price_list.entry_removed",
    PriceListEntryRemoved,
    TOPIC,
    description="A product was taken off a price list.",
)


# --- quotations (报价单) ---------------------------------------------------------------------------
# Keyed by the quotation id; every event carries the whole quotation as it is after the change
# (its current revision with its lines and totals). Money: decimal strings in the quotation's currency.


class QuotationLine(BaseModel):
    product_id: str
    sku: str
    name: str
    unit: str
    quantity: str = Field(description="Decimal string above 0.", examples=["10"])
    unit_price: str = Field(description="Decimal string in the quotation's currency.", examples=["1280.00"])
    discount_percent: str = Field(description="Decimal string 0..100.", examples=["5"])
    gross: str = Field(description="quantity x unit price, quantized to the currency.")
    discount: str = Field(description="The line's discount amount, quantized to the currency.")
    amount: str = Field(description="gross - discount: what the line costs.")


class QuotationSnapshot(BaseModel):
    quotation_id: str
    number: str = Field(description="Per organisation and year, without gaps.", examples=["Q-2026-000123"])
    revision: int = Field(description="The version of the quotation under this number (1, 2, ...).")
    status: str = Field(
        description="draft, pending_approval, approved, rejected, sent, accepted or declined (as stored; "
        "an open quotation past valid_until is shown as expired by the API)."
    )
    customer_id: str
    customer_name: str | None = None
    opportunity_id: str | None = None
    currency: str
    tier: str | None = None
    valid_until: date
    notes: str | None = None
    lines: list[QuotationLine]
    subtotal: str = Field(description="Sum of the lines' gross amounts.")
    discount_total: str
    total: str
    needs_approval: bool = Field(description="A line's discount exceeds the approval threshold.")
    owner_id: str
    department_path: str | None = None
    created_at: datetime
    updated_at: datetime


class QuotationChanged(BaseModel):
    quotation: QuotationSnapshot
    changes: list[FieldChange] = Field(default_factory=list)


class QuotationDecided(BaseModel):
    quotation: QuotationSnapshot
    comment: str | None = Field(default=None, description="The approver's or the customer's words, if any.")


QUOTATION_CREATED = define(
    "crm.quotation.created", QuotationChanged, TOPIC, description="A quotation was drafted (revision 1)."
)
QUOTATION_UPDATED = define(
    "crm.quotation.updated", QuotationChanged, TOPIC, description="A draft quotation's fields or lines changed."
)
QUOTATION_REVISED = define(
    "crm.quotation.revised",
    QuotationChanged,
    TOPIC,
    description="A new revision of the quotation (same number) was started as a draft; the previous one is kept.",
)
QUOTATION_SUBMITTED = define(
    "crm.quotation.submitted",
    QuotationDecided,
    TOPIC,
    description="A quotation whose discount exceeds the threshold was submitted for a manager's approval.",
)
QUOTATION_APPROVED = define(
    "crm.quotation.approved", QuotationDecided, TOPIC, description="A manager approved the quotation's discounts."
)
QUOTATION_REJECTED = define(
    "crm.quotation.rejected", QuotationDecided, TOPIC, description="A manager rejected the quotation (comment)."
)
QUOTATION_SENT = define("crm.quotation.sent", QuotationDecided, TOPIC, description="The quotation was sent.")
QUOTATION_ACCEPTED = define(
    "crm.quotation.accepted", QuotationDecided, TOPIC, description="The customer accepted the quotation."
)
QUOTATION_DECLINED = define(
    "crm.quotation.declined", QuotationDecided, TOPIC, description="The customer declined the quotation."
)


# --- service tickets (工单) ----------------------------------------------------------------------


class TicketSnapshot(BaseModel):
    """A service ticket after the change: enough for reporting to compute SLA attainment and satisfaction."""

    ticket_id: str
    number: str = Field(description="Per organisation and year, without gaps.", examples=["T-2026-000123"])
    customer_id: str
    contract_id: str | None = None
    contact_id: str | None = None
    feedback_id: str | None = Field(default=None, description="The complaint it was opened from, if any.")
    source: str = Field(description="complaint, agent, phone, email, web or wechat.")
    category: str = Field(examples=["fault"])
    priority: str = Field(description="urgent, high, normal or low.")
    subject: str
    status: str = Field(description="open, in_progress, resolved or closed.")
    owner_id: str | None = Field(default=None, description="The assignee (who handles it).")
    opened_by: str
    department_path: str | None = None
    opened_at: datetime
    first_response_due_at: datetime
    resolution_due_at: datetime
    first_responded_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    satisfaction: int | None = Field(default=None, ge=1, le=5, description="The return visit's rating.")
    escalation_level: int = Field(default=0, description="How many SLA targets escalated (0..2).")
    breached: list[str] = Field(default_factory=list, description="SLA targets breached: first_response, resolution.")
    version: int


class TicketChanged(BaseModel):
    ticket: TicketSnapshot


class TicketAssigned(BaseModel):
    ticket: TicketSnapshot
    previous_owner_id: str | None = None


class TicketReplied(BaseModel):
    ticket: TicketSnapshot
    public: bool = Field(description="Shown to the customer (true) or an internal note (false).")
    first: bool = Field(description="The first reply: it met or missed the first-response target.")


class TicketUpdated(BaseModel):
    ticket: TicketSnapshot
    changes: list[FieldChange] = Field(default_factory=list, description="What changed, e.g. customer_id on a merge.")


class TicketSla(BaseModel):
    ticket: TicketSnapshot
    target: str = Field(description="first_response or resolution.")
    due_at: datetime


class TicketClosed(BaseModel):
    ticket: TicketSnapshot
    no_visit_reason: str | None = Field(default=None, description="Why it closed without a return visit.")


TICKET_OPENED = define(
    "crm.ticket.opened", TicketChanged, TOPIC, description="A service ticket was opened (by an agent or a complaint)."
)
TICKET_ASSIGNED = define("crm.ticket.assigned", TicketAssigned, TOPIC, description="A ticket got a new assignee.")
TICKET_REPLIED = define("crm.ticket.replied", TicketReplied, TOPIC, description="A reply was added to a ticket.")
TICKET_ESCALATED = define(
    "crm.ticket.escalated",
    TicketSla,
    TOPIC,
    description="An SLA target of the ticket is about to break: its escalation level rose (once per target).",
)
TICKET_SLA_BREACHED = define(
    "crm.ticket.sla_breached", TicketSla, TOPIC, description="An SLA target of the ticket was missed (once per target)."
)
TICKET_RESOLVED = define("crm.ticket.resolved", TicketChanged, TOPIC, description="The ticket was resolved.")
TICKET_REOPENED = define("crm.ticket.reopened", TicketChanged, TOPIC, description="A resolved ticket was reopened.")
TICKET_RETURN_VISITED = define(
    "crm.ticket.return_visited",
    TicketChanged,
    TOPIC,
    description="A return visit (回访) after resolution recorded the customer's satisfaction.",
)
TICKET_CLOSED = define("crm.ticket.closed", TicketClosed, TOPIC, description="The ticket was closed (final).")
# --- contracts (合同) and receivables (回款) ---------------------------------------------------------
# Keyed by the contract id; every event carries the contract as it is after the change
# (:class:`ContractSnapshot`), so reporting can keep a read copy by ``aggregateversion``. Money:
# decimal strings in the contract's currency.


class ContractSnapshot(BaseModel):
    contract_id: str
    number: str = Field(description="Per organisation and year, without gaps.", examples=["C-2026-000123"])
    title: str | None = None
    customer_id: str
    opportunity_id: str | None = None
    quotation_id: str | None = None
    owner_id: str
    department: str | None = Field(default=None, description="The owner's department id when it was drafted.")
    department_path: str | None = None
    amount: str = Field(description="Decimal string, e.g. '125000.00'.", examples=["125000.00"])
    currency: str
    status: str = Field(
        description="draft, under_approval, signed, executing, completed or terminated.", examples=["signed"]
    )
    start_date: date | None = None
    end_date: date | None = None
    signed_on: date | None = None
    received: str | None = Field(default=None, description="Money received net of refunds (decimal string).")
    outstanding: str | None = Field(default=None, description="amount - received, never below 0.")
    credit: str | None = Field(default=None, description="Received beyond the whole plan: kept, not lost.")
    version: int = Field(description="The contract's version after the change (its ETag).")


class ContractChanged(BaseModel):
    contract: ContractSnapshot
    changes: list[FieldChange] = Field(default_factory=list)


class ContractDecided(BaseModel):
    contract: ContractSnapshot
    comment: str | None = Field(default=None, description="The approver's words or the termination's reason.")
    level: int | None = Field(default=None, description="The approval level decided (1, 2, ...), for approvals.")
    permission: str | None = Field(default=None, description="The permission that level needs.")


class InstalmentState(BaseModel):
    instalment_id: str
    due_date: date
    amount: str
    note: str | None = None
    paid: str = Field(description="Received on it net of refunds.")
    outstanding: str
    status: str = Field(description="unpaid, partially_paid or paid.")


class ContractPlanSet(BaseModel):
    contract: ContractSnapshot
    instalments: list[InstalmentState]
    credit_applied: list[Allocation] = Field(
        default_factory=list,
        description="The contract's credit the new plan applied to its instalments with room, oldest due "
        "first (already counted in each instalment's paid); empty when none.",
    )


class Allocation(BaseModel):
    instalment_id: str | None = Field(description="null: the part kept as the contract's credit.")
    amount: str


class ContractPayment(BaseModel):
    contract_id: str
    payment_id: str
    refund_id: str | None = Field(default=None, description="The refund, for payment_refunded.")
    owner_id: str
    department: str | None = None
    department_path: str | None = None
    customer_id: str
    amount: str = Field(description="The payment's (or the refund's) amount, above 0.")
    currency: str
    received_on: date = Field(description="The day the money came in (for a refund: the payment's day).")
    refunded_on: date | None = Field(
        default=None, description="For payment_refunded: the business day the money went back (null before it existed)."
    )
    method: str | None = None
    reference: str | None = None
    reason: str | None = Field(default=None, description="Why the money went back, for a refund.")
    allocation: list[Allocation] = Field(description="Where the money went (a refund: where it was taken from).")
    contract: ContractSnapshot


CONTRACT_CREATED = define("crm.contract.created", ContractChanged, TOPIC, description="A contract was drafted.")
CONTRACT_UPDATED = define(
    "crm.contract.updated", ContractChanged, TOPIC, description="A draft contract's fields changed."
)
CONTRACT_SUBMITTED = define(
    "crm.contract.submitted", ContractDecided, TOPIC, description="A contract was submitted for approval."
)
CONTRACT_APPROVED = define(
    "crm.contract.approved",
    ContractDecided,
    TOPIC,
    description="One approval level of the contract was approved (level, permission).",
)
CONTRACT_REJECTED = define(
    "crm.contract.rejected", ContractDecided, TOPIC, description="The contract was rejected: back to draft."
)
CONTRACT_SIGNED = define("crm.contract.signed", ContractDecided, TOPIC, description="The contract was signed.")
CONTRACT_STARTED = define(
    "crm.contract.started", ContractDecided, TOPIC, description="The contract's execution started."
)
CONTRACT_COMPLETED = define(
    "crm.contract.completed", ContractDecided, TOPIC, description="The contract was completed (final)."
)
CONTRACT_TERMINATED = define(
    "crm.contract.terminated", ContractDecided, TOPIC, description="The contract was terminated (reason; final)."
)
CONTRACT_PLAN_SET = define(
    "crm.contract.plan_set",
    ContractPlanSet,
    TOPIC,
    description="The contract's payment plan (回款计划) was set: every instalment with what it received.",
)
CONTRACT_PAYMENT_RECEIVED = define(
    "crm.contract.payment_received",
    ContractPayment,
    TOPIC,
    description="A payment (回款) was received and allocated to instalments (the rest kept as credit).",
)
CONTRACT_PAYMENT_REFUNDED = define(
    "crm.contract.payment_refunded",
    ContractPayment,
    TOPIC,
    description="Part or all of a payment was refunded (taken back from credit first, then instalments).",
)


class ContractInstalmentOverdue(BaseModel):
    contract: ContractSnapshot
    owner_id: str = Field(description="Who is reminded (the contract's owner).")
    customer_name: str | None = None
    instalment: InstalmentState
    instalment_no: int = Field(description="Its position in the plan: 1 for the first instalment.")
    days_overdue: int = Field(description="Whole days since the due date (1 the day after it).")


CONTRACT_INSTALMENT_OVERDUE = define(
    "crm.contract.instalment_overdue",
    ContractInstalmentOverdue,
    TOPIC,
    description="An instalment of the payment plan is past its due date and not fully paid (published once).",
)


class InvoiceSnapshot(BaseModel):
    invoice_id: str
    number: str = Field(description="Per organisation and year, without gaps.", examples=["INV-2026-000123"])
    payment_id: str
    amount: str = Field(description="Tax included (价税合计), decimal string in the contract's currency.")
    tax_rate: str = Field(description="Decimal percent, e.g. '13'.", examples=["13"])
    net: str = Field(description="amount / (1 + tax_rate/100), quantized to the currency.")
    tax: str = Field(description="amount - net.")
    currency: str
    title: str = Field(description="The buyer's name on the invoice (发票抬头).")
    buyer_tax_id: str | None = None
    issued_at: datetime


class ContractInvoiceIssued(BaseModel):
    contract: ContractSnapshot
    invoice: InvoiceSnapshot


CONTRACT_INVOICE_ISSUED = define(
    "crm.contract.invoice_issued",
    ContractInvoiceIssued,
    TOPIC,
    description="An invoice was issued for (part of) a payment received.",
)


TICKET_UPDATED = define(
    "crm.ticket.updated",
    TicketUpdated,
    TOPIC,
    description="A ticket's data changed without a status move: its customer was merged into another one.",
)
