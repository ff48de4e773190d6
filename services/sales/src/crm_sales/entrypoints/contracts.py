"""The HTTP API of contracts (/v1/contracts): drafting, the list, changes and the status moves."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version, versioned
from crm_platform.openapi import problems
from crm_sales.application.contracts import ContractFilter, Contracts
from crm_sales.application.receivables import Receivables
from crm_sales.domain import contracts as rules
from crm_sales.domain import receivables as money_rules
from crm_sales.domain.contracts import Comment, ContractIn, ContractPatch, SignIn, TerminateIn
from crm_sales.domain.invoices import InvoiceIn
from crm_sales.domain.receivables import PaymentIn, PlanIn, RefundIn

Document = dict[str, Any]


class LevelOut(BaseModel):
    level: int
    permission: str = Field(description="What an approver of this level must hold.")
    above: str = Field(description="The band: amounts above this need the level.")
    approved_by: str | None = None
    approved_at: datetime | None = None
    comment: str | None = None


class ApprovalOut(BaseModel):
    submitted_by: str | None = None
    submitted_at: datetime | None = None
    levels: list[LevelOut]
    complete: bool = Field(description="Every level approved: the contract may be signed.")


class DecisionOut(BaseModel):
    by: str | None = None
    at: datetime
    comment: str | None = None
    reason: str | None = None
    level: int | None = None


class InstalmentOut(BaseModel):
    id: str
    due_date: date
    amount: str
    note: str | None = None
    paid: str
    outstanding: str
    status: str = Field(description="unpaid, partially_paid or paid (overdue: past due and not paid).")
    overdue: bool = False


class AllocationOut(BaseModel):
    instalment_id: str | None = Field(description="null: the part kept as the contract's credit.")
    amount: str


class PaymentOut(BaseModel):
    id: str
    amount: str
    received_on: date
    method: str
    reference: str | None = None
    instalment_id: str | None = None
    allocation: list[AllocationOut]
    refunded: str
    at: datetime
    by: str | None = None


class RefundOut(BaseModel):
    id: str
    payment_id: str
    amount: str
    reason: str
    allocation: list[AllocationOut]
    at: datetime
    by: str | None = None


class ContractOut(BaseModel):
    id: str
    number: str
    title: str | None = None
    status: str
    customer_id: str
    customer_name: str | None = None
    customer_signatory: str | None = None
    our_entity: str | None = Field(default=None, description="Our signing entity (a setting).")
    opportunity_id: str | None = None
    quotation_id: str | None = None
    amount: str
    currency: str
    start_date: date | None = None
    end_date: date | None = None
    signed_document: str | None = None
    signed_on: date | None = None
    notes: str | None = None
    owner_id: str
    department: str | None = None
    department_path: str | None = None
    approval: ApprovalOut | None = None
    rejection: DecisionOut | None = None
    termination: DecisionOut | None = None
    plan: list[InstalmentOut] = Field(default_factory=list, description="The payment plan (回款计划).")
    received: str = Field(description="Received net of refunds, credit included.")
    outstanding: str = Field(description="What the plan still waits for (amount - paid on instalments).")
    credit: str = Field(description="Received beyond the whole plan: kept, not lost.")
    payments: list[PaymentOut] = Field(default_factory=list, description="Oldest first; a new one is last.")
    refunds: list[RefundOut] = Field(default_factory=list)
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None
    version: int


class ContractPage(BaseModel):
    items: list[ContractOut]
    next_cursor: str | None = None
    total: int | None = None


def _parts(parts: list[Document], currency: str) -> list[AllocationOut]:
    return [AllocationOut(**a.model_dump()) for a in money_rules.allocations(parts, currency)]


def contract_out(doc: Document, today: date) -> ContractOut:
    approval = doc.get("approval")
    currency = doc["currency"]
    shown = dict(doc)
    money_rules.refresh(shown)
    plan = [
        InstalmentOut(
            id=state.instalment_id,
            due_date=state.due_date,
            amount=state.amount,
            note=state.note,
            paid=state.paid,
            outstanding=state.outstanding,
            status=state.status,
            overdue=state.status != "paid" and state.due_date < today,
        )
        for state in money_rules.instalment_states(doc)
    ]
    payments = [
        PaymentOut(
            id=p["id"],
            amount=p["amount"],
            received_on=p["received_on"],
            method=p["method"],
            reference=p.get("reference"),
            instalment_id=p.get("instalment_id"),
            allocation=_parts(p["allocation"], currency),
            refunded=money_rules.fmt(int(p.get("refunded_minor", 0)), currency),
            at=p["at"],
            by=p.get("by"),
        )
        for p in doc.get("payments") or []
    ]
    refunds = [RefundOut(**{**r, "allocation": _parts(r["allocation"], currency)}) for r in doc.get("refunds") or []]
    return ContractOut(
        plan=plan,
        received=shown["totals"]["received"],
        outstanding=shown["totals"]["outstanding"],
        credit=shown["totals"]["credit"],
        payments=payments,
        refunds=refunds,
        id=doc["_id"],
        number=doc["number"],
        title=doc.get("title"),
        status=doc["status"],
        customer_id=doc["customer_id"],
        customer_name=doc.get("customer_name"),
        customer_signatory=doc.get("customer_signatory"),
        our_entity=doc.get("our_entity"),
        opportunity_id=doc.get("opportunity_id"),
        quotation_id=doc.get("quotation_id"),
        amount=doc["amount"],
        currency=doc["currency"],
        start_date=doc.get("start_date"),
        end_date=doc.get("end_date"),
        signed_document=doc.get("signed_document"),
        signed_on=doc.get("signed_on"),
        notes=doc.get("notes"),
        owner_id=doc["owner_id"],
        department=doc.get("department"),
        department_path=doc.get("department_path"),
        approval=ApprovalOut(**approval, complete=rules.approval_complete(doc)) if approval else None,
        rejection=doc.get("rejection"),
        termination=doc.get("termination"),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        updated_by=doc.get("updated_by"),
        version=int(doc["version"]),
    )


def contracts(request: Request) -> Contracts:
    found: Contracts = request.app.state.contracts
    return found


App = Annotated[Contracts, Depends(contracts)]
router = APIRouter(prefix="/v1/contracts", tags=["contracts"])


def answer(app: Contracts, doc: Document, status: int = 200) -> JSONResponse:
    return versioned(
        contract_out(doc, app.today()), doc, status, location=f"/v1/contracts/{doc['_id']}" if status == 201 else None
    )


@router.post("", status_code=201, response_model=ContractOut, summary="Draft a contract", responses=problems(422))
async def create_contract(body: ContractIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """From a won opportunity (``opportunity_id``: customer, amount and currency default from it;
    not won: 422 at ``opportunity_id``), an accepted quotation (``quotation_id``: its customer,
    currency and total), or directly (``customer_id``, ``amount``, ``currency``). The number
    (``C-<year>-<000123>``) is taken once every check has passed."""
    return answer(app, await app.create(principal, body), 201)


@router.get("", response_model=ContractPage, summary="Contracts, filtered and paged")
async def list_contracts(
    params: Annotated[ContractFilter, Query()], principal: CurrentPrincipal, app: App
) -> ContractPage:
    """Those the caller sees (own, department, subtree or all by their ``contracts`` scope), newest
    first (``sort=created_at`` for oldest first); ``customer_id``, ``status``, ``owner_id`` filter
    exactly. Pages by cursor (``next_cursor`` -> ``cursor``)."""
    page = await app.page(principal, params)
    return ContractPage(
        items=[contract_out(d, app.today()) for d in page.items], next_cursor=page.next_cursor, total=page.total
    )


@router.get("/{contract_id}", response_model=ContractOut, summary="One contract", responses=problems(404))
async def get_contract(contract_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    return answer(app, await app.get(principal, contract_id))


@router.patch(
    "/{contract_id}", response_model=ContractOut, summary="Change a draft", responses=problems(404, 409, 412, 422, 428)
)
async def patch_contract(
    contract_id: str, body: ContractPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """Only a draft (409 otherwise); ``If-Match`` required."""
    version = expected_version(request, required=True)
    return answer(app, await app.update(principal, contract_id, body, version))


def _move(action: str, summary: str, doc: str) -> None:
    async def endpoint(
        contract_id: str,
        request: Request,
        principal: CurrentPrincipal,
        app: App,
        body: Annotated[Comment | None, Body()] = None,
    ) -> JSONResponse:
        version = expected_version(request, required=False)
        comment = body.comment if body else None
        return answer(app, await app.move(principal, contract_id, action, version, comment=comment))

    endpoint.__name__ = f"{action}_contract"
    endpoint.__doc__ = doc
    router.add_api_route(
        f"/{{contract_id}}/{action}",
        endpoint,
        methods=["POST"],
        response_model=ContractOut,
        summary=summary,
        responses=problems(403, 404, 409, 412, 422),
    )


_move("submit", "Submit for approval", "draft -> under_approval: the approval levels its amount's bands need.")
_move(
    "approve",
    "Approve the next level",
    "The next pending level, by a holder of its permission (contracts:approve, contracts:approve_major for "
    "the major band); never one's own contract, never two levels by one person (403). Optional comment.",
)
_move("reject", "Reject the contract", "under_approval -> draft (the approvals are cleared). ``comment`` required.")
_move("start", "Start executing", "signed -> executing.")
_move("complete", "Complete", "executing -> completed (final).")


@router.post(
    "/{contract_id}/sign",
    response_model=ContractOut,
    summary="Sign (every approval level approved)",
    responses=problems(404, 409, 412, 422),
)
async def sign_contract(
    contract_id: str, body: SignIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """under_approval with every level approved -> signed. ``signed_on`` (not in the future) and
    ``signed_document`` (required unless the contract has one)."""
    version = expected_version(request, required=False)
    return answer(app, await app.move(principal, contract_id, "sign", version, comment=body.comment, sign=body))


@router.post(
    "/{contract_id}/terminate",
    response_model=ContractOut,
    summary="Terminate",
    responses=problems(404, 409, 412, 422),
)
async def terminate_contract(
    contract_id: str, body: TerminateIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """signed or executing -> terminated (final); ``reason`` required."""
    version = expected_version(request, required=False)
    return answer(app, await app.move(principal, contract_id, "terminate", version, comment=body.reason))


def receivables(request: Request) -> Receivables:
    found: Receivables = request.app.state.receivables
    return found


Money = Annotated[Receivables, Depends(receivables)]


@router.put(
    "/{contract_id}/plan",
    response_model=ContractOut,
    summary="Set the payment plan (回款计划)",
    responses=problems(404, 409, 412, 422, 428),
)
async def set_plan(
    contract_id: str, body: PlanIn, request: Request, principal: CurrentPrincipal, app: App, money: Money
) -> JSONResponse:
    """Instalments ``[{due_date, amount, note, id?}]`` summing exactly to the contract's amount (422
    at ``instalments`` saying the difference), due dates ascending; ``If-Match`` required. An
    instalment that received money keeps its ``id``: removing it (422 at ``instalments``) or setting
    it below what it received (422 at ``instalments[i].amount``) is refused. Not once the contract
    is completed or terminated (409)."""
    version = expected_version(request, required=True)
    return answer(app, await money.set_plan(principal, contract_id, body, version))


@router.post(
    "/{contract_id}/payments",
    status_code=201,
    response_model=ContractOut,
    summary="Record a payment received (回款)",
    responses=problems(404, 409, 422),
)
async def receive_payment(
    contract_id: str, body: PaymentIn, principal: CurrentPrincipal, app: App, money: Money
) -> JSONResponse:
    """Applied to ``instalment_id`` (if given) first, then to the oldest unpaid instalments; what is
    beyond the whole plan is kept as the contract's ``credit``. The new payment is the last of
    ``payments``. Only a signed, executing or completed contract with a plan (409 otherwise);
    ``received_on`` not in the future."""
    return answer(app, await money.receive(principal, contract_id, body), 201)


@router.post(
    "/{contract_id}/refunds",
    status_code=201,
    response_model=ContractOut,
    summary="Refund part or all of a payment",
    responses=problems(404, 422),
)
async def refund_payment(
    contract_id: str, body: RefundIn, principal: CurrentPrincipal, app: App, money: Money
) -> JSONResponse:
    """At most what the payment still holds (422 at ``amount``); taken back from the credit it
    made first, then from the instalments it paid, the latest first. ``reason`` required."""
    return answer(app, await money.refund(principal, contract_id, body), 201)


class InvoiceOut(BaseModel):
    id: str
    number: str
    payment_id: str
    amount: str = Field(description="Tax included (价税合计).")
    tax_rate: str
    net: str
    tax: str
    currency: str
    title: str
    buyer_tax_id: str | None = None
    issued_at: datetime
    issued_by: str | None = None


class InvoiceList(BaseModel):
    contract_id: str
    items: list[InvoiceOut] = Field(description="Oldest first.")


def invoices_of(doc: Document) -> list[InvoiceOut]:
    return [
        InvoiceOut(**{**i, "currency": doc["currency"]})
        for i in doc.get("invoices") or []
        if i.get("number")  # a reservation whose number was never given (a crash between) is not an invoice
    ]


@router.post(
    "/{contract_id}/invoices",
    status_code=201,
    response_model=InvoiceOut,
    summary="Issue an invoice for a payment",
    responses=problems(404, 409, 422),
)
async def issue_invoice(
    contract_id: str, body: InvoiceIn, principal: CurrentPrincipal, app: App, money: Money
) -> JSONResponse:
    """For what ``payment_id`` brought (net of refunds) and is not invoiced yet; ``tax_rate`` a
    decimal percent (e.g. "13"): ``net = amount / (1 + rate/100)`` quantized to the currency and
    ``tax = amount - net``. Nothing left to invoice on the payment: 409. Number ``INV-YYYY-NNNNNN``."""
    doc, invoice_id = await money.invoice(principal, contract_id, body)
    issued = next(i for i in invoices_of(doc) if i.id == invoice_id)
    return versioned(issued, doc, 201, location=f"/v1/contracts/{contract_id}/invoices")


@router.get(
    "/{contract_id}/invoices", response_model=InvoiceList, summary="The contract's invoices", responses=problems(404)
)
async def list_invoices(contract_id: str, principal: CurrentPrincipal, app: App) -> InvoiceList:
    doc = await app.get(principal, contract_id)
    return InvoiceList(contract_id=doc["_id"], items=invoices_of(doc))


def routers() -> list[APIRouter]:
    """Every router of contracts and receivables, for the app factory."""
    return [router]
