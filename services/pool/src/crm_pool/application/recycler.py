"""The scheduler, the preview and a rep's countdown.

A run reads only what is due, with range queries on the precomputed, indexed
``warn_due``/``release_due`` of the clocks. Each warning and each decision is a
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
from typing import Any

import structlog
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from crm_platform.auth import Principal, Role
from crm_platform.clock import Clock
from crm_platform.contracts import pool as ev
from crm_platform.events import EventEnvelope, EventType
from crm_platform.listing import all_of, find_sorted, parse_sort
from crm_platform.tracing import current_traceparent
from crm_pool.adapters.repository import PoolRepository
from crm_pool.domain.recycling import (
    NEVER,
    days_left,
    due,
    effective_recycle_at,
    epoch_ms,
    ms,
    reason_text,
    schedule,
)

log = structlog.get_logger(__name__)
Document = dict[str, Any]


@dataclass
class RunReport:
    warned: int = 0
    decided: int = 0
    skipped: int = 0  # already handled by another replica, or changed meanwhile
    paused: bool = False  # not run: a rebuild of the clocks is under way


class Recycler:
    def __init__(
        self,
        repo: PoolRepository,
        clock: Clock,
        source: str,
        batch_size: int = 500,
        settle: Callable[[], Awaitable[None]] | None = None,
        paused: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.repo = repo
        self._settle = settle
        self._paused = paused
        self.clock = clock
        self.source = source
        self.batch_size = batch_size
        self._context: tuple[list[Document], dict[str, int]] = ([], {})

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
        if self._settle is not None:
            await self._settle()  # deadlines recomputed after a rule change first
        now = now or self.clock.now()
        report = RunReport()
        live = await self.repo.live_rules()
        self._context = (live, await self.repo.stage_positions())
        rules = {r["rule_id"]: r for r in live}
        await self._each_due("warn_due", now, lambda c: self._warn(c, now, rules, report))
        await self._each_due("release_due", now, lambda c: self._decide(c, now, rules, report))
        if report.warned or report.decided:
            log.info("pool run", warned=report.warned, decided=report.decided, skipped=report.skipped)
        return report

    async def _each_due(self, field: str, now: datetime, handle: Any) -> None:
        seen: set[str] = set()
        indexed, moment = f"{field}_ms", epoch_ms(now)
        while True:
            page = [
                c
                async for c in self.repo.find_clocks({indexed: {"$lte": moment}}, [(indexed, 1)], self.batch_size)
                if c["_id"] not in seen
            ]
            if not page:
                return
            seen.update(c["_id"] for c in page)
            await asyncio.gather(*(handle(c) for c in page))

    async def _notice(
        self, notice_id: str, customer_id: str, doc: Document, event: tuple[str, EventEnvelope]
    ) -> Document:
        """Insert the notice with its event; if another replica did first, return theirs (no event)."""
        try:
            return await self.repo.notice_store.insert({"_id": notice_id, "customer_id": customer_id, **doc}, [event])
        except DuplicateKeyError:
            existing = await self.repo.notices.find_one({"_id": notice_id})
            return {**(existing or doc), "duplicate": True}

    async def _mark(self, clock: Document, fields: Document) -> None:
        """Record on the clock what was done for its deadline; a clock that moved meanwhile is rescheduled."""
        for _ in range(8):
            if clock.get("deadline") is None or clock["deadline"].isoformat() != fields["for"]:
                return  # the deadline moved: the new one gets its own notice
            for name, value in fields.items():
                if name != "for":
                    clock[name] = value
            rules, positions = self._context  # loaded once per run
            schedule(clock, due(clock, rules, positions))
            if await self.repo.replace_clock(clock):
                return
            fresh = await self.repo.get_clock(clock["_id"])
            if fresh is None:
                return
            clock = fresh

    async def _reschedule(self, clock: Document) -> None:
        rules, positions = self._context
        schedule(clock, due(clock, rules, positions))
        await self.repo.replace_clock(clock)  # if it moved meanwhile, that change rescheduled it

    async def _warn(self, clock: Document, now: datetime, rules: dict[str, Document], report: RunReport) -> None:
        rule = rules.get(clock.get("rule_id") or "")
        if rule is None or clock["deadline"] >= NEVER:
            await self._reschedule(clock)  # its rule is gone: out of the due set, so it blocks no page
            return
        key = clock["deadline"].isoformat()
        recycle_at = max(ms(clock["deadline"]), ms(now) + timedelta(days=int(rule.get("warn_days") or 0)))
        data = ev.RecycleWarning(
            customer_id=clock["_id"],
            customer_name=clock.get("name"),
            owner_id=clock["owner_id"],
            recycle_at=recycle_at,
            reason=clock["reason"],
            rule_id=rule["rule_id"],
            days_left=days_left(recycle_at, now),
        )
        notice = await self._notice(
            f"{clock['_id']}:warning:{key}",
            clock["_id"],
            {"kind": "warning", "deadline": clock["deadline"], "owner_id": clock["owner_id"], "recycle_at": recycle_at},
            self._event(ev.RECYCLE_WARNING, clock["_id"], data),
        )
        if notice.get("duplicate"):
            report.skipped += 1
        else:
            report.warned += 1
        await self._mark(clock, {"for": key, "warned_for": key, "warned_at": now, "recycle_at": notice["recycle_at"]})

    async def _decide(self, clock: Document, now: datetime, rules: dict[str, Document], report: RunReport) -> None:
        rule = rules.get(clock.get("rule_id") or "")
        if rule is None or clock["deadline"] >= NEVER or not clock.get("owner_id"):
            await self._reschedule(clock)
            return
        key = clock["deadline"].isoformat()
        data = ev.ReleaseDecided(
            customer_id=clock["_id"],
            owner_id=clock["owner_id"],
            basis=ev.RecycleBasis(
                owner_since=clock["owner_since"], last_interaction_at=clock.get("last_interaction_at")
            ),
            reason=clock["reason"],
            reason_text=reason_text(clock["reason"], rule),
            rule_id=rule["rule_id"],
            deadline=clock["deadline"],
        )
        notice = await self._notice(
            f"{clock['_id']}:release:{key}",
            clock["_id"],
            {"kind": "release", "deadline": clock["deadline"], "owner_id": clock["owner_id"], "decided_at": now},
            self._event(ev.RELEASE_DECIDED, clock["_id"], data),
        )
        if notice.get("duplicate"):
            report.skipped += 1
        else:
            report.decided += 1
        await self._mark(clock, {"for": key, "decided_for": key})

    # --- reading ------------------------------------------------------------------------------

    async def preview(self, principal: Principal, at: datetime, department: str | None, limit: int) -> list[Document]:
        """Who would be warned or recycled at ``at`` under the current rules, and why."""
        principal.require_role(Role.admin, Role.manager)
        now = self.clock.now()
        rules = await self.repo.live_rules()
        by_id = {r["rule_id"]: r for r in rules}
        positions = await self.repo.stage_positions()
        query: Document = {"warn_at_ms": {"$lte": epoch_ms(at)}}
        if department:
            query["department_path"] = {"$regex": f"^{re.escape(department.rstrip('/'))}(/|$)"}
        # Flat query, the visibility alternatives as separate indexed queries (listing.find_sorted).
        query = all_of(query, principal.mongo_visibility())
        keys = parse_sort(None, {"warn_at": "warn_at_ms", "id": "_id"}, "warn_at,id")
        out: list[Document] = []
        for clock in await find_sorted(self.repo.clocks, query, keys, limit):
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
        return out

    async def my_customers(self, principal: Principal, limit: int) -> list[Document]:
        """The principal's customers, soonest to be recycled first, with the days left and the rule."""
        now = self.clock.now()
        by_id = {r["rule_id"]: r for r in await self.repo.live_rules()}
        out: list[Document] = []
        async for clock in self.repo.find_clocks({"owner_id": principal.user_id}, [("deadline", 1), ("_id", 1)], limit):
            rule = by_id.get(clock.get("rule_id") or "") or {}
            never = clock.get("deadline") is None or clock["deadline"] >= NEVER
            recycle_at = None
            if not never:
                recycle_at = (
                    clock.get("recycle_at")
                    if clock.get("warned_for") == clock["deadline"].isoformat()
                    else clock["deadline"]
                )
            out.append(
                {
                    "customer_id": clock["_id"],
                    "name": clock.get("name"),
                    "recycle_at": recycle_at,
                    "days_left": None if recycle_at is None else days_left(ms(recycle_at), now),
                    "warned": bool(not never and clock.get("warned_for") == clock["deadline"].isoformat()),
                    "rule_id": clock.get("rule_id"),
                    "rule_name": rule.get("name"),
                    "reason": clock.get("reason"),
                    "reason_text": reason_text(clock.get("reason"), rule) if not never else None,
                    "exempt": clock.get("exempt"),
                    "last_interaction_at": clock.get("last_owner_interaction_at"),
                }
            )
        return out
