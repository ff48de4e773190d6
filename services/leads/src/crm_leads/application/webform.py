"""Web-to-lead: a campaign's public form key, and the posts a customer's website sends with it.

Keys. ``POST /v1/campaigns/{id}/web-form`` makes a random URL-safe key, shown once. What is stored
is its SHA-256: as the ``_id`` of a ``web_form_keys`` document naming the campaign (so a post's
look-up is one ``_id`` read) and on the campaign (``web_form.key_hash``, written with
``crm.campaign.web_form_changed`` in one guarded write). A post is taken only when both agree
and the campaign is ``active``: a key document left behind by a crash, a rotated or disabled key,
a planned, completed or cancelled campaign all answer 404, like an unknown key.

Posts. Rate-limited per client address and per key in fixed windows, each counter a document
``addr:<ip>:<window>`` / ``key:<hash>:<window>`` incremented by ``_id`` (constant cost, the same
count for every replica); a counter whose window is over is deleted when the next counter starts
(an index range on ``expires_ms``: no TTL index, which the embedded store pays for on every
statement). The honeypot field filled: answered exactly as a success, nothing stored, counted.
A lead whose company, phone or email a lead or customer holds already: answered as a success
too (the public learns nothing of who holds it), not created, and counted on the campaign's
web-form counts, which staff read at ``GET /v1/campaigns/{id}/web-form``.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from crm_leads.adapters.repository import LeadRepository
from crm_leads.application.campaigns import Campaigns
from crm_leads.application.leads import Leads
from crm_leads.domain import campaigns as campaign_rules
from crm_leads.domain.model import CompanyName, LeadIn, LeadSource, Notes, ShortText
from crm_leads.settings import LeadsSettings
from crm_platform.auth import Principal
from crm_platform.contact_points import Email, Phone
from crm_platform.contracts import leads as ev
from crm_platform.errors import (
    Conflict,
    DomainError,
    Duplicate,
    FieldError,
    NotFound,
    ValidationFailed,
    field_errors_from_pydantic,
)
from crm_platform.sortkeys import epoch_ms
from crm_platform.store import Change
from crm_platform.text_input import control_character

Document = dict[str, Any]

#: The hidden field of the form: people leave it empty, form-filling bots do not.
HONEYPOT = "website_url"

WEB_FORM_POSTS = Counter(
    "crm_web_form_posts_total",
    "Web-to-lead posts, by outcome (created, duplicate, honeypot, rate_limited, invalid, not_found)",
    ["outcome"],
)


class TooManyRequests(DomainError):
    status, code, title = 429, "too-many-requests", "Too many requests"


class WebLeadIn(BaseModel):
    """What the public form sends. Fields a form may carry beyond these (a submit button) are ignored."""

    model_config = ConfigDict(extra="ignore")

    company: CompanyName
    name: ShortText | None = None
    phone: Phone | None = None
    email: Email | None = None
    message: Notes | None = None

    @model_validator(mode="after")
    def _reachable(self) -> WebLeadIn:
        if self.phone is None and self.email is None:
            raise ValueError("give a phone or an email")
        return self


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class WebFormOut(BaseModel):
    campaign_id: str
    enabled: bool
    enabled_at: datetime | None = None
    enabled_by: str | None = None
    key: str | None = Field(
        default=None, description="Only in the answer that made it: keep it, it is not shown again."
    )
    url: str | None = Field(default=None, description="Where the form posts (with the key): only with the key.")
    created: int = Field(default=0, description="Leads the form made.")
    duplicates: int = Field(default=0, description="Posts of a company, phone or email already a lead or a customer.")
    honeypot: int = Field(default=0, description="Posts that filled the hidden field (bots): nothing stored.")


class WebForms:
    def __init__(self, repo: LeadRepository, leads: Leads, campaigns: Campaigns, settings: LeadsSettings) -> None:
        self.repo = repo
        self.leads = leads
        self.campaigns = campaigns
        self.settings = settings

    # --- staff: the key ----------------------------------------------------------------------

    async def status(self, campaign_id: str, key: str | None = None) -> WebFormOut:
        campaign = await self.campaigns.get(campaign_id)
        form = campaign.get("web_form") or {}
        stats = await self.repo.web_form_stats.find_one({"_id": campaign_id}) or {}
        return WebFormOut(
            campaign_id=campaign_id,
            enabled=bool(form),
            enabled_at=form.get("enabled_at"),
            enabled_by=form.get("enabled_by"),
            key=key,
            url=f"/v1/web-to-lead/{key}" if key else None,
            created=int(stats.get("created", 0)),
            duplicates=int(stats.get("duplicates", 0)),
            honeypot=int(stats.get("honeypot", 0)),
        )

    async def enable(self, principal: Principal, campaign_id: str) -> WebFormOut:
        """Make (or rotate) the campaign's key: the new key's document first, then the campaign (one
        guarded write with its event), then the old key's document goes. A crash between leaves a
        key document the campaign does not name: it opens nothing."""
        key = secrets.token_urlsafe(24)
        hashed = key_hash(key)
        now = self.leads.clock.now()
        await self.repo.web_form_keys.insert_one({"_id": hashed, "campaign_id": campaign_id, "created_at": now})
        previous: dict[str, str | None] = {"hash": None}

        def decide(doc: Document, version: int) -> Change:
            if doc["status"] in (campaign_rules.CampaignStatus.completed, campaign_rules.CampaignStatus.cancelled):
                raise Conflict(f"The campaign is {doc['status']}: it takes no web form.")
            old = doc.get("web_form") or {}
            previous["hash"] = old.get("key_hash")
            doc["web_form"] = {"key_hash": hashed, "enabled_at": now, "enabled_by": principal.user_id}
            doc["updated_at"] = now
            action = "rotated" if old else "enabled"
            return Change(doc, [self._event(doc, version, principal, action)])

        try:
            await self.repo.campaign_store.mutate(campaign_id, decide)
        except BaseException:
            await self.repo.web_form_keys.delete_one({"_id": hashed})
            raise
        if previous["hash"]:
            await self.repo.web_form_keys.delete_one({"_id": previous["hash"]})
        return await self.status(campaign_id, key)

    async def disable(self, principal: Principal, campaign_id: str) -> None:
        now = self.leads.clock.now()
        previous: dict[str, str | None] = {"hash": None}

        def decide(doc: Document, version: int) -> Change:
            old = doc.get("web_form") or {}
            if not old:
                return Change(None)  # off already: nothing changes, no event
            previous["hash"] = old.get("key_hash")
            doc["web_form"] = None
            doc["updated_at"] = now
            return Change(doc, [self._event(doc, version, principal, "disabled")])

        await self.repo.campaign_store.mutate(campaign_id, decide)
        if previous["hash"]:
            await self.repo.web_form_keys.delete_one({"_id": previous["hash"]})

    def _event(self, doc: Document, version: int, principal: Principal, action: str) -> Any:
        data = ev.CampaignWebFormChanged(campaign=campaign_rules.snapshot(doc), action=action)  # type: ignore[arg-type]
        return self.campaigns.event(ev.CAMPAIGN_WEB_FORM_CHANGED, doc["_id"], data, version, principal.user_id)

    # --- the public: posts -------------------------------------------------------------------

    async def _campaign_of(self, key: str) -> Document:
        hashed = key_hash(key)
        found = await self.repo.web_form_keys.find_one({"_id": hashed})
        campaign = await self.repo.campaign_store.get(found["campaign_id"]) if found else None
        form = (campaign or {}).get("web_form") or {}
        if campaign is None or form.get("key_hash") != hashed or campaign["status"] != "active":
            WEB_FORM_POSTS.labels("not_found").inc()
            raise NotFound("No web form here.")
        return campaign

    async def _count(self, counter: str, limit: int, what: str) -> None:
        """One more post in this window for ``counter``; 429 with Retry-After past ``limit``."""
        window = self.settings.web_form_window_seconds
        now = self.leads.clock.now()
        number = int(now.timestamp()) // window
        ends = datetime.fromtimestamp((number + 1) * window, tz=now.tzinfo)
        doc: Document | None = None
        for _ in range(2):  # two first posts at once: one inserts, the other's upsert collides once
            try:
                doc = await self.repo.rate_counters.find_one_and_update(
                    {"_id": f"{counter}:{number}"},
                    {"$inc": {"n": 1}, "$setOnInsert": {"expires_ms": epoch_ms(ends)}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                break
            except DuplicateKeyError:
                continue
        count = int((doc or {}).get("n", limit + 1))
        if count == 1:
            # A counter started: the spent ones go (an index range on their end; each is deleted once,
            # so the cost per post stays constant on average, on both stores, without a TTL monitor).
            await self.repo.rate_counters.delete_many({"expires_ms": {"$lte": epoch_ms(now)}})
        if count > limit:
            WEB_FORM_POSTS.labels("rate_limited").inc()
            retry = max(1, math.ceil((ends - now).total_seconds()))
            raise TooManyRequests(
                f"At most {limit} posts per {window} s from {what}; retry after {retry} s.",
                extra={"limit": limit, "window_seconds": window},
                headers={"Retry-After": str(retry)},
            )

    async def post(self, key: str, address: str | None, fields: dict[str, Any]) -> None:
        """Take one post. Returns for a lead made, a duplicate and a honeypot alike (the caller answers
        202 for each); raises 404, 422, 429."""
        await self._count(f"addr:{address or 'unknown'}", self.settings.web_form_max_per_address, "this address")
        campaign = await self._campaign_of(key)
        await self._count(f"key:{key_hash(key)}", self.settings.web_form_max_per_key, "this form")
        if str(fields.get(HONEYPOT) or "").strip():
            WEB_FORM_POSTS.labels("honeypot").inc()
            await self._tally(campaign["_id"], "honeypot")
            return
        unclean = [
            FieldError(field=name, reason=reason)
            for name, value in fields.items()
            if isinstance(value, str) and (reason := control_character(value, multi_line=name == "message"))
        ]
        if unclean:
            WEB_FORM_POSTS.labels("invalid").inc()
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in unclean), errors=unclean)
        try:
            data = WebLeadIn.model_validate(fields)
        except ValidationError as exc:
            WEB_FORM_POSTS.labels("invalid").inc()
            errors = field_errors_from_pydantic(exc.errors())
            errors = [e.model_copy(update={"field": "phone"}) if e.field == "body" else e for e in errors]
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors) from exc
        lead = LeadIn(
            company_name=data.company,
            contact_name=data.name,
            phones=[data.phone] if data.phone else [],
            emails=[data.email] if data.email else [],
            notes=data.message,
            source=LeadSource.web_form,
            campaign_id=campaign["_id"],
            in_pool=True,
        )
        # The system acting for the form: the lead enters the lead pool of the campaign's department.
        actor = Principal(
            user_id=f"web-form:{campaign['_id']}",
            department_id=campaign.get("department_id"),
            department_path=campaign.get("department_path"),
            scopes={"leads": "own"},
        )
        try:
            await self.leads.create(actor, lead, via="web_form")
        except Duplicate:
            WEB_FORM_POSTS.labels("duplicate").inc()
            await self._tally(campaign["_id"], "duplicates")
            return
        WEB_FORM_POSTS.labels("created").inc()
        await self._tally(campaign["_id"], "created")

    async def _tally(self, campaign_id: str, what: str) -> None:
        now = self.leads.clock.now()
        await self.repo.web_form_stats.update_one(
            {"_id": campaign_id}, {"$inc": {what: 1}, "$set": {f"last_{what}_at": now}}, upsert=True
        )
