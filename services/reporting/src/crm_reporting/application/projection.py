"""The projection: every event of the other services into states and facts.

Idempotent and order-tolerant by construction:
- each aggregate's current state is kept with ``apply_versioned`` (a stale or repeated
  event changes nothing), whatever order the services' topics arrive in;
- each event becomes at most one fact (``_id`` = event id, a repeat is ignored);
- nothing here joins across aggregates: reports join states and facts at request
  time, so an interaction that arrives before its customer still counts once the
  customer arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import customers as cev
from crm_platform.contracts import directory as dev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.contracts import pool as poolev
from crm_platform.events import EventEnvelope, registry
from crm_reporting.adapters.readmodels import Generations, ReadModels
from crm_reporting.application.lag import LagTracker
from crm_reporting.domain.summaries import summarize

Document = dict[str, Any]
TOPICS = [cev.TOPIC, pev.TOPIC, iev.TOPIC, poolev.TOPIC, dev.TOPIC]
POOL_TYPES = (poolev.RECYCLE_WARNING.name, poolev.RELEASE_DECIDED.name)
CONTACT_TYPES = (cev.CUSTOMER_CREATED.name, cev.CONTACT_ADDED.name, cev.CONTACT_CHANGED.name)


def ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def customer_state(c: cev.CustomerSnapshot) -> Document:
    address = c.address or cev.Address()
    return {
        "_id": c.customer_id,
        "customer_id": c.customer_id,
        "name": c.name,
        "kind": c.kind,
        "status": c.status,
        "merged_into": c.merged_into or "",
        "owner_id": c.owner_id or "",
        "department_path": c.department_path or "",
        "in_pool": c.in_pool,
        "industry": c.industry,
        "size": c.size,
        "region": address.province,
        "city": address.city,
        "source": c.source,
        "tier": c.tier,
        "lifecycle_stage": c.lifecycle_stage,
        "tags": list(c.tags),
        "contact_ids": None if c.contacts is None else [x.contact_id for x in c.contacts],
        "contact_count": c.contact_count,
        "created_ms": ms(c.created_at),
        "created_by": c.created_by,
        "updated_ms": ms(c.updated_at),
    }


def opportunity_state(o: pev.OpportunitySnapshot) -> Document:
    return {
        "_id": o.opportunity_id,
        "opportunity_id": o.opportunity_id,
        "name": o.name,
        "customer_id": o.customer_id,
        "amount": o.amount,
        "currency": o.currency,
        "probability": o.probability,
        "expected_close_date": iso(o.expected_close_date),
        "pipeline_id": o.pipeline_id,
        "stage_id": o.stage_id,
        "stage_name": o.stage_name,
        "stage_kind": o.stage_kind,
        "stage_entered_ms": ms(o.stage_entered_at),
        "status": o.status,
        "won_on": iso(o.won_on),
        "lost_on": iso(o.lost_on),
        "owner_id": o.owner_id,
        "department_path": o.department_path or "",
        "hidden": o.hidden,
        "created_ms": ms(o.created_at),
    }


def _reach(contact: cev.ContactData) -> Document:
    return {"contact_id": contact.contact_id, "reach": bool(contact.phones or contact.emails)}


class Projection:
    def __init__(self, generations: Generations, lag: LagTracker) -> None:
        self.generations = generations
        self.lag = lag

    def handlers(self) -> Mapping[str, Handler]:
        names = [t.name for topic in TOPICS for t in registry.for_topic(topic)]
        return {n: self.apply for n in names if not n.startswith("crm.pool.") or n in POOL_TYPES}

    async def apply(self, envelope: EventEnvelope) -> None:
        models = await self.generations.current()
        await self.apply_to(models, envelope)
        topic = registry.get(envelope.type)
        self.lag.observe(topic.topic if topic else "unknown", envelope.time)

    async def apply_to(self, models: ReadModels, envelope: EventEnvelope) -> None:
        t = envelope.type
        if t.startswith(("crm.user.", "crm.department.")):
            await models.directory.store(envelope)
            return
        fact: Document = {
            "_id": envelope.id,
            "type": t,
            "subject": envelope.subject,
            "t": ms(envelope.time),
            "actor": envelope.actor or "",
            "summary": summarize(t, envelope.data),
        }
        if t.startswith("crm.customer."):
            await self._customer(models, envelope, fact)
        elif t.startswith("crm.opportunity."):
            await self._opportunity(models, envelope, fact)
        elif t == pev.PIPELINE_CONFIGURED.name:
            p = pev.PIPELINE_CONFIGURED.parse(envelope).pipeline
            state = {"_id": p.pipeline_id, **p.model_dump(mode="json")}
            await apply_versioned(models.pipelines, envelope, state)
            return
        elif t == pev.TARGET_SET.name:
            target = pev.TARGET_SET.parse(envelope).target
            await apply_versioned(models.targets, envelope, {"_id": target.target_id, **target.model_dump(mode="json")})
            return
        elif t.startswith("crm.interaction."):
            await self._interaction(models, envelope, fact)
        elif t.startswith("crm.task."):
            task = iev.TaskSnapshot.model_validate(envelope.data["task"])
            await apply_versioned(
                models.tasks,
                envelope,
                {
                    "_id": task.task_id,
                    "assignee_id": task.assignee_id,
                    "assignee_department_path": task.assignee_department_path or "",
                    "customer_id": task.customer_id or "",
                    "status": task.status,
                    "hidden": task.hidden,
                    "due_ms": ms(task.due_at),
                    "title": task.title,
                },
            )
            fact.update(customer_id=task.customer_id or "", owner_id=task.assignee_id)
            fact["department_path"] = task.assignee_department_path or ""
        elif t.startswith("crm.feedback."):
            fb = iev.FeedbackSnapshot.model_validate(envelope.data["feedback"])
            fact.update(customer_id=fb.customer_id, owner_id=fb.reported_by)
            fact["department_path"] = fb.reporter_department_path or ""
        elif t in POOL_TYPES:
            fact.update(customer_id=envelope.data["customer_id"], owner_id=envelope.data.get("owner_id") or "")
            fact["department_path"] = ""
        else:
            return
        await models.add_fact(fact)

    async def _customer(self, models: ReadModels, envelope: EventEnvelope, fact: Document) -> None:
        t = envelope.type
        if t == cev.PURGED.name:
            purged = {"_id": envelope.subject, "customer_id": envelope.subject, "status": "purged"}
            await apply_versioned(models.customers, envelope, {**purged, "merged_into": "", "owner_id": ""})
            fact.update(customer_id=envelope.subject, owner_id="", department_path="")
            return
        snapshot = cev.CustomerSnapshot.model_validate(envelope.data["customer"])
        await apply_versioned(models.customers, envelope, customer_state(snapshot))
        fact.update(
            customer_id=snapshot.customer_id,
            owner_id=snapshot.owner_id or "",
            department_path=snapshot.department_path or "",
        )
        if t in CONTACT_TYPES:
            if t == cev.CUSTOMER_CREATED.name:
                contacts = cev.CUSTOMER_CREATED.parse(envelope).contacts
            else:
                contacts = [cev.ContactData.model_validate(envelope.data["contact"])]
            fact["contacts"] = [_reach(c) for c in contacts]
        if t == cev.CUSTOMER_UPDATED.name:
            fact["fields"] = [c.get("field") for c in envelope.data.get("changes") or []]
        if t == cev.MERGED.name:
            fact["merged_customer_id"] = envelope.data["merged_customer_id"]

    async def _opportunity(self, models: ReadModels, envelope: EventEnvelope, fact: Document) -> None:
        o = pev.OpportunitySnapshot.model_validate(envelope.data["opportunity"])
        await apply_versioned(models.opportunities, envelope, opportunity_state(o))
        fact.update(
            customer_id=o.customer_id,
            opportunity_id=o.opportunity_id,
            owner_id=o.owner_id,
            department_path=o.department_path or "",
            pipeline_id=o.pipeline_id,
        )
        move = envelope.data.get("move")
        if envelope.type == pev.OPPORTUNITY_CREATED.name:
            # Creation is the entry into the first stage.
            fact.update(to_stage_id=o.stage_id, from_stage_id="", at=ms(o.created_at), seconds_in_previous=None)
        elif move is not None:
            m = pev.StageMove.model_validate(move)
            fact.update(
                to_stage_id=m.to_stage_id,
                from_stage_id=m.from_stage_id or "",
                at=ms(m.moved_at),
                seconds_in_previous=m.time_in_previous_stage_seconds,
            )
        if envelope.type == pev.OPPORTUNITY_CUSTOMER_CHANGED.name:
            fact["previous_customer_id"] = envelope.data["previous_customer_id"]

    async def _interaction(self, models: ReadModels, envelope: EventEnvelope, fact: Document) -> None:
        if envelope.type == iev.INTERACTION_LOGGED.name and envelope.data.get("interaction") is None:
            logged = iev.INTERACTION_LOGGED.parse(envelope)  # an early event: flat fields only
            state: Document = {
                "_id": logged.interaction_id,
                "customer_id": logged.customer_id,
                "author_id": logged.author_id,
                "author_department_path": "",
                "channel": logged.channel,
                "occurred_ms": ms(logged.occurred_at),
                "status": "active",
                "hidden": False,
            }
        else:
            i = iev.InteractionSnapshot.model_validate(envelope.data["interaction"])
            state = {
                "_id": i.interaction_id,
                "customer_id": i.customer_id,
                "author_id": i.author_id,
                "author_department_path": i.author_department_path or "",
                "channel": i.channel,
                "occurred_ms": ms(i.occurred_at),
                "status": i.status,
                "hidden": i.hidden,
            }
        await apply_versioned(models.interactions, envelope, state)
        fact.update(
            customer_id=state["customer_id"],
            owner_id=state["author_id"],
            department_path=state["author_department_path"],
            at=state["occurred_ms"],
            channel=state["channel"],
        )
