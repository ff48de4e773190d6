"""The scheduler, the preview and a rep's countdown.

A run reads only what is due: per rule, range queries on two rule-independent, indexed
fields of the clocks (since when the owner has not followed up, since when no deal was
won), so rules apply as they are at the run, with no per-customer recompute after a
change; a draft rule is previewed the same way. Each warning and each decision is a
*notice* inserted with a deterministic id (customer, kind, deadline) together with
its event (one write, the outbox): when several replicas race, the insert of all but
one fails on the id, so each customer is warned once per deadline and decided once.
The clock is then marked (a write guarded by its ``rev``) so the next run skips it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import pool as ev
from crm_platform.events import EventEnvelope, EventType
from crm_platform.permissions import Permission
from crm_platform.tracing import current_traceparent
from crm_pool.adapters.repository import PoolRepository
from crm_pool.application.leads import LeadRecycling
from crm_pool.domain.recycling import (
    NEVER,
    POOL,
    Due,
    StagePlace,
    days_left,
    due,
    effective_recycle_at,
    epoch_ms,
    last_interaction,
    ms,
    path_within,
    reason_text,
    schedule,
    thresholds,
)

log = structlog.get_logger(__name__)
Document = dict[str, Any]


#: The longest a run leaves a clock alone without an event or a rule change moving it.
PARK_AT_MOST = timedelta(days=1)


def _fingerprint(rules: list[Document]) -> list[tuple[str, int]]:
    return sorted((r["rule_id"], int(r.get("version", 0))) for r in rules)


@dataclass
class RunReport:
    warned: int = 0
    decided: int = 0
    skipped: int = 0  # already handled by another replica, or changed meanwhile
    paused: bool = False  # not run: a rebuild of the clocks is under way
    leads_warned: int = 0
    leads_decided: int = 0


class Recycler:
    def __init__(
        self,
        repo: PoolRepository,
        clock: Clock,
        source: str,
        batch_size: int = 500,
        paused: Callable[[], Awaitable[bool]] | None = None,
        leads: LeadRecycling | None = None,
    ) -> None:
        self.repo = repo
        self.leads = leads
        self._paused = paused
        self.clock = clock
        self.source = source
        self.batch_size = batch_size
        self._context: tuple[list[Document], dict[str, StagePlace]] = ([], {})

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

    # --- the run ------------------------------------------------------------------------------

    async def run(self, now: datetime | None = None) -> RunReport:
        if self._paused is not None and await self._paused():
            log.info("pool run skipped: the clocks are being rebuilt")
            return RunReport(paused=True)
        now = now or self.clock.now()
        report = RunReport()
        live = await self.repo.live_rules()
        self._context = (live, await self.repo.stage_positions())
        fingerprint = _fingerprint(live)
        candidates = await self.candidates(live, now, parked=False)
        for i in range(0, len(candidates), self.batch_size):
            await asyncio.gather(*(self._handle(c, now, report) for c in candidates[i : i + self.batch_size]))
        if self.leads is not None:  # the leads nobody works, under the same rules (crm_pool.application.leads)
            report.leads_warned, report.leads_decided, skipped = await self.leads.run(live, now)
            report.skipped += skipped
        if _fingerprint(await self.repo.live_rules()) != fingerprint:
            # The rules changed during the run: what it parked may be wrong under the new ones.
            await self.repo.unpark_all()
        if report.warned or report.decided:
            log.info("pool run", warned=report.warned, decided=report.decided, skipped=report.skipped)
        return report

    async def candidates(
        self, rules: list[Document], at: datetime, department: str | None = None, parked: bool = True
    ) -> list[Document]:
        """Every clock past the warning threshold of some rule at ``at``: two range queries per rule.

        The thresholds come from the rules as they are now, on rule-independent indexed fields
        (``touch_ms``, ``won_ms``), so a rule change applies at the next run without touching
        any clock. Which rule governs a customer, and whether it is exempt, is decided per
        clock afterwards (:func:`due`). ``parked=False`` leaves out the clocks a run has already
        dealt with until their next step (see :meth:`_park`): only right for the current rules.
        """
        found: dict[str, Document] = {}
        for rule in rules:
            for field, limit in thresholds(rule, at).items():
                query: Document = {field: {"$lte": limit}}
                scope = rule.get("department_path")
                if department and (not scope or path_within(department, scope)):
                    scope = department  # the narrower of the two
                elif department and not path_within(scope, department):
                    continue  # the rule's subtree is outside the department asked about
                if scope:
                    query["department_path"] = {"$regex": f"^{re.escape(scope.rstrip('/'))}(/|$)"}
                if not parked:
                    query["parked_until_ms"] = {"$lte": epoch_ms(at)}
                async for clock in self.repo.clocks.find(query, batch_size=self.batch_size):
                    found.setdefault(clock["_id"], clock)
        return list(found.values())

    async def _handle(self, clock: Document, now: datetime, report: RunReport) -> None:
        rules, positions = self._context
        result = due(clock, rules, positions)
        if result.never:  # exempt, or no rule applies: looked at again after a change, or in a day
            await self._park(clock, now + PARK_AT_MOST)
            return
        if result.warn_at > now:  # governed by a laxer rule than the one whose query found it
            await self._park(clock, min(result.warn_at, now + PARK_AT_MOST))
            return
        key = result.deadline.isoformat()
        rule = next(r for r in rules if r["rule_id"] == result.rule_id)
        recycle_at = clock.get("recycle_at")
        if clock.get("warned_for") != key:
            await self._warn(clock, result, rule, now, report)
        elif clock.get("decided_for") == key:
            await self._park(clock, now + PARK_AT_MOST)  # the customers service's release will change it
        elif recycle_at is not None and ms(recycle_at) <= now:
            await self._decide(clock, result, rule, now, report)
        else:
            await self._park(clock, ms(recycle_at) if recycle_at is not None else now + PARK_AT_MOST)

    async def _park(self, clock: Document, until: datetime) -> None:
        """Leave the clock out of the runs until ``until``, or until an event or a rule change moves it.

        Without this every run would read again each customer already warned (K days' worth)
        or exempt; bounded to a day so that a park set from rules that changed meanwhile
        (a replica's run racing the change) can not hide a customer for long.
        """
        clock["parked_until_ms"] = epoch_ms(until)
        await self.repo.replace_clock(clock)  # if it changed meanwhile, that change unparked it

    async def _notice(
        self, notice_id: str, customer_id: str, doc: Document, event: tuple[str, EventEnvelope]
    ) -> Document:
        """Insert the notice with its event; if another replica did first, return theirs (no event)."""
        try:
            return await self.repo.notice_store.insert({"_id": notice_id, "customer_id": customer_id, **doc}, [event])
        except DuplicateKeyError:
            existing = await self.repo.notices.find_one({"_id": notice_id})
            return {**(existing or doc), "duplicate": True}

    async def _mark(self, clock: Document, key: str, fields: Document, park_until: datetime) -> None:
        """Record on the clock what was done for its deadline ``key`` (unless the deadline moved meanwhile)."""
        rules, positions = self._context  # loaded once per run
        for _ in range(8):
            if due(clock, rules, positions).deadline.isoformat() != key:
                return  # the deadline moved: the new one gets its own notice
            clock.update(fields)
            schedule(clock, due(clock, rules, positions))
            clock["parked_until_ms"] = epoch_ms(park_until)
            if await self.repo.replace_clock(clock):
                return
            fresh = await self.repo.get_clock(clock["_id"])
            if fresh is None:
                return
            clock = fresh

    async def _warn(self, clock: Document, result: Due, rule: Document, now: datetime, report: RunReport) -> None:
        key = result.deadline.isoformat()
        recycle_at = max(result.deadline, ms(now) + timedelta(days=int(rule.get("warn_days") or 0)))
        data = ev.RecycleWarning(
            customer_id=clock["_id"],
            customer_name=clock.get("name"),
            owner_id=clock["owner_id"],
            recycle_at=recycle_at,
            reason=cast(ev.RecycleReason, result.reason),  # set whenever a deadline is
            rule_id=rule["rule_id"],
            days_left=days_left(recycle_at, now),
        )
        notice = await self._notice(
            f"{clock['_id']}:warning:{key}",
            clock["_id"],
            {"kind": "warning", "deadline": result.deadline, "owner_id": clock["owner_id"], "recycle_at": recycle_at},
            self._event(ev.RECYCLE_WARNING, clock["_id"], data),
        )
        if notice.get("duplicate"):
            report.skipped += 1
        else:
            report.warned += 1
        await self._mark(
            clock,
            key,
            {"warned_for": key, "warned_at": now, "recycle_at": notice["recycle_at"]},
            park_until=ms(notice["recycle_at"]),
        )

    async def _decide(self, clock: Document, result: Due, rule: Document, now: datetime, report: RunReport) -> None:
        key = result.deadline.isoformat()
        data = ev.ReleaseDecided(
            customer_id=clock["_id"],
            owner_id=clock["owner_id"],
            basis=ev.RecycleBasis(owner_since=clock["owner_since"], last_interaction_at=last_interaction(clock)),
            reason=cast(ev.RecycleReason, result.reason),  # set whenever a deadline is
            reason_text=reason_text(result.reason, rule),
            rule_id=rule["rule_id"],
            deadline=result.deadline,
        )
        notice = await self._notice(
            f"{clock['_id']}:release:{key}",
            clock["_id"],
            {"kind": "release", "deadline": result.deadline, "owner_id": clock["owner_id"], "decided_at": now},
            self._event(ev.RELEASE_DECIDED, clock["_id"], data),
        )
        if notice.get("duplicate"):
            report.skipped += 1
        else:
            report.decided += 1
        await self._mark(clock, key, {"decided_for": key}, park_until=now + PARK_AT_MOST)

    # --- reading ------------------------------------------------------------------------------

    async def preview(
        self,
        principal: Principal,
        at: datetime,
        department: str | None,
        limit: int,
        draft: Document | None = None,
    ) -> list[Document]:
        """Who would be warned or recycled at ``at``, and why: under the current rules, or with
        ``draft`` in place of the rule for its department (a rule being considered, not saved)."""
        principal.require(Permission.pool_rules)
        now = self.clock.now()
        rules = await self.repo.live_rules()
        if draft is not None:
            rules = [r for r in rules if r.get("department_path") != draft.get("department_path")] + [draft]
        by_id = {r["rule_id"]: r for r in rules}
        positions = await self.repo.stage_positions()
        out: list[Document] = []
        for clock in await self.candidates(rules, at, department):
            if not principal.can_see_owned(clock.get("owner_id"), clock.get("department_path"), module=POOL):
                continue
            result = due(clock, rules, positions)
            if result.never or result.warn_at > at:
                continue
            rule = by_id.get(result.rule_id or "") or {}
            recycle_at = effective_recycle_at(clock, result, now, int(rule.get("warn_days") or 0))
            last = result.last_interaction_at
            out.append(
                {
                    "customer_id": clock["_id"],
                    "name": clock.get("name"),
                    "owner_id": clock.get("owner_id"),
                    "department_path": clock.get("department_path"),
                    "action": "recycle" if recycle_at <= at else "warn",
                    "deadline": result.deadline,
                    "recycle_at": recycle_at,
                    "rule_id": result.rule_id,
                    "rule_name": rule.get("name"),
                    "reason": result.reason,
                    "reason_text": reason_text(result.reason, rule),
                    "owner_since": clock.get("owner_since"),
                    "last_interaction_at": last,
                    "days_without_interaction": (
                        at - max(last, ms(clock["owner_since"])) if last else at - ms(clock["owner_since"])
                    ).days,
                    "last_won_at": result.last_won_at,
                }
            )
        out.sort(key=lambda i: (i["recycle_at"], i["customer_id"]))
        return out[:limit]

    async def my_customers(self, principal: Principal, limit: int) -> list[Document]:
        """The principal's customers, soonest to be recycled first, with the days left and the rule
        (worked out from the rules as they are now)."""
        now = self.clock.now()
        rules = await self.repo.live_rules()
        by_id = {r["rule_id"]: r for r in rules}
        positions = await self.repo.stage_positions()
        out: list[Document] = []
        async for clock in self.repo.clocks.find({"owner_id": principal.user_id}):
            result = due(clock, rules, positions)
            rule = by_id.get(result.rule_id or "") or {}
            key = result.deadline.isoformat()
            warned = not result.never and clock.get("warned_for") == key
            recycle_at = None
            if not result.never:
                recycle_at = ms(clock["recycle_at"]) if warned and clock.get("recycle_at") else result.deadline
            out.append(
                {
                    "customer_id": clock["_id"],
                    "name": clock.get("name"),
                    "recycle_at": recycle_at,
                    "days_left": None if recycle_at is None else days_left(recycle_at, now),
                    "warned": warned,
                    "rule_id": result.rule_id,
                    "rule_name": rule.get("name"),
                    "reason": result.reason,
                    "reason_text": reason_text(result.reason, rule) if not result.never else None,
                    "exempt": result.exempt,
                    "last_interaction_at": result.last_interaction_at,
                }
            )
        out.sort(key=lambda i: (i["recycle_at"] or NEVER, i["customer_id"]))
        return out[:limit]
