"""Leads and campaigns in reporting: their read copies (from ``crm.leads.v1``) and the reports on them.

Three collections of the generation (see ``adapters/readmodels.py``):

- ``leads``: each lead's campaign, source, owner, department path, status, the days it was created,
  first qualified and converted (epoch ms), what it became (customer, opportunity) and whether it
  ever reached contacted / qualified (a lead disqualified after qualifying still counted as qualified);
  applied by aggregate version (``apply_versioned``), the milestones carried from the copy before;
- ``campaigns``: each campaign's name, channel, budget, cost total, currency, period, owner, department;
- ``lead_opps``: every opportunity's status, amount, currency and the lead it came from, linked from
  either side (the opportunity's snapshot ``lead_id``, or the ``opportunity_id`` of a
  ``crm.lead.converted``), whichever arrives first.

The reports read the leads created in the period that the caller's ``leads`` scope reaches (an index
range on ``created_ms``), their campaigns by id and their opportunities by ``lead_id``: index lookups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from crm_platform.auth import Principal
from crm_platform.consumer import apply_versioned
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as pev
from crm_platform.errors import Forbidden
from crm_platform.events import EventEnvelope
from crm_platform.listing import all_of
from crm_reporting.adapters.readmodels import ReadModels
from crm_reporting.application.scope import subtree_regex
from crm_reporting.domain.money import dec, money_in, ratio

Document = dict[str, Any]
#: The data-scope module lead reports honour: a rep sees their own leads, a manager their scope.
LEADS = "leads"
CONTACTED = frozenset({"contacted", "qualified", "converting", "converted"})
QUALIFIED = frozenset({"qualified", "converting", "converted"})
NONE = "(none)"
_CHUNK = 500


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


# --- the projection ---------------------------------------------------------------------------------


async def apply_lead_event(models: ReadModels, envelope: EventEnvelope) -> None:
    """A lead or campaign event into its read copy (idempotent: by aggregate version)."""
    if envelope.type.startswith("crm.campaign."):
        c = lev.CampaignSnapshot.model_validate(envelope.data["campaign"])
        await apply_versioned(models.collection("campaigns"), envelope, campaign_state(c))
        return
    lead = lev.LeadSnapshot.model_validate(envelope.data["lead"])
    at = _ms(envelope.time)
    prev = await models.collection("leads").find_one({"_id": lead.lead_id})
    if prev is not None and int(prev.get("source_version", 0)) >= envelope.aggregateversion:
        return
    state = lead_state(lead, prev, at)
    if not await apply_versioned(models.collection("leads"), envelope, state):
        return
    if envelope.type == lev.LEAD_CONVERTED.name:
        converted = lev.LEAD_CONVERTED.parse(envelope)
        if converted.opportunity_id:
            await link(models, converted.opportunity_id, lead.lead_id)
            return
    # Opportunities that named the lead before this copy was written (or that it replaced).
    await refresh_opportunities(models, lead.lead_id, state["opps"])


def lead_state(lead: lev.LeadSnapshot, prev: Document | None, at: int) -> Document:
    def first(key: str, reached: bool) -> int | None:
        kept = prev.get(key) if prev is not None else None
        return int(kept) if kept is not None else (at if reached else None)

    return {
        "_id": lead.lead_id,
        "campaign_id": lead.campaign_id or "",
        "source": lead.source or "",
        "owner_id": lead.owner_id or "",
        "department_path": lead.department_path or "",
        "status": lead.status,
        "deleted": lead.deleted,
        "created_ms": _ms(lead.created_at),
        "contacted": bool(prev and prev.get("contacted")) or lead.status in CONTACTED,
        "qualified": bool(prev and prev.get("qualified")) or lead.status in QUALIFIED,
        "qualified_ms": first("qualified_ms", lead.status in QUALIFIED),
        "converted_ms": first("converted_ms", lead.status == "converted"),
        "customer_id": lead.customer_id or "",
        "opportunity_id": lead.opportunity_id or "",
        "opps": list(prev.get("opps") or []) if prev is not None else [],
    }


def campaign_state(c: lev.CampaignSnapshot) -> Document:
    return {
        "_id": c.campaign_id,
        "name": c.name,
        "channel": c.channel,
        "status": c.status,
        "budget": c.budget.amount,
        "cost_total": c.cost_total.amount,
        "currency": c.cost_total.currency,
        "start_date": c.start_date.isoformat(),
        "end_date": c.end_date.isoformat(),
        "owner_id": c.owner_id,
        "department_path": c.department_path or "",
    }


async def link(models: ReadModels, opportunity_id: str, lead_id: str) -> None:
    """The opportunity came from the lead (set by either side; the same value from both)."""
    await models.collection("lead_opps").update_one(
        {"_id": opportunity_id}, {"$set": {"lead_id": lead_id}}, upsert=True
    )
    await refresh_opportunities(models, lead_id)


async def refresh_opportunities(models: ReadModels, lead_id: str, known: list[Document] | None = None) -> None:
    """Copy the lead's opportunities (status, amount, currency) onto its copy, which the reports read
    alone: derived afresh from ``lead_opps`` whichever side wrote last, so the order does not matter."""
    opps = [
        {k: o.get(k) for k in ("_id", "status", "amount", "currency", "hidden")}
        async for o in models.collection("lead_opps").find({"lead_id": lead_id})
        if o.get("status") is not None
    ]
    opps.sort(key=lambda o: str(o["_id"]))
    if known is not None and known == opps:
        return
    await models.collection("leads").update_one({"_id": lead_id}, {"$set": {"opps": opps}})


async def apply_opportunity(models: ReadModels, envelope: EventEnvelope) -> None:
    """An opportunity's status and amount, for the leads it came from (by version; its lead kept)."""
    o = pev.OpportunitySnapshot.model_validate(envelope.data["opportunity"])
    coll = models.collection("lead_opps")
    prev = await coll.find_one({"_id": o.opportunity_id}, {"source_version": 1, "lead_id": 1})
    if prev is not None and int(prev.get("source_version", 0)) >= envelope.aggregateversion:
        return
    doc: Document = {
        "status": o.status,
        "hidden": o.hidden,
        "amount": o.amount or "0",
        "currency": o.currency,
        "source_version": envelope.aggregateversion,
    }
    if o.lead_id:
        doc["lead_id"] = o.lead_id
    await coll.update_one({"_id": o.opportunity_id}, {"$set": doc}, upsert=True)
    lead_id = o.lead_id or (prev or {}).get("lead_id")
    if lead_id:
        await refresh_opportunities(models, str(lead_id))


# --- the reports ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadFilter:
    """Which leads a report covers: created in [start_ms, end_ms), the caller's leads scope, and filters."""

    principal: Principal
    start_ms: int
    end_ms: int | None
    department: str | None = None
    campaign_id: str | None = None
    source: str | None = None
    channel: str | None = None

    def check(self) -> LeadFilter:
        if self.principal.scope(LEADS) is None:
            raise Forbidden("Lead reports need a leads data scope.")
        if self.department and not self.principal.reaches_path(self.department, LEADS):
            raise Forbidden("You may only see lead reports on the departments your leads scope reaches.")
        return self

    def query(self) -> Document:
        created: Document = {"$gte": self.start_ms}
        if self.end_ms is not None:
            created["$lt"] = self.end_ms
        # The scope is checked per lead (Principal.can_see_owned): a manager's "own or department"
        # is an $or, which the embedded store cannot serve from an index next to the range.
        clauses: list[Document] = [{"created_ms": created}]
        if not self.principal.reaches_beyond_own(LEADS):
            clauses.append({"owner_id": self.principal.user_id})
        if self.department:
            clauses.append({"department_path": subtree_regex(self.department)})
        if self.campaign_id:
            clauses.append({"campaign_id": self.campaign_id})
        if self.source:
            clauses.append({"source": self.source})
        return all_of(*clauses)


@dataclass
class Tally:
    leads: int = 0
    contacted: int = 0
    qualified: int = 0
    converted: int = 0
    opportunities: int = 0
    won: int = 0
    won_amounts: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def add(self, lead: Document, opps: list[Document]) -> None:
        self.leads += 1
        self.contacted += bool(lead.get("contacted"))
        self.qualified += bool(lead.get("qualified"))
        self.converted += lead.get("converted_ms") is not None
        for o in opps:
            self.opportunities += 1
            if o.get("status") == "won":
                self.won += 1
                self.won_amounts[str(o.get("currency") or "")] += dec(o.get("amount"))

    def counts(self) -> Document:
        return {
            "leads": self.leads,
            "contacted": self.contacted,
            "qualified": self.qualified,
            "converted": self.converted,
            "opportunities": self.opportunities,
            "won": self.won,
            "contact_rate": ratio(self.contacted, self.leads),
            "qualification_rate": ratio(self.qualified, self.leads),
            "conversion_rate": ratio(self.converted, self.leads),
            "win_rate": ratio(self.won, self.opportunities),
        }

    def amounts(self) -> list[Document]:
        return [{"amount": money_in(v, c), "currency": c} for c, v in sorted(self.won_amounts.items())]


async def _leads(models: ReadModels, f: LeadFilter) -> tuple[list[Document], dict[str, list[Document]]]:
    """The leads the filter covers and the caller may see (deleted ones left out) and the
    opportunities of each (not hidden)."""
    p = f.principal
    leads = [
        d
        async for d in models.collection("leads").find(f.query())
        if not d.get("deleted") and p.can_see_owned(d.get("owner_id") or None, d.get("department_path"), module=LEADS)
    ]
    if f.channel is not None:
        campaigns = await _campaigns(models, {d["campaign_id"] for d in leads})
        leads = [d for d in leads if campaigns.get(d["campaign_id"], {}).get("channel") == f.channel]
    opps = {d["_id"]: [o for o in d.get("opps") or [] if not o.get("hidden")] for d in leads}
    return leads, opps


async def _campaigns(models: ReadModels, ids: Iterable[str]) -> dict[str, Document]:
    wanted = sorted(i for i in ids if i)
    found: dict[str, Document] = {}
    for i in range(0, len(wanted), _CHUNK):
        async for c in models.collection("campaigns").find({"_id": {"$in": wanted[i : i + _CHUNK]}}):
            found[c["_id"]] = c
    return found


def _per(cost: Decimal, count: int, currency: str) -> str | None:
    return money_in(cost / count, currency) if count else None


def roi(won: Decimal, cost: Decimal) -> str | None:
    """(won - cost) / cost, four decimals; None when there is no cost."""
    if not cost:
        return None
    return str(((won - cost) / cost).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


async def campaign_report(models: ReadModels, f: LeadFilter, amounts: bool) -> Document:
    leads, opps = await _leads(models, f)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for lead in leads:
        tallies[lead["campaign_id"]].add(lead, opps.get(lead["_id"], []))
    campaigns = await _campaigns(models, tallies)
    rows = []
    for cid, tally in tallies.items():
        c = campaigns.get(cid)
        row: Document = {
            "campaign_id": cid or None,
            "name": c["name"] if c else None,
            "channel": c["channel"] if c else None,
            "status": c["status"] if c else None,
            "currency": c["currency"] if c else None,
            **tally.counts(),
        }
        cost = dec(c["cost_total"]) if c else Decimal(0)
        row["budget"] = money_in(dec(c["budget"]), c["currency"]) if c else None
        row["cost"] = money_in(cost, c["currency"]) if c else None
        row["cost_per_lead"] = _per(cost, tally.leads, c["currency"]) if c else None
        row["cost_per_converted"] = _per(cost, tally.converted, c["currency"]) if c else None
        if amounts:
            same = tally.won_amounts.get(c["currency"], Decimal(0)) if c else Decimal(0)
            row["won_amount"] = money_in(same, c["currency"]) if c else None
            # Won in another currency than the campaign's: listed apart, never summed into ROI.
            row["won_amounts_other"] = [a for a in tally.amounts() if not c or a["currency"] != c["currency"]]
            row["roi"] = roi(same, cost) if c else None
        rows.append(row)
    rows.sort(key=lambda r: (-r["leads"], r["campaign_id"] or ""))
    return {"rows": rows}


async def source_report(models: ReadModels, f: LeadFilter, amounts: bool) -> Document:
    leads, opps = await _leads(models, f)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for lead in leads:
        tallies[lead["source"] or NONE].add(lead, opps.get(lead["_id"], []))
    rows = []
    for source, tally in tallies.items():
        row: Document = {"source": source, **tally.counts()}
        if amounts:
            row["won_amounts"] = tally.amounts()
        rows.append(row)
    rows.sort(key=lambda r: (-r["leads"], r["source"]))
    return {"rows": rows}


async def funnel_report(models: ReadModels, f: LeadFilter, amounts: bool) -> Document:
    leads, opps = await _leads(models, f)
    tally = Tally()
    for lead in leads:
        tally.add(lead, opps.get(lead["_id"], []))
    steps = [
        ("lead", tally.leads),
        ("qualified", tally.qualified),
        ("customer", tally.converted),
        ("opportunity", tally.opportunities),
        ("won", tally.won),
    ]
    rows = []
    for i, (name, count) in enumerate(steps):
        rows.append(
            {
                "step": name,
                "count": count,
                "rate_from_previous": None if i == 0 else ratio(count, steps[i - 1][1]),
                "rate_from_leads": ratio(count, tally.leads),
            }
        )
    report: Document = {"rows": rows}
    if amounts:
        report["won_amounts"] = tally.amounts()
    return report
