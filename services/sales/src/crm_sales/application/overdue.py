"""The overdue scheduler: ``crm.contract.instalment_overdue``, once per instalment.

Every pass asks the store for contracts whose ``next_due_day`` (an integer day: the earliest due
day of an instalment not paid and not yet reported; index ``idx_next_due_day``) is before today,
and claims each with a guarded write through the :class:`VersionedStore`: the instalments are
marked reported together with their events in the outbox, in one replace that only succeeds if
the contract's version has not moved. Of several schedulers racing (replicas, a restarted process)
exactly one write wins; the others re-read, find nothing left to report and write nothing. The
clock is injectable, so tests move it instead of waiting. "Today" is the date in the organisation's
business time zone (CRM_SALES_BUSINESS_TIMEZONE, default Asia/Shanghai), not UTC's.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from crm_platform.clock import Clock
from crm_platform.contracts import sales as ev
from crm_platform.events import EventFactory
from crm_platform.store import Change
from crm_sales.adapters.contracts import ContractRepository
from crm_sales.application.contracts import DEFAULT_ZONE, business_day
from crm_sales.domain import contracts as rules
from crm_sales.domain import receivables as money_rules

Document = dict[str, Any]
ACTOR = "system:sales-overdue-scheduler"


class OverdueScheduler:
    def __init__(
        self,
        repo: ContractRepository,
        clock: Clock,
        event: EventFactory,
        *,
        batch_size: int = 200,
        zone: ZoneInfo = DEFAULT_ZONE,
    ) -> None:
        self.repo = repo
        self.zone = zone
        self.clock = clock
        self.event = event
        self.batch_size = batch_size

    async def tick(self) -> int:
        """One pass: report every instalment that became overdue; returns how many this one reported."""
        today = business_day(self.clock, self.zone)  # due on day D: overdue from D+1 00:00 there
        sent = 0
        while True:
            due = await self.repo.overdue_contracts(money_rules.day_number(today), self.batch_size)
            batch = 0
            for contract_id in due:
                batch += await self.fire(contract_id, today)
            sent += batch
            if len(due) < self.batch_size or batch == 0:
                return sent

    async def fire(self, contract_id: str, today: date) -> int:
        claimed: list[Document] = []

        def decide(doc: Document, version: int) -> Change:
            claimed.clear()  # mutate calls again on a fresher copy if another writer got in first
            found = money_rules.overdue_now(doc, today)
            if not found:
                if doc.get("next_due_day") != money_rules.next_due_day(doc):
                    money_rules.refresh(doc)  # an old key: put it right without an event
                    return Change(doc)
                return Change(None)
            claimed.extend(found)
            snapshot = rules.snapshot(doc, version)
            events = [
                self.event(
                    ev.CONTRACT_INSTALMENT_OVERDUE,
                    doc["_id"],
                    ev.ContractInstalmentOverdue(
                        contract=snapshot,
                        owner_id=doc["owner_id"],
                        customer_name=doc.get("customer_name"),
                        instalment=money_rules.instalment_state(doc, item),
                        instalment_no=doc["plan"].index(item) + 1,
                        days_overdue=(today - date.fromisoformat(item["due_date"])).days,
                    ),
                    version,
                    ACTOR,
                )
                for item in found
            ]
            return Change(doc, events)

        await self.repo.store.mutate(contract_id, decide)
        return len(claimed)
