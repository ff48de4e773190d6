"""Use cases of service tickets (工单): open (by an agent, or from a complaint recorded in the
interactions service), read and list, assign, reply, resolve, reopen, the return visit (回访) and
close.

Who sees a ticket (module ``tickets``): its assignee and its opener always, and those whose
tickets scope reaches its department; one not visible is reported as missing (404). The customer
must be in the service's read copy of the customers and neither deleted nor merged (422
``customer_id``); a service agent handles tickets of customers they do not own, so the customers
scope is not asked.

Numbers ``T-<year>-<000123>`` come from the quotations' counter design (one atomic ``$inc`` on
``counters``, ``ticket:<year>``), taken once every check has passed; the insert is retried with
the same id and number. A ticket opened from a complaint has an id derived from the feedback's id,
so a redelivered event finds it stored and makes nothing twice.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import sales as ev
from crm_platform.errors import NotFound, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.listing import Page, PageParams, all_of, fetch_page
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.store import Change
from crm_sales.adapters.quotations import QuotationRepository
from crm_sales.adapters.tickets import TicketRepository
from crm_sales.application.numbering import insert_numbered
from crm_sales.application.ticket_scheduler import TicketScheduler
from crm_sales.domain import tickets as rules
from crm_sales.domain.merges import name_the_survivor

Document = dict[str, Any]
MODULE = "tickets"
FROM_COMPLAINT = "system:tickets-from-complaints"
SYSTEM_ACTOR = "system:sales"
#: Ticket ids of complaints: the same feedback always gives the same ticket id.
COMPLAINT_NAMESPACE = uuid.UUID("5b7c1f0e-4d4a-4f0e-9a57-7e1c3b2f9d10")
LIST_PROJECTION = {"outbox": 0, "replies": 0}


def complaint_ticket_id(feedback_id: str) -> str:
    return str(uuid.uuid5(COMPLAINT_NAMESPACE, feedback_id))


class Tickets:
    def __init__(
        self,
        repo: TicketRepository,
        counters: QuotationRepository,
        customers: CustomerReadModel,
        clock: Clock,
        source: str,
        sla: rules.SlaPolicy,
        escalate_share: Decimal,
        reopen_days: int,
        scheduler_batch_size: int = 200,
        users: DirectoryReadModel | None = None,
        contracts: AsyncCollection[Document] | None = None,
    ) -> None:
        self.repo = repo
        self.users = users
        # The contracts of this service (read only): a ticket's contract must be its customer's.
        self.contracts = contracts
        self.counters = counters
        self.customers = customers
        self.clock = clock
        self.sla = sla
        self.escalate_share = escalate_share
        self.reopen_window = timedelta(days=reopen_days)
        self.event = EventFactory(source, clock)
        self.scheduler = TicketScheduler(repo, clock, source, batch_size=scheduler_batch_size)

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(ticket=rules.snapshot(doc, version), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    # --- reads ---------------------------------------------------------------------------------

    async def _customer(self, customer_id: str) -> Document:
        copy = await self.customers.arrived(customer_id)
        if copy is None:
            raise ValidationFailed.for_field(
                "customer_id",
                f"no customer {customer_id} (a customer created a moment ago may take a second to arrive)",
            )
        status = copy.get("status")
        if status == "deleted":
            raise ValidationFailed.for_field("customer_id", "the customer is in the recycle bin")
        if status == "merged":
            raise ValidationFailed.for_field(
                "customer_id", f"the customer was merged into {copy.get('merged_into')}; use that one"
            )
        return copy

    async def get(self, principal: Principal, ticket_id: str) -> Document:
        doc = await self.repo.get(ticket_id)
        if doc is None or not rules.sees(principal, doc, MODULE):
            raise NotFound(f"No ticket with id {ticket_id}.")
        return doc

    def visibility(self, principal: Principal) -> list[Document]:
        """Assigned to me, opened by me, or in a department my tickets scope reaches: the
        alternatives (an empty list: no condition, the scope is all)."""
        scope = principal.mongo_visibility("owner_id", "department_path", module=MODULE)
        if scope == {}:
            return []
        mine = {"created_by": principal.user_id}
        if "_id" in scope:  # no scope at all: what they opened only
            return [mine]
        branches: list[Document] = scope["$or"] if "$or" in scope else [scope]
        return [*branches, mine]

    async def page(self, principal: Principal, filters: Document, paging: PageParams) -> Page:
        base = {"live": True, **filters}
        branches = self.visibility(principal)
        # An alternative that contradicts a filter (assignee_id=X against "assigned to me") matches
        # nothing: leave it out rather than send the store a query it can only answer by scanning.
        kept = [b for b in branches if all(k not in filters or filters[k] == v for k, v in b.items())]
        if branches and not kept:
            return Page(items=[], next_cursor=None, total=None)
        query = base if not kept else all_of(base, kept[0] if len(kept) == 1 else {"$or": kept})
        return await fetch_page(
            self.repo.tickets,
            query,
            paging,
            sort_fields=rules.SORT_FIELDS,
            default_sort="-opened_at",
            projection=LIST_PROJECTION,
            tiebreak="s.id",
            tie_follows_last=True,
        )

    # --- open ----------------------------------------------------------------------------------

    async def _insert(self, draft: Document, actor: str) -> Document:
        """Take the number (every check has passed), then store the ticket (retried with the same id and number)."""
        now = draft["opened_at"]
        doc = rules.numbered(draft, now.year, await self.counters.next_number(rules.counter_id(now.year)))
        events = [self._event(ev.TICKET_OPENED, doc, 1, actor)]
        return await insert_numbered(self.repo.store, doc, events, self.repo.get)

    async def _check_ties(self, data: rules.TicketIn, customer: Document) -> None:
        """The contract and the contact a ticket names must be its customer's (422 naming the field)."""
        if data.contract_id is not None and self.contracts is not None:
            contract = await self.contracts.find_one({"_id": data.contract_id}, projection={"customer_id": 1})
            if contract is None:
                raise ValidationFailed.for_field("contract_id", f"no contract {data.contract_id}")
            if contract.get("customer_id") != data.customer_id:
                raise ValidationFailed.for_field(
                    "contract_id", f"the contract {data.contract_id} is another customer's, not {data.customer_id}'s"
                )
        if data.contact_id is not None and data.contact_id not in CustomerReadModel.contact_ids(customer):
            raise ValidationFailed.for_field(
                "contact_id", f"no contact {data.contact_id} of the customer {data.customer_id}"
            )

    async def open(self, principal: Principal, data: rules.TicketIn) -> Document:
        customer = await self._customer(data.customer_id)
        await self._check_ties(data, customer)
        now = self.clock.now()
        draft = rules.new_ticket(
            str(uuid.uuid4()),
            data,
            customer,
            principal.user_id,
            principal.user_id,
            principal.department_path,
            self.sla[data.priority],
            self.escalate_share,
            now,
        )
        return await self._insert(draft, principal.user_id)

    async def open_from_complaint(self, envelope: EventEnvelope) -> None:
        """A complaint recorded in the interactions service opens a ticket, once per feedback."""
        feedback = iev.FEEDBACK_OPENED.parse(envelope).feedback  # updated carries the same snapshot
        if feedback.kind != "complaint" or feedback.hidden or feedback.status not in ("open", "in_progress"):
            return  # not a complaint, or one already dealt with (an old one seen by a new group)
        ticket_id = complaint_ticket_id(feedback.feedback_id)
        if await self.repo.get(ticket_id) is not None:
            return  # a redelivery, or the complaint's later events
        copy = await self.customers.get(feedback.customer_id)
        data = rules.TicketIn(
            customer_id=feedback.customer_id,
            contact_id=feedback.contact_id,
            source="complaint",
            category="complaint",
            priority=feedback.priority,
            subject=feedback.title[:200] or "complaint",
            description=feedback.description[:10000] or None,
        )
        owner = feedback.handler_id or feedback.reported_by
        department = (
            feedback.handler_department_path if feedback.handler_id else feedback.reporter_department_path
        ) or feedback.reporter_department_path
        draft = rules.new_ticket(
            ticket_id,
            data,
            copy or {"_id": feedback.customer_id},
            owner,
            feedback.reported_by,
            department,
            self.sla[data.priority],
            self.escalate_share,
            self.clock.now(),
            feedback_id=feedback.feedback_id,
        )
        try:
            await self._insert(draft, FROM_COMPLAINT)
        except DuplicateKeyError:
            if await self.repo.get(ticket_id) is None:
                raise  # another key than the id: let the consumer retry

    def handlers(self) -> dict[str, Any]:
        return {
            iev.FEEDBACK_OPENED.name: self.open_from_complaint,
            iev.FEEDBACK_UPDATED.name: self.open_from_complaint,  # a feedback re-classed as a complaint
        }

    # --- changes -------------------------------------------------------------------------------

    async def _change(
        self,
        principal: Principal,
        ticket_id: str,
        expected_version: int | None,
        apply: Any,
    ) -> Document:
        """``apply(doc, version, now) -> list of events`` on the visible ticket, in one guarded write."""
        await self.get(principal, ticket_id)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not rules.sees(principal, doc, MODULE):
                raise NotFound(f"No ticket with id {ticket_id}.")
            events = apply(doc, version, now)
            if not events:
                return Change(None)
            rules.touch(doc, principal.user_id, now)
            return Change(doc, events)

        return await self.repo.store.mutate(ticket_id, decide, expected_version=expected_version)

    def _breach_events(self, doc: Document, version: int, target: rules.Target, now: Any) -> list[Any]:
        if not rules.late_breach(doc, target, now):
            return []
        due = rules.due_at(doc, target)
        return [self._event(ev.TICKET_SLA_BREACHED, doc, version, None, target=target, due_at=due)]

    async def assign(
        self, principal: Principal, ticket_id: str, body: rules.AssignIn, expected_version: int | None
    ) -> Document:
        await self.get(principal, ticket_id)  # 404 before anything is said about the assignee
        found = await self._assignee_department(body.assignee_id)

        def apply(doc: Document, version: int, now: Any) -> list[Any]:
            rules.check_move(doc, "assign")
            previous = doc.get("owner_id")
            department = doc.get("department_path") if self.users is None else found
            if previous == body.assignee_id and doc.get("department_path") == department:
                return []
            doc["owner_id"] = body.assignee_id
            doc["department_path"] = department  # the department follows the assignee
            rules.refresh(doc)
            return [self._event(ev.TICKET_ASSIGNED, doc, version, principal.user_id, previous_owner_id=previous)]

        return await self._change(principal, ticket_id, expected_version, apply)

    async def _assignee_department(self, assignee_id: str) -> str | None:
        """The department of an active user of the directory's copy (422 at ``assignee_id`` else)."""
        if self.users is None:
            return None
        user = await self.users.user(assignee_id)
        if user is None:
            raise ValidationFailed.for_field(
                "assignee_id",
                f"no user {assignee_id} (a user created a moment ago may take a second to arrive)",
            )
        if user.get("status") != "active":
            raise ValidationFailed.for_field("assignee_id", f"the user {assignee_id} is deactivated")
        path: str | None = user.get("department_path")
        return path

    async def reply(
        self, principal: Principal, ticket_id: str, body: rules.ReplyIn, expected_version: int | None
    ) -> Document:
        def apply(doc: Document, version: int, now: Any) -> list[Any]:
            first = rules.add_reply(doc, body, principal.user_id, now)
            rules.refresh(doc)
            events = [self._event(ev.TICKET_REPLIED, doc, version, principal.user_id, public=body.public, first=first)]
            if first:
                events += self._breach_events(doc, version, "first_response", now)
            return events

        return await self._change(principal, ticket_id, expected_version, apply)

    async def resolve(
        self, principal: Principal, ticket_id: str, body: rules.ResolveIn, expected_version: int | None
    ) -> Document:
        def apply(doc: Document, version: int, now: Any) -> list[Any]:
            responded = doc.get("first_responded_at") is not None
            rules.resolve(doc, body.resolution, now)
            rules.refresh(doc)
            events = [self._event(ev.TICKET_RESOLVED, doc, version, principal.user_id)]
            if not responded:
                events += self._breach_events(doc, version, "first_response", now)
            return events + self._breach_events(doc, version, "resolution", now)

        return await self._change(principal, ticket_id, expected_version, apply)

    async def reopen(
        self, principal: Principal, ticket_id: str, body: rules.ReopenIn, expected_version: int | None
    ) -> Document:
        def apply(doc: Document, version: int, now: Any) -> list[Any]:
            rules.reopen(doc, now, self.reopen_window)
            doc["reopen_reason"] = body.reason
            rules.refresh(doc)
            return [self._event(ev.TICKET_REOPENED, doc, version, principal.user_id)]

        return await self._change(principal, ticket_id, expected_version, apply)

    async def return_visit(
        self, principal: Principal, ticket_id: str, body: rules.ReturnVisitIn, expected_version: int | None
    ) -> Document:
        def apply(doc: Document, version: int, now: Any) -> list[Any]:
            rules.return_visit(doc, body, principal.user_id, now)
            return [self._event(ev.TICKET_RETURN_VISITED, doc, version, principal.user_id)]

        return await self._change(principal, ticket_id, expected_version, apply)

    async def close(
        self, principal: Principal, ticket_id: str, body: rules.CloseIn, expected_version: int | None
    ) -> Document:
        def apply(doc: Document, version: int, now: Any) -> list[Any]:
            rules.close(doc, body.no_visit_reason, now)
            rules.refresh(doc)
            return [
                self._event(ev.TICKET_CLOSED, doc, version, principal.user_id, no_visit_reason=doc["no_visit_reason"])
            ]

        return await self._change(principal, ticket_id, expected_version, apply)

    # --- customers' merges (application/customer_events.py) ------------------------------------

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        return await self.repo.ids_of_customer(customer_id)

    async def move_to_survivor(
        self, record_id: str, duplicate_id: str, survivor_id: str, survivor: Document | None, cause: EventEnvelope
    ) -> bool:
        """One ticket of a merged-away customer now names the survivor, whatever its status (a
        closed one too, so the survivor's history is whole): a new version and
        ``crm.ticket.updated`` with the change. One already moved is left alone (a redelivered
        merge writes nothing)."""
        actor = cause.actor or SYSTEM_ACTOR
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            changes = name_the_survivor(doc, duplicate_id, survivor_id, survivor)
            if changes is None:
                return Change(None)
            rules.touch(doc, actor, now)
            data = ev.TICKET_UPDATED.data_model(ticket=rules.snapshot(doc, version), changes=changes)
            return Change(doc, [self.event(ev.TICKET_UPDATED, doc["_id"], data, version, actor, cause.traceparent)])

        before = await self.repo.get(record_id)
        if before is None:
            return False
        after = await self.repo.store.mutate(record_id, decide)
        return after.get("version") != before.get("version")
