"""The tickets' SLA scheduler: ``crm.ticket.escalated`` and ``crm.ticket.sla_breached``, each once
per target (first response, resolution).

Every pass asks the store for tickets whose ``s.check_at`` (epoch ms, indexed: the earliest
escalation or breach moment still armed, see domain/tickets.py) has come, and claims each action
with a guarded write through the :class:`VersionedStore`: the moment it was recorded goes on the
ticket together with the event in its outbox, in one replace that only succeeds if the ticket's
version has not moved. Of several schedulers racing for one ticket (replicas, or a restarted
process catching up), exactly one write wins; the others re-read the ticket, find the action
recorded and write nothing. Time comes from the injectable :class:`Clock`. Modelled on the
interactions service's task scheduler.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_platform.clock import Clock
from crm_platform.contracts import sales as ev
from crm_platform.events import EventFactory
from crm_platform.store import Change
from crm_sales.adapters.tickets import TicketRepository
from crm_sales.domain import tickets as rules

Document = dict[str, Any]
ACTOR = "system:tickets-scheduler"


class TicketScheduler:
    def __init__(self, repo: TicketRepository, clock: Clock, source: str, *, batch_size: int = 200) -> None:
        self.repo = repo
        self.clock = clock
        self.event = EventFactory(source, clock)
        self.batch_size = batch_size

    async def tick(self) -> int:
        """One pass: record every escalation and breach whose moment has come; returns how many this scheduler did."""
        now = self.clock.now()
        done = 0
        while True:
            due = await self.repo.due(now, self.batch_size)
            batch = 0
            for ticket_id in due:
                while await self._claim_one(ticket_id, now):
                    batch += 1
            done += batch
            # A full batch may hide more; a batch where others won every claim must not spin.
            if len(due) < self.batch_size or batch == 0:
                return done

    async def _claim_one(self, ticket_id: str, now: datetime) -> bool:
        claimed: list[rules.Action] = []

        def decide(doc: Document, version: int) -> Change:
            claimed.clear()  # mutate calls us again on a fresher copy if another writer got in first
            action = rules.due_action(doc, now)
            if action is None:
                return Change(None)  # nothing due, or another scheduler recorded it first
            rules.record(doc, action, now)
            rules.refresh(doc)
            claimed.append(action)
            kind, target = action
            event_type = ev.TICKET_ESCALATED if kind == "escalate" else ev.TICKET_SLA_BREACHED
            data = event_type.data_model(
                ticket=rules.snapshot(doc, version), target=target, due_at=rules.due_at(doc, target)
            )
            return Change(doc, [self.event(event_type, doc["_id"], data, version, ACTOR)])

        await self.repo.store.mutate(ticket_id, decide)
        return bool(claimed)
