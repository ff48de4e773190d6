"""Use cases of leads: enter, read, change, move on, delete, list, and the lead pool (claim, release, assign).

Who reaches a lead: its owner and whoever's ``leads`` data scope reaches the lead's department
(``Principal.mongo_visibility(module="leads")``); a lead in the lead pool (no owner) is visible
to everyone with a ``leads`` scope, since anyone may claim it.

"First entered owns": a lead's normalised company name, each phone and each email are keys
(:mod:`crm_leads.domain.leads`). A new lead, or a change that brings a new key, is refused
with 409 when another live lead holds the key, or a customer does (the customers' keys are
kept from their events: :mod:`crm_leads.application.customer_keys`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from crm_leads.adapters.repository import LeadRepository
from crm_leads.domain import leads as rules
from crm_leads.domain.assignment import pool_branch, pool_visible
from crm_leads.domain.model import AssignIn, LeadIn, LeadPatch, LeadSource, LeadStatus, ReleaseIn
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import leads as ev
from crm_platform.errors import Conflict, Duplicate, FieldError, Forbidden, NotFound, ValidationFailed
from crm_platform.events import EventFactory
from crm_platform.history import HistoryEntry, history
from crm_platform.keydocs import KeysTaken
from crm_platform.listing import Page, PageParams, all_of, fetch_page
from crm_platform.sortkeys import TIEBREAK, epoch_ms
from crm_platform.store import Change

Document = dict[str, Any]
MODULE = "leads"
#: What a list row carries: the lead without its outbox and derived fields.
LIST_PROJECTION = {"outbox": 0, "outbox_rev": 0, "outbox_pending_since": 0}


class LeadFilter(PageParams):
    """Query parameters of the lead list; every one is optional and they combine with AND."""

    status: LeadStatus | None = None
    owner_id: str | None = Field(default=None, max_length=200)
    campaign_id: str | None = Field(default=None, max_length=200)
    source: LeadSource | None = None
    in_pool: bool | None = Field(default=None, description="true: only the lead pool; false: only owned leads.")
    department_id: str | None = Field(default=None, max_length=200, description="Only leads of this department.")
    created_from: datetime | None = Field(default=None, description="Entered at or after this moment.")
    created_to: datetime | None = Field(default=None, description="Entered before this moment.")

    def conditions(self) -> Document:
        out: Document = {}
        for name in ("status", "owner_id", "campaign_id", "source", "in_pool", "department_id"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.value if isinstance(value, LeadStatus | LeadSource) else value
        created: Document = {}
        if self.created_from is not None:
            created["$gte"] = epoch_ms(self.created_from)
        if self.created_to is not None:
            created["$lt"] = epoch_ms(self.created_to)
        if created:
            first = (self.sort or rules.DEFAULT_SORT).split(",")[0].strip().lstrip("+-")
            if first != "created_at":
                # No one index serves a range on one moment walked in the order of another: the
                # page would sort every lead in the range.
                raise ValidationFailed.for_field("sort", "with created_from or created_to, sort on created_at", "query")
            if "$gte" in created and "$lt" in created and created["$gte"] >= created["$lt"]:
                raise ValidationFailed.for_field("created_to", "must be after created_from", "query")
            out["s.created_at"] = created
        return out


def _narrowed(branch: Document, conditions: Document) -> Document | None:
    """``branch`` AND ``conditions``, or None when they cannot both hold (a rep's own leads and
    ``owner_id`` of someone else, the pool and ``in_pool=false``): that branch is left out."""
    merged = dict(branch)
    for key, value in conditions.items():
        if key in merged and merged[key] != value:
            if not isinstance(value, dict) and not isinstance(merged[key], dict):
                return None
            merged = all_of(merged, {key: value})
        else:
            merged[key] = value
    return merged


class Leads:
    def __init__(self, repo: LeadRepository, clock: Clock, source: str) -> None:
        self.repo = repo
        self.clock = clock
        self.event = EventFactory(source, clock)

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(lead=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    # --- reading -------------------------------------------------------------------------------

    @staticmethod
    def visible(principal: Principal, doc: Document, company_wide: bool = False) -> bool:
        if doc.get("deleted") or principal.scope(MODULE) is None:
            return False
        if doc.get("in_pool"):
            # The pool is per department unless an administrator opened it company-wide.
            return pool_visible(principal, doc, company_wide)
        return principal.can_see_owned(doc.get("owner_id"), doc.get("department_path"), module=MODULE)

    async def company_wide_pool(self) -> bool:
        settings = await self.repo.lead_settings.find_one({"_id": "pool"})
        return bool(settings and settings.get("claim_scope") == "company")

    async def _sees(self, principal: Principal, doc: Document) -> bool:
        if self.visible(principal, doc):
            return True
        return bool(doc.get("in_pool")) and self.visible(principal, doc, await self.company_wide_pool())

    async def get(self, principal: Principal, lead_id: str) -> Document:
        doc = await self.repo.get(lead_id)
        if doc is None or not await self._sees(principal, doc):
            raise NotFound(f"No lead with id {lead_id}.")
        return doc

    async def history(self, principal: Principal, lead_id: str, event_log: Any) -> list[HistoryEntry]:
        doc = await self.get(principal, lead_id)
        return await history(event_log, doc, summarise)

    async def page(self, principal: Principal, filters: LeadFilter) -> Page:
        conditions = filters.conditions()
        if principal.scope(MODULE) is None:
            return Page(items=[], next_cursor=None, total=0 if filters.include_total else None)
        if principal.reaches_all(MODULE):
            branches: list[Document] = [{}]
        else:
            scope = principal.mongo_visibility(module=MODULE)
            pool = {"in_pool": True} if await self.company_wide_pool() else pool_branch(principal)
            branches = [*scope.get("$or", [scope]), *([pool] if pool else [])]
        narrowed = [b for b in (_narrowed({**b, "deleted": False}, conditions) for b in branches) if b is not None]
        if not narrowed:
            return Page(items=[], next_cursor=None, total=0 if filters.include_total else None)
        query = narrowed[0] if len(narrowed) == 1 else {"$or": narrowed}
        return await fetch_page(
            self.repo.leads,
            query,
            PageParams(
                sort=filters.sort, cursor=filters.cursor, limit=filters.limit, include_total=filters.include_total
            ),
            sort_fields=rules.SORT_FIELDS,
            default_sort=rules.DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            max_alternatives=len(narrowed),
            tie_follows_last=True,
        )

    # --- the duplicate check ---------------------------------------------------------------------

    async def _live_lead_holders(self, key: str, holders: list[str], lead_id: str | None) -> list[Document]:
        live = []
        for holder in holders:
            if holder == lead_id:
                continue
            doc = await self.repo.get(holder)
            if doc is not None and key in rules.keys_of(doc):
                live.append(doc)
        return live

    async def _duplicates(self, keys: dict[str, str], lead_id: str | None) -> list[FieldError]:
        """What stands in the way of ``keys`` (key -> field): live customers first, then other live leads."""
        errors: list[FieldError] = []
        taken: set[str] = set()
        customer_holders = await self.repo.customer_keys.holders(keys)
        for key, holders in sorted(customer_holders.items()):
            for holder in holders:
                copy = await self.repo.customer(holder)
                if copy is not None and key in (copy.get("keys") or []):
                    owner = copy.get("owner_id")
                    whose = f"owned by {owner}" if owner else "in the public pool"
                    errors.append(
                        FieldError(
                            field=keys[key],
                            reason=f"already a customer ({holder}) {whose}: first entered owns",
                            code="duplicate-customer",
                            params={"customer_id": holder, "owner_id": owner or ""},
                        )
                    )
                    taken.add(key)
                    break
        lead_holders = await self.repo.lead_keys.holders(k for k in keys if k not in taken)
        for key, holders in sorted(lead_holders.items()):
            live = await self._live_lead_holders(key, holders, lead_id)
            if live:
                lead = live[0]
                owner = lead.get("owner_id")
                whose = f"a lead of {owner}" if owner else "a lead in the lead pool"
                errors.append(
                    FieldError(
                        field=keys[key],
                        reason=f"already {whose} ({lead['_id']}): first entered owns",
                        code="duplicate-lead",
                        params={"lead_id": lead["_id"], "owner_id": owner or ""},
                    )
                )
        return sorted(errors, key=lambda e: e.field)

    @staticmethod
    def _refuse(errors: list[FieldError]) -> Duplicate:
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        return Duplicate(detail, errors=errors)

    async def _take_keys(self, keys: dict[str, str], lead_id: str) -> None:
        """Check ``keys`` and record ``lead_id`` as their holder (before the write that needs them).

        Of two leads racing for a key, the second insert of its document collides; the key is
        then re-checked: a live holder, or one whose lead is not written yet (a create in flight),
        refuses this one; a stale holder (deleted, changed since) is taken over."""
        if not keys:
            return
        errors = await self._duplicates(keys, lead_id)
        if errors:
            raise self._refuse(errors)
        try:
            await self.repo.lead_keys.claim(keys, lead_id)
            return
        except KeysTaken as exc:
            taken = exc.keys
        holders = await self.repo.lead_keys.holders(taken)
        errors = []
        for key in sorted(taken):
            others = [h for h in holders.get(key, []) if h != lead_id]
            for other in others:
                doc = await self.repo.get(other)
                if doc is None or key in rules.keys_of(doc):
                    owner = (doc or {}).get("owner_id")
                    errors.append(
                        FieldError(
                            field=keys[key],
                            reason=f"already a lead of {owner} ({other}): first entered owns"
                            if owner
                            else f"being entered as another lead ({other}) right now: first entered owns",
                            code="duplicate-lead",
                            params={"lead_id": other, "owner_id": owner or ""},
                        )
                    )
                    break
        if errors:
            raise self._refuse(errors)
        await self.repo.lead_keys.add(set(keys) - taken, lead_id)
        for key in sorted(taken):
            await self.repo.lead_keys.take_over(key, lead_id, holders.get(key, []))

    # --- writing -------------------------------------------------------------------------------

    async def check_campaign(self, campaign_id: str | None, field: str = "campaign_id") -> None:
        """A lead's campaign must be one this service knows and not cancelled (422 naming ``field``):
        one ``_id`` read of the campaign."""
        if campaign_id is None:
            return
        campaign = await self.repo.campaign_store.get(campaign_id)
        if campaign is None:
            raise ValidationFailed.for_field(field, f"no campaign with id {campaign_id}")
        if campaign.get("status") == "cancelled":
            raise ValidationFailed.for_field(field, f"campaign {campaign_id} is cancelled")

    async def create(self, principal: Principal, data: LeadIn, via: str | None = None) -> Document:
        if principal.scope(MODULE) is None:
            raise Forbidden("Your roles give no data scope for leads: a lead you entered would be out of your reach.")
        await self.check_campaign(data.campaign_id)
        lead_id = str(uuid.uuid4())
        doc = rules.new_lead(lead_id, data, principal, self.clock.now())
        keys = rules.keys_of(doc)
        await self._take_keys(keys, lead_id)
        try:
            event = self._event(ev.LEAD_CREATED, doc, 1, principal.user_id, via=via)
            return await self.repo.store.insert(doc, [event])
        except BaseException:
            await self.repo.lead_keys.remove(keys, lead_id)
            raise

    async def update(
        self, principal: Principal, lead_id: str, patch: LeadPatch, expected_version: int | None
    ) -> Document:
        current = await self.get(principal, lead_id)
        rules.ensure_open(current)
        values = patch.model_dump(mode="json", include=patch.model_fields_set - {"status", "reason"})
        if "reason" in patch.model_fields_set and patch.status is None:
            raise ValidationFailed.for_field("reason", "only with a status (disqualified)")
        if values.get("campaign_id") is not None and values["campaign_id"] != current.get("campaign_id"):
            await self.check_campaign(values["campaign_id"])
        preview = dict(current)
        rules.apply_values(preview, values)  # refuses a field that cannot be cleared, before any key is taken
        rules.refresh(preview)
        new_keys = {k: f for k, f in rules.keys_of(preview).items() if k not in rules.keys_of(current)}
        await self._take_keys(new_keys, lead_id)
        now = self.clock.now()
        before: dict[str, str] = {}

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                raise NotFound(f"No lead with id {lead_id}.")
            rules.ensure_open(doc)
            before.clear()
            before.update(rules.keys_of(doc))
            events = []
            changes = rules.apply_values(doc, values)
            moved = rules.move(doc, patch.status, patch.reason) if patch.status is not None else None
            if not changes and moved is None:
                return Change(None)
            doc["updated_at"] = now
            rules.refresh(doc)
            if changes:
                events.append(self._event(ev.LEAD_UPDATED, doc, version, principal.user_id, changes=changes))
            if moved is not None:
                events.append(
                    self._event(
                        ev.LEAD_STATUS_CHANGED,
                        doc,
                        version,
                        principal.user_id,
                        from_status=moved.value,
                        to_status=doc["status"],
                        reason=doc.get("disqualified_reason"),
                    )
                )
            return Change(doc, events)

        try:
            stored = await self.repo.store.mutate(lead_id, decide, expected_version=expected_version, current=current)
        except BaseException:
            await self.repo.lead_keys.remove(set(new_keys) - set(rules.keys_of(await self.repo.get(lead_id))), lead_id)
            raise
        # Keys the change dropped go after the write (a crash between leaves a stale holder, never a missing key).
        await self.repo.lead_keys.remove(set(before) - set(rules.keys_of(stored)), lead_id)
        return stored

    async def delete(self, principal: Principal, lead_id: str, expected_version: int | None) -> Document:
        current = await self.get(principal, lead_id)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                raise NotFound(f"No lead with id {lead_id}.")
            rules.ensure_open(doc)
            doc["deleted"] = True
            doc["updated_at"] = now
            rules.refresh(doc)
            return Change(doc, [self._event(ev.LEAD_DELETED, doc, version, principal.user_id)])

        stored = await self.repo.store.mutate(lead_id, decide, expected_version=expected_version, current=current)
        await self.repo.lead_keys.remove(rules.keys_of(current), lead_id)
        return stored

    # --- the lead pool -------------------------------------------------------------------------

    async def _change_owner(
        self,
        principal: Principal,
        lead_id: str,
        expected_version: int | None,
        how: str,
        check: Any,
        owner: tuple[str | None, str | None, str | None],
        reason: str | None = None,
        current: Document | None = None,
    ) -> Document:
        current = current or await self.get(principal, lead_id)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                raise NotFound(f"No lead with id {lead_id}.")
            rules.ensure_open(doc)
            check(doc)
            previous = doc.get("owner_id")
            rules.set_owner(doc, *owner)
            doc["updated_at"] = now
            rules.refresh(doc)
            event = self._event(
                ev.LEAD_OWNER_CHANGED,
                doc,
                version,
                principal.user_id,
                previous_owner_id=previous,
                owner_id=doc["owner_id"],
                how=how,
                reason=reason,
            )
            return Change(doc, [event])

        return await self.repo.store.mutate(lead_id, decide, expected_version=expected_version, current=current)

    async def claim(self, principal: Principal, lead_id: str, expected_version: int | None) -> Document:
        """Take a lead from the pool. Of many claiming at once exactly one wins: each write is
        guarded by the version it read, and a claim that lost recomputes on the fresh lead,
        which is no longer in the pool (409)."""

        def check(doc: Document) -> None:
            if not doc.get("in_pool"):
                if doc.get("owner_id") == principal.user_id:
                    raise Conflict("The lead is yours already.")
                if self.visible(principal, doc):
                    raise Conflict(f"The lead is not in the lead pool: {doc.get('owner_id')} has it.")
                raise Conflict("The lead is no longer in the lead pool: someone claimed it first.")

        # A lead another claimer just took is out of this caller's sight, but they saw it in the
        # pool a moment ago: 409 (taken), not 404.
        current = await self.repo.get(lead_id)
        if current is None or current.get("deleted") or principal.scope(MODULE) is None:
            raise NotFound(f"No lead with id {lead_id}.")
        if not current.get("in_pool") and not self.visible(principal, current):
            check(current)
        if current.get("in_pool") and not await self._sees(principal, current):
            # Another department's pool (and the pool is not company-wide): not the caller's to see.
            raise NotFound(f"No lead with id {lead_id}.")
        owner = (principal.user_id, principal.department_id, principal.department_path)
        return await self._change_owner(principal, lead_id, expected_version, "claimed", check, owner, current=current)

    async def release(
        self, principal: Principal, lead_id: str, data: ReleaseIn, expected_version: int | None
    ) -> Document:
        def check(doc: Document) -> None:
            if doc.get("in_pool"):
                raise Conflict("The lead is in the lead pool already.")

        target: tuple[str | None, str | None, str | None] = (None, None, None)
        if data.department_id is not None:
            department = await self.repo.directory_departments.find_one({"_id": data.department_id})
            if department is None or department.get("status", "active") != "active":
                raise ValidationFailed.for_field("department_id", f"no active department {data.department_id}")
            target = (None, data.department_id, department.get("path"))
        return await self._change_owner(principal, lead_id, expected_version, "released", check, target, data.reason)

    async def assign_by_rule(self, lead: Document, user: Document, rule_id: str, reason: str) -> Document:
        """Give the pool lead ``lead`` to ``user`` for assignment rule ``rule_id`` (actor ``rule:<id>``);
        409 when it is no longer in the pool (claimed or assigned meanwhile)."""
        actor = Principal(user_id=f"rule:{rule_id}")

        def check(doc: Document) -> None:
            if not doc.get("in_pool"):
                raise Conflict("The lead is no longer in the lead pool.")

        owner = (user["_id"], user.get("department_id"), user.get("department_path"))
        return await self._change_owner(actor, lead["_id"], None, "assigned", check, owner, reason, current=lead)

    async def assign(
        self, principal: Principal, lead_id: str, data: AssignIn, expected_version: int | None
    ) -> Document:
        user = await self.repo.directory_users.find_one({"_id": data.owner_id})
        if user is None or user.get("status", "active") != "active":
            raise ValidationFailed.for_field("owner_id", f"no active user {data.owner_id} in the directory")
        if not principal.reaches_path(user.get("department_path"), MODULE) and data.owner_id != principal.user_id:
            raise ValidationFailed.for_field("owner_id", "outside the departments your leads scope reaches")

        def check(doc: Document) -> None:
            if doc.get("owner_id") == data.owner_id:
                raise Conflict(f"The lead is {data.owner_id}'s already.")

        owner = (data.owner_id, user.get("department_id"), user.get("department_path"))
        return await self._change_owner(principal, lead_id, expected_version, "assigned", check, owner, data.reason)


def summarise(envelope: Any) -> tuple[str, list[dict[str, Any]]]:
    """One history line per event: what happened and the fields it changed."""
    data = envelope.data
    if envelope.type == ev.LEAD_CREATED.name:
        return "Lead entered", []
    if envelope.type == ev.LEAD_UPDATED.name:
        return "Fields changed", list(data.get("changes") or [])
    if envelope.type == ev.LEAD_STATUS_CHANGED.name:
        change = {"field": "status", "old": data.get("from_status"), "new": data.get("to_status")}
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"Status {data.get('from_status')} -> {data.get('to_status')}{reason}", [change]
    if envelope.type == ev.LEAD_OWNER_CHANGED.name:
        change = {"field": "owner_id", "old": data.get("previous_owner_id"), "new": data.get("owner_id")}
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"Lead {data.get('how')}{reason}", [change]
    if envelope.type == ev.LEAD_DELETED.name:
        return "Lead deleted", []
    if envelope.type in CONVERSION_EVENTS:
        return summarise_conversion(envelope)
    if envelope.type == ev.LEAD_FOLLOWED_UP.name:
        count = (data.get("lead") or {}).get("followup_count")
        return "Follow-up logged", [{"field": "followup_count", "old": (count or 1) - 1, "new": count}]
    return envelope.type, []


CONVERSION_EVENTS = {
    t.name
    for t in (ev.LEAD_CONVERSION_REQUESTED, ev.LEAD_CONVERSION_PROGRESSED, ev.LEAD_CONVERTED, ev.LEAD_CONVERSION_FAILED)
}


def summarise_conversion(envelope: Any) -> tuple[str, list[dict[str, Any]]]:
    data = envelope.data
    lead = data.get("lead") or {}
    if envelope.type == ev.LEAD_CONVERSION_REQUESTED.name:
        conversion = data.get("conversion") or {}
        into = "existing customer" if conversion.get("existing_customer") else "new customer"
        change = {"field": "status", "old": "qualified", "new": lead.get("status")}
        return f"Conversion {conversion.get('conversion_id')} requested ({into} {conversion.get('customer_id')})", [
            change
        ]
    if envelope.type == ev.LEAD_CONVERSION_PROGRESSED.name:
        return f"Conversion: customer {data.get('customer_id')} done, opportunity asked for", []
    if envelope.type == ev.LEAD_CONVERTED.name:
        changes: list[dict[str, Any]] = [{"field": "status", "old": "converting", "new": "converted"}]
        changes += [{"field": f, "old": None, "new": data[f]} for f in ("customer_id", "contact_id", "opportunity_id")]
        return f"Converted into customer {data.get('customer_id')}", [c for c in changes if c["new"] is not None]
    change = {"field": "status", "old": "converting", "new": lead.get("status")}
    return f"Conversion failed at the {data.get('step')} step: {data.get('reason')}", [change]
