"""Export approval's use cases: the policy (read, change), holding an export as a request,
answering it, and downloading it once approved.

Every change is one write of its document with its event (the outbox): the policy's
``crm.customer_export_policy.changed``, the request's ``crm.customer_export_request.*``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from crm_customers.adapters.export_requests import ExportApprovalStore
from crm_customers.domain import export_approval as rules
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import export_approval as ev
from crm_platform.errors import NotFound
from crm_platform.events import EventFactory
from crm_platform.outbox import epoch_ms
from crm_platform.store import Change

Document = dict[str, Any]
#: The most pending requests one approver's list shows (oldest paths first, then by time).
PENDING_LIMIT = 200
#: The most of one requester's requests their list shows (newest first).
MINE_LIMIT = 50


class ExportApprovals:
    def __init__(self, store: ExportApprovalStore, clock: Clock, events: EventFactory, valid_for: timedelta) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.valid_for = valid_for

    async def ensure_indexes(self) -> None:
        await self.store.ensure_indexes(rules.POLICY_ID)

    # --- the policy ------------------------------------------------------------------------------

    async def policy(self) -> Document:
        doc = await self.store.policy(rules.POLICY_ID)
        if doc is None:
            raise NotFound("The export policy is not set up yet; retry in a moment.")
        return doc

    async def threshold(self) -> int | None:
        value = (await self.policy()).get("approval_above_rows")
        return None if value is None else int(value)

    async def set_policy(
        self, principal: Principal, approval_above_rows: int | None, expected_version: int | None
    ) -> Document:
        def decide(doc: Document, version: int) -> Change:
            previous = doc.get("approval_above_rows")
            if previous == approval_above_rows:
                return Change(None)  # no change, no event
            at_ms = epoch_ms(self.clock.now())
            change = {"at_ms": at_ms, "by": principal.user_id, "approval_above_rows": approval_above_rows}
            doc |= {
                "approval_above_rows": approval_above_rows,
                "updated_by": principal.user_id,
                "updated_at_ms": at_ms,
                "history": [*doc.get("history", []), {**change, "previous": previous}],
            }
            data = ev.ExportPolicyChanged(approval_above_rows=approval_above_rows, previous=previous)
            event = self.events(ev.EXPORT_POLICY_CHANGED, rules.POLICY_ID, data, version, principal.user_id)
            return Change(doc, [event])

        return await self.store.policy_store.mutate(rules.POLICY_ID, decide, expected_version=expected_version)

    # --- requests --------------------------------------------------------------------------------

    async def hold(
        self, principal: Principal, filters: Document, sort: str | None, rows: int, threshold: int
    ) -> Document:
        """The export becomes a pending request (with ``crm.customer_export_request.requested``)."""
        request = rules.new_request(str(uuid.uuid4()), principal, filters, sort, rows, threshold, self.clock.now())
        data = ev.ExportRequested(request=rules.snapshot(request))
        event = self.events(ev.EXPORT_REQUESTED, request["_id"], data, 1, principal.user_id)
        return await self.store.request_store.insert(request, [event])

    async def get(self, principal: Principal, request_id: str) -> Document:
        request = await self.store.request(request_id)
        if request is None or not rules.may_read(principal, request):
            raise NotFound(f"No export request with id {request_id} for you.")
        return request

    async def mine(self, principal: Principal) -> list[Document]:
        return await self.store.by_requester(principal.user_id, MINE_LIMIT)

    async def pending_for(self, approver: Principal) -> list[Document]:
        """The pending requests this approver may answer, oldest first."""
        paths = rules.pending_range(approver)
        if paths is None:
            return []
        found = [doc for doc in await self.store.pending_in(paths, PENDING_LIMIT) if rules.may_answer(approver, doc)]
        return sorted(found, key=lambda d: (d["at_ms"], d["_id"]))

    async def answer(self, approver: Principal, request_id: str, approve: bool, comment: str | None) -> Document:
        event_type = ev.EXPORT_APPROVED if approve else ev.EXPORT_REJECTED
        await self.get(approver, request_id)  # 404 for a request the approver may not see

        def decide(doc: Document, version: int) -> Change:
            out = rules.answered(doc, approver, approve, comment, self.clock.now(), self.valid_for)
            data = ev.ExportRequestDecided(request=rules.snapshot(out))
            return Change(out, [self.events(event_type, request_id, data, version, approver.user_id)])

        return await self.store.request_store.mutate(request_id, decide)

    async def download(self, principal: Principal, request_id: str, rows_now: int) -> Document:
        """Record a download of an approved request (``crm.customer_export_request.downloaded``,
        with the rows counted at download time); refused unless it is the requester's, approved
        and still valid."""

        def decide(doc: Document, version: int) -> Change:
            out = rules.downloaded(doc, principal, self.clock.now())
            data = ev.ExportRequestDownloaded(request=rules.snapshot(out), rows=rows_now)
            return Change(out, [self.events(ev.EXPORT_DOWNLOADED, request_id, data, version, principal.user_id)])

        return await self.store.request_store.mutate(request_id, decide)

    async def downloadable(self, principal: Principal, request_id: str) -> Document:
        """The request, checked before counting its rows (the same checks the download's write makes)."""
        request = await self.get(principal, request_id)
        rules.downloaded(request, principal, self.clock.now())
        return request
