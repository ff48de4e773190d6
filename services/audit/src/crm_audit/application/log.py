"""The audit log's use cases: record an event, search, export (itself audited), purge by retention."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from crm_audit.adapters.repository import AuditRepository
from crm_audit.domain.entries import Entry, bound, entry_for, to_document, to_view
from crm_audit.domain.search import Search, encode_cursor
from crm_platform.clock import Clock
from crm_platform.events import EventEnvelope

log = structlog.get_logger(__name__)
Document = dict[str, Any]


@dataclass(frozen=True)
class Page:
    items: list[Document]
    next_cursor: str | None


class ExportTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} entries match")
        self.limit = limit


class AuditLog:
    def __init__(self, repo: AuditRepository, clock: Clock, source: str) -> None:
        self.repo = repo
        self.clock = clock
        self.source = source

    async def record(self, envelope: EventEnvelope) -> bool:
        """Keep the entry the event makes, once; False when it makes none or was kept already."""
        entry = entry_for(envelope)
        if entry is None:
            return False
        return await self._keep(entry)

    async def _keep(self, entry: Entry) -> bool:
        name = await self.repo.actor_name(entry.actor_id) if entry.actor_id else None
        return await self.repo.insert(to_document(entry, name))

    async def search(self, search: Search, limit: int) -> Page:
        query = search.query()
        docs = await self.repo.newest_first(query, limit + 1)
        more = len(docs) > limit
        docs = docs[:limit]
        next_cursor = encode_cursor(docs[-1]["k"]) if more and docs else None
        return Page([to_view(d) for d in docs], next_cursor)

    async def export(self, search: Search, max_rows: int, actor_id: str, client_address: str | None) -> list[Document]:
        """Every matching entry, newest first, and an entry of its own saying who exported what.

        The export's entry is stored before the rows are handed back: an export that is not
        recorded does not leave. More than ``max_rows`` matches: ExportTooLarge, nothing leaves.
        """
        query = search.query()
        docs = await self.repo.newest_first(query, max_rows + 1)
        if len(docs) > max_rows:
            raise ExportTooLarge(max_rows)
        entry = Entry(
            entry_id=str(uuid.uuid4()),
            at=self.clock.now(),
            action="audit.exported",
            target_type="audit_log",
            target_id="entries",
            actor_id=actor_id,
            client_address=client_address,
            source=self.source,
            event_type="",
            details={"filter": search.filters(), "rows": len(docs)},
        )
        await self._keep(entry)
        return [to_view(d) for d in docs]

    async def purge(self, retention_days: int, batch_size: int) -> int:
        """Delete the entries older than the retention, oldest first; returns how many."""
        cutoff = bound(self.clock.now() - timedelta(days=retention_days))
        total = 0
        while True:
            deleted = await self.repo.purge_before(cutoff, batch_size)
            total += deleted
            if deleted < batch_size:
                break
        if total:
            log.info("audit entries purged by retention", deleted=total, retention_days=retention_days)
        return total
