"""Use cases of campaigns (市场活动): plan, read, change and move on, record costs, list.

Campaigns are the company's marketing: whoever holds ``campaigns:view`` sees them all (no data
scope), ``campaigns:manage`` plans and changes them. Every change is one guarded write of the
campaign with its event (the outbox); a cost entry and the new total are one write too.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from crm_leads.adapters.repository import LeadRepository
from crm_leads.domain import campaigns as rules
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import leads as ev
from crm_platform.errors import NotFound
from crm_platform.events import EventFactory
from crm_platform.history import HistoryEntry, history
from crm_platform.listing import Page, PageParams, fetch_page
from crm_platform.sortkeys import TIEBREAK
from crm_platform.store import Change

Document = dict[str, Any]
LIST_PROJECTION = {"outbox": 0, "outbox_rev": 0, "outbox_pending_since": 0, "costs": 0}


class CampaignFilter(PageParams):
    status: rules.CampaignStatus | None = None
    channel: rules.Channel | None = None
    owner_id: str | None = Field(default=None, max_length=200)

    def conditions(self) -> Document:
        # ``live`` is always true: the prefix every list index starts with, so an unfiltered page
        # is an index walk too.
        out: Document = {"live": True}
        for name in ("status", "channel", "owner_id"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.value if isinstance(value, rules.CampaignStatus | rules.Channel) else value
        return out


class Campaigns:
    def __init__(self, repo: LeadRepository, clock: Clock, source: str) -> None:
        self.repo = repo
        self.clock = clock
        self.event = EventFactory(source, clock)

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(campaign=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    async def plan(self, principal: Principal, data: rules.CampaignIn) -> Document:
        doc = rules.new_campaign(str(uuid.uuid4()), data, principal, self.clock.now())
        doc["live"] = True
        return await self.repo.campaign_store.insert(doc, [self._event(ev.CAMPAIGN_CREATED, doc, 1, principal.user_id)])

    async def get(self, campaign_id: str) -> Document:
        doc = await self.repo.campaign_store.get(campaign_id)
        if doc is None:
            raise NotFound(f"No campaign with id {campaign_id}.")
        return doc

    async def history(self, campaign_id: str, event_log: Any) -> list[HistoryEntry]:
        return await history(event_log, await self.get(campaign_id), summarise)

    async def update(
        self, principal: Principal, campaign_id: str, patch: rules.CampaignPatch, expected_version: int | None
    ) -> Document:
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            changes = rules.apply_patch(doc, patch)
            if not changes:
                return Change(None)
            doc["updated_at"] = now
            doc["s"] = rules.sort_keys(doc)
            return Change(doc, [self._event(ev.CAMPAIGN_UPDATED, doc, version, principal.user_id, changes=changes)])

        return await self.repo.campaign_store.mutate(campaign_id, decide, expected_version=expected_version)

    async def add_cost(
        self, principal: Principal, campaign_id: str, data: rules.CostIn, expected_version: int | None
    ) -> Document:
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            cost = rules.add_cost(doc, data, principal, now)
            doc["updated_at"] = now
            event = self._event(
                ev.CAMPAIGN_COST_ADDED, doc, version, principal.user_id, cost=rules.cost_event_data(cost)
            )
            return Change(doc, [event])

        return await self.repo.campaign_store.mutate(campaign_id, decide, expected_version=expected_version)

    async def page(self, filters: CampaignFilter) -> Page:
        return await fetch_page(
            self.repo.campaigns,
            filters.conditions(),
            PageParams(**filters.model_dump(include={"sort", "cursor", "limit", "include_total"})),
            sort_fields=rules.SORT_FIELDS,
            default_sort=rules.DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            tie_follows_last=True,
        )


def summarise(envelope: Any) -> tuple[str, list[dict[str, Any]]]:
    data = envelope.data
    if envelope.type == ev.CAMPAIGN_CREATED.name:
        return "Campaign planned", []
    if envelope.type == ev.CAMPAIGN_UPDATED.name:
        return "Campaign changed", list(data.get("changes") or [])
    if envelope.type == ev.CAMPAIGN_COST_ADDED.name:
        cost = data.get("cost") or {}
        money = cost.get("amount") or {}
        total = (data.get("campaign") or {}).get("cost_total") or {}
        change = {"field": "cost_total", "old": None, "new": total}
        return f"Cost {money.get('amount')} {money.get('currency')} on {cost.get('date')}", [change]
    return envelope.type, []
