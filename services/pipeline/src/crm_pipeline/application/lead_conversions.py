"""The pipeline's step of a lead's conversion: make the opportunity ``crm.lead.conversion_progressed`` asks for.

The leads service chose every id up front (see the "conversion" section of
crm_platform.contracts.leads). This service makes the opportunity ``conversion.opportunity``
describes, under its ``opportunity_id``, for the event's ``customer_id``, owned by
``conversion.owner_id`` (in the conversion's department), with ``source_campaign`` the
conversion's campaign and ``lead_id`` set, in the given pipeline (or the default one) at its
first open stage. It goes through the same rules, custom field checks and event
(``crm.opportunity.created``) as an opportunity made over HTTP.

* Idempotent: a redelivered command finds the opportunity (or the refusal) and does nothing.
* The customer's read copy may lag (its events come on ``crm.customers.v1``, in another consumer
  group that may be replaying a backlog): after a few tries within a second the command is
  *parked*, a document keyed by the conversion id in ``lead_conversions_waiting`` holding the
  envelope, and acknowledged, so it holds up neither its partition nor the conversions behind it.
  :meth:`LeadConversions.resume` (a background pass every few seconds, safe in every replica)
  tries each parked command again with a growing delay, and refuses it once the customer has not
  come within ``lead_conversion_wait_seconds`` (the lead then goes back to qualified with the reason).
* When it cannot be made (unknown pipeline, invalid amount or currency, the customer deleted or
  merged, a required custom field...), the answer is ``crm.opportunity.lead_refused`` with the
  field errors, and nothing else is written. The refusal is a small document keyed by the
  conversion id, with the event in its own outbox: state and event in one write, and a second
  delivery collides on the id instead of refusing twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from crm_pipeline.adapters.repository import Repository
from crm_pipeline.application.opportunities import Opportunities
from crm_pipeline.application.pipelines import Pipelines
from crm_pipeline.domain import opportunities as rules
from crm_pipeline.domain import pipelines as pl
from crm_pipeline.domain.model import OpportunityCreate
from crm_pipeline.settings import PipelineSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.consumer import Handler
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as ev
from crm_platform.errors import DomainError, FieldError
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.store import VersionedStore

log = structlog.get_logger(__name__)

Document = dict[str, Any]
#: The collection of refusals, keyed by conversion id (each with its own outbox).
COLLECTION = "lead_conversions"
#: Commands waiting for their customer's copy, keyed by conversion id (no events of their own).
WAITING = "lead_conversions_waiting"
#: Seconds between the tries made while the command is in hand, before it is parked.
INLINE_WAITS = (0.1, 0.2, 0.4)
#: The delay before a parked command's next try grows from 1 s, doubling, to this cap.
RESUME_DELAY_CAP = timedelta(seconds=30)
GONE = ("deleted", "purged")


class CustomerNotYetKnown(Exception):
    """The customer the conversion made has not reached this service's read copy yet: retry later."""


class Refused(Exception):
    def __init__(self, reason: str, errors: list[FieldError]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors


class LeadConversions:
    def __init__(
        self,
        repo: Repository,
        opportunities: Opportunities,
        pipelines: Pipelines,
        customers: CustomerReadModel,
        refusals: AsyncCollection[Document],
        waiting: AsyncCollection[Document],
        clock: Clock,
        settings: PipelineSettings,
        event: EventFactory,
        wake_relay: Any = lambda: None,
    ) -> None:
        self.repo = repo
        self.opportunities = opportunities
        self.pipelines = pipelines
        self.customers = customers
        self.clock = clock
        self.settings = settings
        self.event = event
        self.refusals = VersionedStore(refusals, clock, wake_relay=wake_relay)
        self.waiting = waiting

    async def ensure_indexes(self) -> None:
        # The resume pass reads the parked commands whose next try has come, oldest first.
        await self.waiting.create_index("next_at", name="idx_next_at")

    def handlers(self) -> dict[str, Handler]:
        return {lev.LEAD_CONVERSION_PROGRESSED.name: self.progressed}

    async def progressed(self, envelope: EventEnvelope) -> None:
        # The copy is usually a moment behind at most: a few short tries before parking.
        for delay in (*INLINE_WAITS, None):
            try:
                await self._attempt(envelope)
                return
            except CustomerNotYetKnown:
                if delay is None:
                    break
                await asyncio.sleep(delay)
        await self._park(envelope)

    async def resume(self) -> int:
        """One pass over the parked commands whose next try has come; returns how many ended
        (made, refused, or found done by another replica)."""
        now = self.clock.now()
        due = self.waiting.find({"next_at": {"$lte": _epoch_ms(now)}}).sort("next_at", 1).limit(100)
        ended = 0
        async for parked in due:
            envelope = EventEnvelope.model_validate(parked["envelope"])
            try:
                await self._attempt(envelope)
            except CustomerNotYetKnown:
                if now - parked["parked_at"] < timedelta(seconds=self.settings.lead_conversion_wait_seconds):
                    await self._retry_later(parked, now)
                    continue
                await self._give_up(envelope, parked)
            await self.waiting.delete_one({"_id": parked["_id"]})
            ended += 1
        return ended

    async def _attempt(self, envelope: EventEnvelope) -> None:
        """Make the opportunity, or refuse; raises :class:`CustomerNotYetKnown` when its customer's copy
        is not here yet. Nothing happens for a command already answered."""
        data = lev.LEAD_CONVERSION_PROGRESSED.parse(envelope)
        asked = data.conversion.opportunity
        if data.step != "customer" or asked is None:
            return  # no opportunity asked for: nothing of ours to do
        if await self.repo.opportunity(asked.opportunity_id) is not None:
            return  # made already (a redelivered command)
        if await self.refusals.get(data.conversion.conversion_id) is not None:
            return  # refused already: the leads service has its answer
        try:
            doc = await self._decide(data)
        except Refused as refused:
            await self._refuse(data, refused, envelope)
            return
        actor = data.conversion.requested_by
        created = ev.OpportunityCreated(opportunity=rules.snapshot(doc))
        event = self.event(ev.OPPORTUNITY_CREATED, doc["_id"], created, 1, actor, envelope.traceparent)
        try:
            await self.repo.opportunity_store.insert(doc, [event])
        except DuplicateKeyError:
            return  # another delivery of the same command made it a moment ago
        # The customer may have been deleted or merged since the check: follow it once more.
        await self.opportunities.follow_customer(doc["_id"], actor)

    async def _park(self, envelope: EventEnvelope) -> None:
        data = lev.LEAD_CONVERSION_PROGRESSED.parse(envelope)
        now = self.clock.now()
        parked: Document = {
            "_id": data.conversion.conversion_id,
            "customer_id": data.customer_id,
            "envelope": envelope.model_dump(mode="json"),
            "parked_at": now,
            "tries": 1,
            "next_at": _epoch_ms(now + timedelta(seconds=1)),
        }
        try:
            await self.waiting.insert_one(parked)
        except DuplicateKeyError:
            return  # parked by an earlier delivery: its tries go on
        log.info("lead conversion waits for its customer", conversion_id=parked["_id"], customer_id=data.customer_id)

    async def _retry_later(self, parked: Document, now: datetime) -> None:
        tries = int(parked.get("tries", 1)) + 1
        delay = min(timedelta(seconds=2 ** min(tries - 1, 10)), RESUME_DELAY_CAP)
        await self.waiting.update_one(
            {"_id": parked["_id"]}, {"$set": {"tries": tries, "next_at": _epoch_ms(now + delay)}}
        )

    async def _give_up(self, envelope: EventEnvelope, parked: Document) -> None:
        data = lev.LEAD_CONVERSION_PROGRESSED.parse(envelope)
        waited = self.settings.lead_conversion_wait_seconds
        reason = f"the customer {data.customer_id} did not reach the pipeline service within {waited:g} s"
        log.warning("lead conversion gave up waiting for its customer", conversion_id=parked["_id"])
        await self._refuse(data, Refused(reason, [_customer_error(reason)]), envelope)

    async def _decide(self, data: lev.LeadConversionProgressed) -> Document:
        """The new opportunity, checked by the same rules as over HTTP; raises :class:`Refused`."""
        conversion = data.conversion
        asked = conversion.opportunity
        assert asked is not None
        customer = await self.customers.get(data.customer_id)
        if customer is None:
            raise CustomerNotYetKnown(f"customer {data.customer_id} is not in the read copy yet")
        status = customer.get("status")
        if status in GONE:
            raise Refused("the customer is in the recycle bin", [_customer_error(f"customer is {status}")])
        if status == "merged":
            reason = f"the customer was merged into {customer.get('merged_into')}"
            raise Refused(reason, [_customer_error(reason)])
        # The owner creates it (their id, their department): the rules' own owner logic.
        owner = Principal(
            user_id=conversion.owner_id,
            department_id=conversion.department_id,
            department_path=conversion.department_path,
        )
        try:
            create = OpportunityCreate(
                customer_id=data.customer_id,
                name=asked.name,
                amount=asked.amount,
                currency=asked.currency,
                expected_close_date=asked.expected_close_date,
                pipeline_id=asked.pipeline_id,
                source_campaign=conversion.campaign_id,
            )
        except ValidationError as exc:
            errors = [_pydantic_error(e) for e in exc.errors()]
            raise Refused("the opportunity asked for is not valid", errors) from exc
        try:
            pipeline = await self.pipelines.resolve(asked.pipeline_id)
            stage = pl.first_open_stage(pipeline)
            custom = (await self.pipelines.fieldset()).validate(None)
            now = self.clock.now()
            doc = rules.new_opportunity(
                create,
                owner,
                pipeline,
                stage,
                CustomerReadModel.contact_ids(customer),
                now,
                self.settings.zone,
                self.settings.default_currency,
                custom,
            )
        except DomainError as exc:
            raise Refused(exc.detail, exc.errors or [FieldError(field="opportunity", reason=exc.detail)]) from exc
        doc["_id"] = asked.opportunity_id
        doc["lead_id"] = data.lead.lead_id
        doc["created_by"] = doc["updated_by"] = conversion.requested_by
        return rules.refresh(doc)

    async def _refuse(self, data: lev.LeadConversionProgressed, refused: Refused, cause: EventEnvelope) -> None:
        conversion = data.conversion
        assert conversion.opportunity is not None
        opportunity_id = conversion.opportunity.opportunity_id
        answer = ev.LeadRefused(
            opportunity_id=opportunity_id,
            lead_id=data.lead.lead_id,
            conversion_id=conversion.conversion_id,
            reason=refused.reason,
            errors=[e.model_dump(exclude_none=True) for e in refused.errors],
        )
        now = self.clock.now()
        state: Document = {
            "_id": conversion.conversion_id,
            "lead_id": data.lead.lead_id,
            "opportunity_id": opportunity_id,
            "reason": refused.reason,
            "errors": answer.errors,
            "refused_at": now,
        }
        event = self.event(
            ev.OPPORTUNITY_LEAD_REFUSED, opportunity_id, answer, 1, conversion.requested_by, cause.traceparent
        )
        try:
            await self.refusals.insert(state, [event])
        except DuplicateKeyError:
            return  # refused by another delivery a moment ago
        log.info("lead conversion refused", conversion_id=conversion.conversion_id, reason=refused.reason)


def _customer_error(reason: str) -> FieldError:
    return FieldError(field="customer_id", reason=reason)


def _pydantic_error(error: Any) -> FieldError:
    """A validation error of the opportunity asked for, named as the conversion's opportunity names it."""
    field = ".".join(str(p) for p in error.get("loc", ())) or "opportunity"
    return FieldError(field=field, reason=str(error.get("msg", "invalid")), code=error.get("type"))


def _epoch_ms(moment: datetime) -> int:
    # Stored as an integer: the embedded store compares a date through a function no index serves.
    return int(moment.timestamp() * 1000)
