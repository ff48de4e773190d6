"""The reminder and overdue scheduler: ``crm.task.reminder_due`` and ``crm.task.overdue``, each once.

Every pass asks the store for tasks whose ``next_fire_at`` has come (the earliest
notice a task still has armed; see domain/tasks.py) and claims each notice with a
guarded write through the :class:`VersionedStore`: the time it went out is written
on the task together with the event in its outbox, in one replace that only
succeeds if the task's version has not moved. Of several schedulers racing for one
task (replicas, or a restarted process catching up), exactly one write wins; the
others re-read the task, find the notice already sent and write nothing. A crash
cannot separate "sent" from "published": both are the same write, and the outbox
relay publishes what it holds after a restart.

Time comes from an injectable :class:`Clock`, so tests move it instead of waiting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from crm_interactions.adapters.repository import Repository
from crm_interactions.domain import tasks as rules
from crm_platform.clock import Clock
from crm_platform.contracts import interactions as ev
from crm_platform.events import EventFactory
from crm_platform.store import Change

log = structlog.get_logger(__name__)
Document = dict[str, Any]
ACTOR = "system:interactions-scheduler"


class TaskScheduler:
    def __init__(
        self,
        repo: Repository,
        clock: Clock,
        event: EventFactory,
        *,
        batch_size: int = 200,
    ) -> None:
        self.repo = repo
        self.clock = clock
        self.event = event
        self.batch_size = batch_size

    async def tick(self) -> int:
        """One pass: send every notice whose time has come; returns how many this scheduler sent."""
        now = self.clock.now()
        sent = 0
        while True:
            due = await self.repo.due_tasks(now, self.batch_size)
            batch = 0
            for task_id in due:
                batch += await self.fire(task_id, now)
            sent += batch
            # A full batch may hide more; a batch where others won every claim must not spin.
            if len(due) < self.batch_size or batch == 0:
                return sent

    async def fire(self, task_id: str, now: datetime) -> int:
        """Send the task's due notices (reminder, then overdue), each as its own version and event."""
        sent = 0
        while await self._claim_one(task_id, now):
            sent += 1
        return sent

    async def _claim_one(self, task_id: str, now: datetime) -> bool:
        """Claim and send the first due notice of one task; False if there is none (or another scheduler won)."""
        claimed: list[rules.Notice] = []

        def decide(doc: Document, version: int) -> Change:
            claimed.clear()  # mutate calls us again on a fresher copy if another writer got in first
            notice = rules.due_notice(doc, now)
            if notice is None:
                return Change(None)  # nothing due, or another scheduler sent it first
            rules.mark_sent(doc, notice, now)
            claimed.append(notice)
            event_type = ev.TASK_REMINDER_DUE if notice == "reminder_due" else ev.TASK_OVERDUE
            data = event_type.data_model(task=rules.snapshot(doc))
            return Change(doc, [self.event(event_type, doc["_id"], data, version, ACTOR)])

        await self.repo.task_store.mutate(task_id, decide)
        return bool(claimed)

    # --- the loop ------------------------------------------------------------------------------
