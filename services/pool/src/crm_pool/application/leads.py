"""Pool rules apply to leads: a clock per lead from ``crm.leads.v1``, warnings and release decisions.

The clock (:mod:`crm_pool.adapters.lead_clocks`) keeps the lead's owner, department, status,
version and when it was last worked: entered, claimed or assigned, moved to another status, or
followed up (the lead's ``last_followup_at``, counted by the leads service from the
interactions). Its indexed ``work_ms`` is rule-independent, so a run reads only what is due:
per rule with lead settings, one index range ``work_ms <= at - (N - K) days``, read in pages
(a cursor with ``batch_size``). Clocks a run has dealt with are parked until their next step,
so an idle run reads nothing again.

A warning (``crm.pool.lead_recycle_warning``) and a decision (``crm.pool.lead_release_decided``)
are each a notice inserted with a deterministic id together with its event (one write, the
outbox): of several replicas racing, one insert wins. The decision carries the lead's version
the pool saw; the leads service releases the lead only if it is still at that version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from crm_platform.auth import Principal
from crm_platform.clock import Clock, as_utc
from crm_platform.consumer import Handler
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pool as ev
from crm_platform.events import EventEnvelope, EventType
from crm_platform.permissions import Permission
from crm_platform.tracing import current_traceparent
from crm_pool.adapters.lead_clocks import LeadClocks
from crm_pool.adapters.repository import PoolRepository
from crm_pool.domain.lead_clock import (
    LeadDue,
    decision_key,
    lead_due,
    lead_rule,
    lead_threshold,
    reason_text,
    recycle_at,
    work_ms,
)
from crm_pool.domain.recycling import POOL, days_left, epoch_ms, ms, path_within

Document = dict[str, Any]

#: The lead events after which the lead counts as worked at the event's time.
WORK_EVENTS = {lev.LEAD_CREATED.name, lev.LEAD_OWNER_CHANGED.name, lev.LEAD_STATUS_CHANGED.name}
#: Every lead event (each carries the whole lead): the clock follows them all, by version.
LEAD_EVENTS = (
    lev.LEAD_CREATED,
    lev.LEAD_UPDATED,
    lev.LEAD_STATUS_CHANGED,
    lev.LEAD_OWNER_CHANGED,
    lev.LEAD_DELETED,
    lev.LEAD_FOLLOWED_UP,
    lev.LEAD_CONVERSION_REQUESTED,
    lev.LEAD_CONVERSION_PROGRESSED,
    lev.LEAD_CONVERTED,
    lev.LEAD_CONVERSION_FAILED,
)
#: The longest a run leaves a lead clock alone without an event or a rule change moving it.
PARK_AT_MOST = timedelta(days=1)


def apply_event(clock: Document | None, envelope: EventEnvelope) -> Document | None:
    """The lead clock after ``envelope`` (None: the event is stale or repeated, nothing changes)."""
    if clock is not None and envelope.aggregateversion <= int(clock.get("version") or 0):
        return None
    lead = lev.LeadSnapshot.model_validate(envelope.data["lead"])
    out: Document = dict(clock or {"_id": lead.lead_id, "worked_at": None})
    out.update(
        company_name=lead.company_name,
        owner_id=lead.owner_id,
        in_pool=lead.owner_id is None,
        department_path=lead.department_path,
        status=lead.status,
        deleted=lead.deleted,
        version=envelope.aggregateversion,
    )
    moments = [ms(as_utc(out["worked_at"]))] if out.get("worked_at") is not None else []
    if envelope.type in WORK_EVENTS or clock is None:
        moments.append(ms(as_utc(envelope.time)))
    if lead.last_followup_at is not None:
        moments.append(ms(as_utc(lead.last_followup_at)))
    out["worked_at"] = max(moments) if moments else None
    out["work_ms"] = work_ms(out)
    out["parked_until_ms"] = 0  # changed: the next run looks at it again
    return out


class LeadRecycling:
    def __init__(self, repo: PoolRepository, clocks: LeadClocks, clock: Clock, source: str, batch_size: int) -> None:
        self.repo = repo
        self.clocks = clocks
        self.clock = clock
        self.source = source
        self.batch_size = batch_size

    # --- the clock, from crm.leads.v1 ---------------------------------------------------------

    def handlers(self) -> Mapping[str, Handler]:
        return {t.name: self.on_lead_event for t in LEAD_EVENTS}

    async def on_lead_event(self, envelope: EventEnvelope) -> None:
        lead_id = str(envelope.data["lead"]["lead_id"])
        for _ in range(16):
            current = await self.clocks.get(lead_id)
            new = apply_event(current, envelope)
            if new is None:
                return
            if current is None:
                try:
                    await self.clocks.insert(new)
                    return
                except DuplicateKeyError:
                    continue  # another event of the lead made it first: apply on top of it
            if await self.clocks.replace(new):
                return
        raise RuntimeError(f"lead clock {lead_id} changing too fast")

    # --- the run ------------------------------------------------------------------------------

    def _event(self, event_type: EventType[Any], subject: str, data: BaseModel) -> tuple[str, EventEnvelope]:
        return event_type.topic, event_type.build(
            source=self.source,
            subject=subject,
            data=data,
            aggregate_version=1,
            time=self.clock.now(),
            actor=ev.SYSTEM_ACTOR,
            traceparent=current_traceparent.get(),
        )

    async def candidates(
        self, rules: list[Document], at: datetime, department: str | None = None, parked: bool = True
    ) -> list[Document]:
        """Every lead clock past the warning threshold of some rule at ``at``: one index range per rule."""
        found: dict[str, Document] = {}
        for rule in rules:
            limit = lead_threshold(rule, at)
            if limit is None:
                continue
            query: Document = {"work_ms": {"$lte": limit}}
            scope = rule.get("department_path")
            if department and (not scope or path_within(department, scope)):
                scope = department
            elif department and not path_within(scope, department):
                continue
            if scope:
                query["department_path"] = {"$regex": f"^{re.escape(scope.rstrip('/'))}(/|$)"}
            if not parked:
                query["parked_until_ms"] = {"$lte": epoch_ms(at)}
            async for clock in self.clocks.collection.find(query, batch_size=self.batch_size):
                found.setdefault(clock["_id"], clock)
        return list(found.values())

    async def run(self, rules: list[Document], now: datetime) -> tuple[int, int, int]:
        """Warn and decide what is due at ``now``; (warned, decided, skipped)."""
        counts = [0, 0, 0]
        for clock in await self.candidates(rules, now, parked=False):
            await self._handle(clock, rules, now, counts)
        return counts[0], counts[1], counts[2]

    async def _handle(self, clock: Document, rules: list[Document], now: datetime, counts: list[int]) -> None:
        result = lead_due(clock, rules)
        if result.never:
            await self._park(clock, now + PARK_AT_MOST)
            return
        if result.warn_at > now:  # governed by a laxer rule than the one whose range found it
            await self._park(clock, min(result.warn_at, now + PARK_AT_MOST))
            return
        rule = next(r for r in rules if r["rule_id"] == result.rule_id)
        key = result.deadline.isoformat()
        due_at = clock.get("recycle_at")
        if clock.get("warned_for") != key:
            await self._warn(clock, result, rule, now, counts)
        elif clock.get("decided_for") == decision_key(result, int(clock.get("version") or 0)):
            await self._park(clock, now + PARK_AT_MOST)  # the leads service's release will change it
        elif due_at is not None and ms(as_utc(due_at)) <= now:
            await self._decide(clock, result, rule, now, counts)
        else:
            await self._park(clock, ms(as_utc(due_at)) if due_at is not None else now + PARK_AT_MOST)

    async def _park(self, clock: Document, until: datetime) -> None:
        clock["parked_until_ms"] = epoch_ms(until)
        await self.clocks.replace(clock)  # if it changed meanwhile, that change unparked it

    async def _notice(self, notice_id: str, lead_id: str, doc: Document, event: tuple[str, EventEnvelope]) -> Document:
        try:
            return await self.repo.notice_store.insert({"_id": notice_id, "lead_id": lead_id, **doc}, [event])
        except DuplicateKeyError:
            existing = await self.repo.notices.find_one({"_id": notice_id})
            return {**(existing or doc), "duplicate": True}

    async def _mark(self, clock: Document, version: int, fields: Document, park_until: datetime) -> None:
        """Record on the clock what was done, unless the lead moved on meanwhile (its new state decides then)."""
        for _ in range(8):
            if int(clock.get("version") or 0) != version:
                return
            clock.update(fields)
            clock["parked_until_ms"] = epoch_ms(park_until)
            if await self.clocks.replace(clock):
                return
            fresh = await self.clocks.get(clock["_id"])
            if fresh is None:
                return
            clock = fresh

    async def _warn(self, clock: Document, result: LeadDue, rule: Document, now: datetime, counts: list[int]) -> None:
        key = result.deadline.isoformat()
        when = recycle_at(result, now, int(rule.get("lead_warn_days") or 0))
        data = ev.LeadRecycleWarning(
            lead_id=clock["_id"],
            company_name=clock.get("company_name"),
            owner_id=clock["owner_id"],
            recycle_at=when,
            rule_id=rule["rule_id"],
            days_left=days_left(when, now),
        )
        notice = await self._notice(
            f"lead:{clock['_id']}:warning:{key}",
            clock["_id"],
            {"kind": "lead_warning", "deadline": result.deadline, "owner_id": clock["owner_id"], "recycle_at": when},
            self._event(ev.LEAD_RECYCLE_WARNING, clock["_id"], data),
        )
        counts[2 if notice.get("duplicate") else 0] += 1
        stored_at = ms(as_utc(notice["recycle_at"]))
        fields = {"warned_for": key, "warned_at": now, "recycle_at": stored_at}
        await self._mark(clock, int(clock.get("version") or 0), fields, park_until=stored_at)

    async def _decide(self, clock: Document, result: LeadDue, rule: Document, now: datetime, counts: list[int]) -> None:
        version = int(clock.get("version") or 0)
        key = decision_key(result, version)
        data = ev.LeadReleaseDecided(
            lead_id=clock["_id"],
            owner_id=clock["owner_id"],
            lead_version=version,
            last_worked_at=ms(as_utc(clock["worked_at"])),
            reason_text=reason_text(rule),
            rule_id=rule["rule_id"],
            deadline=result.deadline,
        )
        notice = await self._notice(
            f"lead:{clock['_id']}:release:{key}",
            clock["_id"],
            {"kind": "lead_release", "deadline": result.deadline, "owner_id": clock["owner_id"], "decided_at": now},
            self._event(ev.LEAD_RELEASE_DECIDED, clock["_id"], data),
        )
        counts[2 if notice.get("duplicate") else 1] += 1
        await self._mark(clock, version, {"decided_for": key}, park_until=now + PARK_AT_MOST)

    # --- the preview --------------------------------------------------------------------------

    async def preview(
        self, principal: Principal, at: datetime, department: str | None, limit: int, draft: Document | None = None
    ) -> list[Document]:
        """The leads that would be warned or recycled at ``at``, and why: under the current rules, or with
        ``draft`` in place of the rule of its department."""
        principal.require(Permission.pool_rules)
        now = self.clock.now()
        rules = await self.repo.live_rules()
        if draft is not None:
            rules = [r for r in rules if r.get("department_path") != draft.get("department_path")] + [draft]
        out: list[Document] = []
        for clock in await self.candidates(rules, at, department):
            if not principal.can_see_owned(clock.get("owner_id"), clock.get("department_path"), module=POOL):
                continue
            result = lead_due(clock, rules)
            if result.never or result.warn_at > at:
                continue
            rule = lead_rule(rules, clock.get("department_path")) or {}
            warned = clock.get("warned_for") == result.deadline.isoformat() and clock.get("recycle_at") is not None
            when = (
                ms(as_utc(clock["recycle_at"]))
                if warned
                else max(
                    result.deadline, max(now, result.warn_at) + timedelta(days=int(rule.get("lead_warn_days") or 0))
                )
            )
            worked = ms(as_utc(clock["worked_at"]))
            out.append(
                {
                    "lead_id": clock["_id"],
                    "company_name": clock.get("company_name"),
                    "owner_id": clock.get("owner_id"),
                    "department_path": clock.get("department_path"),
                    "status": clock.get("status"),
                    "action": "recycle" if when <= at else "warn",
                    "deadline": result.deadline,
                    "recycle_at": when,
                    "rule_id": result.rule_id,
                    "rule_name": rule.get("name"),
                    "reason_text": reason_text(rule),
                    "last_worked_at": worked,
                    "days_without_work": (at - worked).days,
                }
            )
        out.sort(key=lambda i: (i["recycle_at"], i["lead_id"]))
        return out[:limit]
