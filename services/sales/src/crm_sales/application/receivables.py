"""Use cases of a contract's receivables (回款): set its payment plan, record a payment received,
refund part of one. Each is one guarded write of the contract's document (its version), so two
payments at once both count: the loser of a race re-reads and applies its payment again."""

from __future__ import annotations

import uuid
from typing import Any

from crm_platform.auth import Principal
from crm_platform.contracts import sales as ev
from crm_platform.errors import NotFound
from crm_platform.store import Change
from crm_sales.application.contracts import Contracts
from crm_sales.application.numbering import retried
from crm_sales.domain import contracts as rules
from crm_sales.domain import invoices as invoice_rules
from crm_sales.domain import receivables as money_rules

Document = dict[str, Any]


class Receivables:
    def __init__(self, contracts: Contracts) -> None:
        self.contracts = contracts
        self.repo = contracts.repo
        self.event = contracts.event

    def _payment_event(
        self,
        event_type: Any,
        doc: Document,
        version: int,
        actor: str,
        payment: Document,
        amount: str,
        parts: list[Document],
        refund: Document | None = None,
    ) -> Any:
        data = ev.ContractPayment(
            contract_id=doc["_id"],
            payment_id=payment["id"],
            refund_id=refund["id"] if refund else None,
            owner_id=doc["owner_id"],
            department=doc.get("department"),
            department_path=doc.get("department_path"),
            customer_id=doc["customer_id"],
            amount=amount,
            currency=doc["currency"],
            received_on=payment["received_on"],
            method=payment.get("method"),
            reference=payment.get("reference"),
            reason=refund["reason"] if refund else None,
            refunded_on=refund.get("refunded_on") if refund else None,
            allocation=money_rules.allocations(parts, doc["currency"]),
            contract=rules.snapshot(doc, version),
        )
        return self.event(event_type, doc["_id"], data, version, actor)

    async def set_plan(
        self, principal: Principal, contract_id: str, data: money_rules.PlanIn, expected_version: int | None
    ) -> Document:
        current = await self.contracts.visible(principal, contract_id)
        money_rules.new_plan(current, data)  # 422/409 before any write
        await self.contracts.customer_open(current, "plan")
        now = self.contracts.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not self.contracts.sees(principal, doc):
                raise NotFound(f"No contract with id {contract_id}.")
            doc["plan"] = money_rules.new_plan(doc, data)
            money_rules.refresh(doc)
            applied = money_rules.apply_credit(doc)  # credit held goes to instalments with room
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            payload = ev.ContractPlanSet(
                contract=rules.snapshot(doc, version),
                instalments=money_rules.instalment_states(doc),
                credit_applied=money_rules.allocations(applied, doc["currency"]),
            )
            return Change(doc, [self.event(ev.CONTRACT_PLAN_SET, doc["_id"], payload, version, principal.user_id)])

        return await self.repo.store.mutate(contract_id, decide, expected_version=expected_version)

    async def receive(self, principal: Principal, contract_id: str, data: money_rules.PaymentIn) -> Document:
        current = await self.contracts.visible(principal, contract_id)
        today = self.contracts.today()
        payment_id = f"p-{uuid.uuid4().hex[:16]}"
        now = self.contracts.clock.now()
        money_rules.receive(current, payment_id, data, today, principal.user_id, now)  # the checks, no write

        def decide(doc: Document, version: int) -> Change:
            if not self.contracts.sees(principal, doc):
                raise NotFound(f"No contract with id {contract_id}.")
            payment = money_rules.receive(doc, payment_id, data, today, principal.user_id, now)
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            event = self._payment_event(
                ev.CONTRACT_PAYMENT_RECEIVED,
                doc,
                version,
                principal.user_id,
                payment,
                payment["amount"],
                payment["allocation"],
            )
            return Change(doc, [event])

        return await self.repo.store.mutate(contract_id, decide)

    async def refund(self, principal: Principal, contract_id: str, data: money_rules.RefundIn) -> Document:
        current = await self.contracts.visible(principal, contract_id)
        refund_id = f"r-{uuid.uuid4().hex[:16]}"
        now = self.contracts.clock.now()
        today = self.contracts.today().isoformat()  # the refund's own day, for the collection report
        money_rules.refund(current, refund_id, data, principal.user_id, now)  # the checks, no write

        def decide(doc: Document, version: int) -> Change:
            if not self.contracts.sees(principal, doc):
                raise NotFound(f"No contract with id {contract_id}.")
            refund, payment = money_rules.refund(doc, refund_id, data, principal.user_id, now)
            refund["refunded_on"] = today
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            event = self._payment_event(
                ev.CONTRACT_PAYMENT_REFUNDED,
                doc,
                version,
                principal.user_id,
                payment,
                refund["amount"],
                refund["allocation"],
                refund,
            )
            return Change(doc, [event])

        return await self.repo.store.mutate(contract_id, decide)

    async def invoice(
        self, principal: Principal, contract_id: str, data: invoice_rules.InvoiceIn
    ) -> tuple[Document, str]:
        """The contract and the new invoice's id. The invoice is reserved on the contract first (every
        check, its amount held), then the year's number is taken, then it is issued with the number
        and its event (see domain/invoices.py)."""
        current = await self.contracts.visible(principal, contract_id)
        invoice_id = f"v-{uuid.uuid4().hex[:16]}"
        now = self.contracts.clock.now()
        invoice_rules.reserve(current, invoice_id, data, principal.user_id, now)  # the checks, no write

        def reserve(doc: Document, version: int) -> Change:
            if not self.contracts.sees(principal, doc):
                raise NotFound(f"No contract with id {contract_id}.")
            invoice_rules.reserve(doc, invoice_id, data, principal.user_id, now)
            return Change(doc)

        await self.repo.store.mutate(contract_id, reserve)
        year = now.year
        seq = await self.repo.next_number(invoice_rules.counter_id(year))

        def issue(doc: Document, version: int) -> Change:
            invoice = invoice_rules.issue(doc, invoice_id, year, seq)
            if invoice is None:
                return Change(None)  # an earlier attempt issued it
            payload = ev.ContractInvoiceIssued(
                contract=rules.snapshot(doc, version), invoice=invoice_rules.snapshot(invoice, doc["currency"])
            )
            event = self.event(ev.CONTRACT_INVOICE_ISSUED, doc["_id"], payload, version, principal.user_id)
            return Change(doc, [event])

        return await retried(lambda: self.repo.store.mutate(contract_id, issue)), invoice_id
