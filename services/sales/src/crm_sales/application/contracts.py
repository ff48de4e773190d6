"""Use cases of contracts (合同): draft (from a won opportunity, an accepted quotation, or directly),
read, list, change a draft, and the approval, signing and execution moves.

Who sees a contract: its owner and those whose ``contracts`` scope reaches its department (like
opportunities); one not visible is reported as missing (404).

**Numbering** is the quotations' design: every check passes first, then the number is taken from
the year's counter (one atomic ``$inc``), then the contract is inserted with it; the insert is
idempotent (the id is chosen before the number) and retried, so a taken number ends up on a contract.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from crm_platform.auth import Principal
from crm_platform.clock import Clock, as_utc
from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, NotFound, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.listing import Page, PageParams, all_of, fetch_page
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.opportunities import OpportunityReadModel
from crm_platform.store import Change
from crm_sales.adapters.contracts import ContractRepository
from crm_sales.adapters.quotations import QuotationRepository
from crm_sales.application.customer_events import refuse_if_customer_closed
from crm_sales.application.numbering import insert_numbered
from crm_sales.domain import contracts as rules
from crm_sales.domain import money
from crm_sales.domain import receivables as money_rules
from crm_sales.domain.merges import name_the_survivor

Document = dict[str, Any]
MODULE = "contracts"
SORT_FIELDS = {"created_at": "s.created"}
DEFAULT_SORT = "-created_at"
TIEBREAK = "s.id"
LIST_PROJECTION = {"outbox": 0}
SYSTEM_ACTOR = "system:sales"
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")


#: What a contract of a customer in the recycle bin (or purged) may no longer do: the moves that
#: change or advance the agreement. Reading, payments received, refunds, invoices, completing,
#: terminating and the overdue reminders stay allowed (money that came in or goes back is a fact).
CLOSED_TO_DELETED = ("update", "plan", "submit", "approve", "reject", "sign", "start")


class CustomerClosed(Conflict):
    code, title = "customer-deleted", "The contract's customer is in the recycle bin"


def business_day(clock: Clock, zone: ZoneInfo) -> date:
    """The date it is now in ``zone`` (the setting CRM_SALES_BUSINESS_TIMEZONE)."""
    return as_utc(clock.now()).astimezone(zone).date()


class ContractFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, max_length=100)
    status: str | None = Field(default=None, description=", ".join(rules.STATUSES))
    owner_id: str | None = Field(default=None, max_length=100)
    sort: str | None = Field(default=None, description="created_at or -created_at (default).")
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=500)
    include_total: bool = False

    def conditions(self) -> Document:
        query: Document = {"live": True}
        if self.customer_id:
            query["customer_id"] = self.customer_id
        if self.status:
            if self.status not in rules.STATUSES:
                raise ValidationFailed.for_field(
                    "status", f"'{self.status}' is not a status; use one of {', '.join(rules.STATUSES)}", "query"
                )
            query["status"] = self.status
        if self.owner_id:
            query["owner_id"] = self.owner_id
        return query


class Contracts:
    def __init__(
        self,
        repo: ContractRepository,
        quotations: QuotationRepository,
        customers: CustomerReadModel,
        opportunities: OpportunityReadModel,
        clock: Clock,
        source: str,
        bands: rules.Bands,
        our_entity: str,
        zone: ZoneInfo = DEFAULT_ZONE,
    ) -> None:
        self.repo = repo
        self.zone = zone
        self.quotations = quotations
        self.customers = customers
        self.opportunities = opportunities
        self.clock = clock
        self.bands = bands
        self.our_entity = our_entity
        self.event = EventFactory(source, clock)

    def today(self) -> date:
        """The business day now: the date in the organisation's time zone (not UTC's)."""
        return business_day(self.clock, self.zone)

    def changed(self, doc: Document, version: int, actor: str | None, changes: list[ev.FieldChange]) -> Any:
        data = ev.ContractChanged(contract=rules.snapshot(doc, version), changes=changes)
        return self.event(ev.CONTRACT_UPDATED, doc["_id"], data, version, actor)

    def decided(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = ev.ContractDecided(contract=rules.snapshot(doc, version), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    # --- checks --------------------------------------------------------------------------------

    async def _customer(self, principal: Principal, customer_id: str, field: str = "customer_id") -> Document:
        copy = await self.customers.arrived(customer_id)
        if copy is None or not CustomerReadModel.visible_to(principal, copy) or copy.get("status") != "active":
            why = {"deleted": "the customer is in the recycle bin", "merged": "the customer was merged; use the other"}
            reason = why.get(str((copy or {}).get("status")), f"no customer {customer_id} that you can see")
            raise ValidationFailed.for_field(field, reason)
        return copy

    async def customer_open(self, doc: Document, action: str) -> None:
        """409 ``customer-deleted`` when ``action`` is one of :data:`CLOSED_TO_DELETED` and the
        contract's customer is in the recycle bin or purged (the read copy as it is now decides, so
        a restore lifts it)."""
        if action not in CLOSED_TO_DELETED:
            return
        await refuse_if_customer_closed(self.customers, doc["customer_id"], action, "contract", CustomerClosed)

    async def visible(self, principal: Principal, contract_id: str) -> Document:
        doc = await self.repo.get(contract_id)
        if doc is None or not self.sees(principal, doc):
            raise NotFound(f"No contract with id {contract_id}.")
        return doc

    @staticmethod
    def sees(principal: Principal, doc: Document) -> bool:
        return principal.can_see_owned(doc.get("owner_id"), doc.get("department_path"), module=MODULE)

    async def _origin(self, principal: Principal, data: rules.ContractIn) -> tuple[str, str | None, str | None]:
        """The customer, amount and currency the contract starts from (its opportunity or quotation)."""
        if data.opportunity_id and data.quotation_id:
            raise ValidationFailed.for_field("quotation_id", "give an opportunity_id or a quotation_id, not both")
        if data.opportunity_id:
            opp = await self.opportunities.get(data.opportunity_id)
            if opp is None or not OpportunityReadModel.visible_to(principal, opp):
                raise ValidationFailed.for_field(
                    "opportunity_id",
                    f"no opportunity {data.opportunity_id} that you can see "
                    "(one won a moment ago may take a second to arrive)",
                )
            if opp.get("status") != "won":
                raise ValidationFailed.for_field(
                    "opportunity_id", f"the opportunity is {opp.get('status')}: a contract follows a won one"
                )
            return str(opp["customer_id"]), opp.get("amount"), opp.get("currency")
        if data.quotation_id:
            quotation = await self.quotations.get(data.quotation_id)
            if quotation is None or not principal.can_see_owned(
                quotation.get("owner_id"), quotation.get("department_path"), module="customers"
            ):
                raise ValidationFailed.for_field("quotation_id", f"no quotation {data.quotation_id} that you can see")
            if quotation.get("status") != "accepted":
                raise ValidationFailed.for_field(
                    "quotation_id", f"the quotation is {quotation.get('status')}: a contract follows an accepted one"
                )
            return str(quotation["customer_id"]), quotation.get("total"), quotation.get("currency")
        if not data.customer_id:
            raise ValidationFailed.for_field(
                "customer_id", "give the customer_id (or an opportunity_id or a quotation_id to start from)"
            )
        return data.customer_id, None, None

    # --- use cases -----------------------------------------------------------------------------

    async def create(self, principal: Principal, data: rules.ContractIn) -> Document:
        customer_id, origin_amount, origin_currency = await self._origin(principal, data)
        if data.customer_id and data.customer_id != customer_id:
            raise ValidationFailed.for_field(
                "customer_id", f"the opportunity or quotation is for customer {customer_id}"
            )
        raw_currency = data.currency or origin_currency
        if not raw_currency:
            raise ValidationFailed.for_field("currency", "required (an ISO 4217 code such as CNY)")
        currency = rules.currency(raw_currency)
        raw_amount = data.amount or origin_amount
        if not raw_amount:
            raise ValidationFailed.for_field("amount", "required (a decimal string above 0)")
        amount = rules.amount(raw_amount, currency)
        rules.check_dates(data.start_date, data.end_date)
        customer = await self._customer(principal, customer_id)
        now = self.clock.now()
        draft = rules.new_contract(
            str(uuid.uuid4()),
            data,
            customer=customer,
            amount_text=amount,
            currency_code=currency,
            our_entity=self.our_entity,
            principal=principal,
            now=now,
        )
        year = now.year
        doc = rules.numbered(draft, year, await self.repo.next_number(rules.counter_id(year)))
        created = ev.ContractChanged(contract=rules.snapshot(doc, 1))
        events = [self.event(ev.CONTRACT_CREATED, doc["_id"], created, 1, principal.user_id)]
        return await insert_numbered(self.repo.store, doc, events, self.repo.get)

    async def get(self, principal: Principal, contract_id: str) -> Document:
        return await self.visible(principal, contract_id)

    async def page(self, principal: Principal, filters: ContractFilter) -> Page:
        visibility = principal.mongo_visibility(module=MODULE)
        if filters.owner_id and visibility:
            # An owner filter decides the visibility's owner branch: keep only the branches that can
            # match (two different owner equalities in one query would make the store scan).
            branches = visibility.get("$or", [visibility])
            kept = [b for b in branches if b.get("owner_id", filters.owner_id) == filters.owner_id]
            if not kept:
                return Page(items=[], next_cursor=None, total=0 if filters.include_total else None)
            visibility = kept[0] if len(kept) == 1 else {"$or": kept}
        query = all_of(filters.conditions(), visibility)
        return await fetch_page(
            self.repo.contracts,
            query,
            PageParams(**filters.model_dump(include={"sort", "cursor", "limit", "include_total"})),
            sort_fields=SORT_FIELDS,
            default_sort=DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            tie_follows_last=True,
        )

    # --- customer merges (application/customer_events.py) ----------------------------------------

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        return await self.repo.ids_of_customer(customer_id)

    async def move_to_survivor(
        self, record_id: str, duplicate_id: str, survivor_id: str, survivor: Document | None, cause: EventEnvelope
    ) -> bool:
        """One contract of a merged-away customer now names the survivor: a new version and
        ``crm.contract.updated`` with the change; one already moved is left alone (idempotent)."""
        actor = cause.actor or SYSTEM_ACTOR
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            changes = name_the_survivor(doc, duplicate_id, survivor_id, survivor)
            if changes is None:
                return Change(None)
            doc["updated_at"] = now
            doc["updated_by"] = actor
            data = ev.ContractChanged(contract=rules.snapshot(doc, version), changes=changes)
            return Change(doc, [self.event(ev.CONTRACT_UPDATED, doc["_id"], data, version, actor, cause.traceparent)])

        before = await self.repo.get(record_id)
        if before is None:
            return False
        after = await self.repo.store.mutate(record_id, decide)
        return after.get("version") != before.get("version")

    async def update(
        self, principal: Principal, contract_id: str, patch: rules.ContractPatch, expected_version: int | None
    ) -> Document:
        current = await self.visible(principal, contract_id)
        rules.check_editable(current)
        await self.customer_open(current, "update")
        fields = patch.model_fields_set
        for name in ("title", "amount", "currency"):
            if name in fields and getattr(patch, name) is None:
                raise ValidationFailed.for_field(name, "cannot be cleared")
        currency = rules.currency(patch.currency) if patch.currency else current["currency"]
        amount = current["amount"]
        if patch.amount is not None:
            amount = rules.amount(patch.amount, currency)
        elif patch.currency is not None:
            amount = rules.amount(current["amount"], currency)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not self.sees(principal, doc):
                raise NotFound(f"No contract with id {contract_id}.")
            rules.check_editable(doc)
            values: Document = {
                "title": patch.title,
                "customer_signatory": patch.customer_signatory,
                "start_date": patch.start_date.isoformat() if patch.start_date else None,
                "end_date": patch.end_date.isoformat() if patch.end_date else None,
                "signed_document": patch.signed_document,
                "notes": patch.notes,
            }
            changes: list[ev.FieldChange] = []
            for name, value in values.items():
                if name in fields and doc.get(name) != value:
                    changes.append(ev.FieldChange(field=name, old=doc.get(name), new=value))
                    doc[name] = value
            for name, value in (("currency", currency), ("amount", amount)):
                if doc.get(name) != value:
                    changes.append(ev.FieldChange(field=name, old=doc.get(name), new=value))
                    doc[name] = value
            start, end = doc.get("start_date"), doc.get("end_date")
            rules.check_dates(date.fromisoformat(start) if start else None, date.fromisoformat(end) if end else None)
            if not changes:
                return Change(None)
            doc["amount_minor"] = money.to_minor(doc["amount"], doc["currency"])
            if any(c.field in ("amount", "currency") for c in changes) and doc.get("plan"):
                # A draft has received nothing: its plan no longer sums to the amount, so it goes.
                changes.append(ev.FieldChange(field="plan", old=len(doc["plan"]), new=0))
                doc["plan"] = []
            money_rules.refresh(doc)
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            return Change(doc, [self.changed(doc, version, principal.user_id, changes)])

        return await self.repo.store.mutate(contract_id, decide, expected_version=expected_version)

    async def move(
        self,
        principal: Principal,
        contract_id: str,
        action: str,
        expected_version: int | None,
        *,
        comment: str | None = None,
        sign: rules.SignIn | None = None,
    ) -> Document:
        """submit, approve, reject, sign, start, complete or terminate (see rules.MOVES)."""
        event_type = {
            "submit": ev.CONTRACT_SUBMITTED,
            "approve": ev.CONTRACT_APPROVED,
            "reject": ev.CONTRACT_REJECTED,
            "sign": ev.CONTRACT_SIGNED,
            "start": ev.CONTRACT_STARTED,
            "complete": ev.CONTRACT_COMPLETED,
            "terminate": ev.CONTRACT_TERMINATED,
        }[action]
        text = (comment or "").strip() or None
        if action == "reject" and text is None:
            raise ValidationFailed.for_field("comment", "say why the contract is rejected")
        if action == "terminate" and text is None:
            raise ValidationFailed.for_field("reason", "say why the contract is terminated")
        if sign is not None and sign.signed_on > self.today():
            raise ValidationFailed.for_field(
                "signed_on", f"{sign.signed_on.isoformat()} is in the future (today is {self.today().isoformat()})"
            )
        current = await self.visible(principal, contract_id)
        rules.check_move(current, action)
        await self.customer_open(current, action)
        if action in ("approve", "reject"):
            rules.check_approver(principal, current, action)
        if action == "sign":
            assert sign is not None
            if not (sign.signed_document or current.get("signed_document")):
                raise ValidationFailed.for_field("signed_document", "the signed document (a URL or a document id)")
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not self.sees(principal, doc):
                raise NotFound(f"No contract with id {contract_id}.")
            target = rules.check_move(doc, action)
            fields: Document = {"comment": text}
            if action == "submit":
                levels = rules.levels_for(self.bands, doc["amount"], doc["currency"])
                doc["approval"] = {"submitted_by": principal.user_id, "submitted_at": now, "levels": levels}
            elif action in ("approve", "reject"):
                level = rules.check_approver(principal, doc, action)
                fields.update(level=level["level"], permission=level["permission"])
                if action == "approve":
                    decided = {**level, "approved_by": principal.user_id, "approved_at": now, "comment": text}
                    doc["approval"]["levels"][level["level"] - 1] = decided
                else:
                    doc["rejection"] = {"by": principal.user_id, "at": now, "comment": text, "level": level["level"]}
                    doc["approval"] = None
            elif action == "sign":
                assert sign is not None
                doc["signed_on"] = sign.signed_on.isoformat()
                doc["signed_document"] = sign.signed_document or doc.get("signed_document")
            elif action == "terminate":
                doc["termination"] = {"by": principal.user_id, "at": now, "reason": text}
            doc["status"] = target
            money_rules.refresh(doc)  # a closed contract is no longer watched for overdue instalments
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            return Change(doc, [self.decided(event_type, doc, version, principal.user_id, **fields)])

        return await self.repo.store.mutate(contract_id, decide, expected_version=expected_version)
