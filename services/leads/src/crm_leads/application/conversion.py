"""Converting a qualified lead into a customer + contact (+ opportunity), by events alone.

The leads service writes no other service's database: ``convert`` records the conversion on the
lead (status ``converting``) with ``crm.lead.conversion_requested`` in one guarded write, every id
chosen up front; the customers service answers on ``crm.customers.v1`` (``lead_linked`` or
``lead_refused``), the pipeline service on ``crm.pipeline.v1`` (``opportunity.created`` with the
lead's id, or ``opportunity.lead_refused``). Each answer moves the lead on in one guarded write with
its event (:mod:`crm_leads.domain.conversion`); an answer for another attempt, or one applied
already (a redelivery), changes nothing. A crash anywhere resumes: the outbox publishes what was
written, consumers are at-least-once, and the ids in the command make a redelivery make nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from crm_leads.adapters.repository import LeadRepository
from crm_leads.application.leads import MODULE, Leads
from crm_leads.domain import conversion as conv
from crm_leads.domain import leads as rules
from crm_leads.domain.conversion import ConversionState, ConvertIn
from crm_leads.domain.model import LeadStatus
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.consumer import Handler
from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as ev
from crm_platform.contracts import pipeline as pev
from crm_platform.errors import Conflict, FieldError, Forbidden, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.permissions import Permission
from crm_platform.store import Change

Document = dict[str, Any]


class Conversions:
    def __init__(self, repo: LeadRepository, leads: Leads, clock: Clock, source: str) -> None:
        self.repo = repo
        self.leads = leads
        self.clock = clock
        self.event = EventFactory(source, clock)

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(lead=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    # --- the request ------------------------------------------------------------------------------

    async def convert(
        self, principal: Principal, lead_id: str, body: ConvertIn, expected_version: int | None
    ) -> Document:
        """The lead, ``converting`` with its conversion requested (or as it was, when a conversion is
        under way already: a repeated call asks nothing twice)."""
        current = await self.leads.get(principal, lead_id)
        if current["status"] == LeadStatus.converting.value:
            return current
        conv.ensure_convertible(current)
        if body.customer_id is None and not principal.holds(Permission.customers_create):
            raise Forbidden("Converting into a new customer needs the permission customers:create.")
        if body.opportunity is not None and not principal.holds(Permission.opportunities_create):
            raise Forbidden("Converting with an opportunity needs the permission opportunities:create.")
        owner_id, department_id, department_path = await self._owner(principal, current, body.owner_id)
        overrides = body.customer.model_dump(exclude_none=True) if body.customer else {}
        kind = str(overrides.get("kind", "company"))
        name = str(overrides.get("name") or current["company_name"])
        if body.customer_id is not None:
            await self._ensure_linkable(body.customer_id)
        else:
            await self._ensure_not_a_customer(current, kind, name)
        contact = body.contact if "contact" in body.model_fields_set else conv.default_contact(current)
        attempt = int(current.get("conversion_attempts") or 0) + 1
        now = self.clock.now()
        command = ev.Conversion(
            conversion_id=conv.conversion_id(lead_id, attempt),
            customer_id=body.customer_id or str(uuid.uuid4()),
            existing_customer=body.customer_id is not None,
            customer_kind="person" if kind == "person" else "company",
            customer_name=name,
            # The lead's phones and emails are its contact's when one is made, else the customer's own.
            phones=[] if contact is not None else list(current.get("phones") or []),
            emails=[] if contact is not None else list(current.get("emails") or []),
            industry=overrides.get("industry", current.get("industry")),
            region=overrides.get("region", current.get("region")),
            source=current.get("source"),
            campaign_id=current.get("campaign_id"),
            owner_id=owner_id,
            department_id=department_id,
            department_path=department_path,
            contact=ev.ConversionContact(contact_id=str(uuid.uuid4()), **contact.model_dump(mode="json"))
            if contact is not None
            else None,
            opportunity=ev.ConversionOpportunity(
                opportunity_id=str(uuid.uuid4()), **body.opportunity.model_dump(mode="json")
            )
            if body.opportunity is not None
            else None,
            requested_by=principal.user_id,
            requested_at=now,
        )

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                raise Conflict(f"The lead {lead_id} was deleted.")
            if doc["status"] == LeadStatus.converting.value:
                return Change(None)  # a racing call started it: answer with that conversion
            if int(doc.get("conversion_attempts") or 0) + 1 != attempt:
                raise Conflict("The lead changed while it was being converted; try again.")
            conv.start(doc, command, attempt, now)
            event = self._event(ev.LEAD_CONVERSION_REQUESTED, doc, version, principal.user_id, conversion=command)
            return Change(doc, [event])

        return await self.repo.store.mutate(lead_id, decide, expected_version=expected_version, current=current)

    async def _owner(
        self, principal: Principal, lead: Document, owner_id: str | None
    ) -> tuple[str, str | None, str | None]:
        if owner_id is None:
            if lead.get("owner_id"):
                return str(lead["owner_id"]), lead.get("department_id"), lead.get("department_path")
            return principal.user_id, principal.department_id, principal.department_path
        user = await self.repo.directory_users.find_one({"_id": owner_id})
        if user is None or user.get("status", "active") != "active":
            raise ValidationFailed.for_field("owner_id", f"no active user {owner_id} in the directory")
        if not principal.reaches_path(user.get("department_path"), MODULE) and owner_id != principal.user_id:
            raise ValidationFailed.for_field("owner_id", "outside the departments your leads scope reaches")
        return owner_id, user.get("department_id"), user.get("department_path")

    async def _ensure_linkable(self, customer_id: str) -> None:
        copy = await self.repo.customer(customer_id)
        if copy is None or copy.get("status") == "purged":
            raise ValidationFailed.for_field("customer_id", f"no customer {customer_id}")
        if copy.get("status") != "active":
            raise ValidationFailed.for_field("customer_id", f"the customer {customer_id} is {copy.get('status')}")

    async def _ensure_not_a_customer(self, lead: Document, kind: str, name: str) -> None:
        """409 when a customer holds the company (or a phone, an email) already: link to it instead."""
        keys = rules.customer_keys(kind, name, lead.get("phones") or [], lead.get("emails") or [])
        fields = {k: f for k, f in rules.keys_of(lead).items() if k in keys}
        fields.update({k: "customer.name" for k in keys if k.startswith("name:") and k not in fields})
        holders = await self.repo.customer_keys.holders(keys)
        for key, ids in sorted(holders.items()):
            for holder in ids:
                copy = await self.repo.customer(holder)
                if copy is None or key not in (copy.get("keys") or []) or copy.get("status") != "active":
                    continue
                owner = copy.get("owner_id") or ""
                whose = f"owned by {owner}" if owner else "in the public pool"
                raise Conflict(
                    f"The lead's company is already a customer ({holder}) {whose}: convert with "
                    f'"customer_id": "{holder}" to link to it.',
                    errors=[
                        FieldError(
                            field=fields.get(key, "company_name"),
                            reason=f"already a customer ({holder}) {whose}",
                            code="duplicate-customer",
                            params={"customer_id": holder, "owner_id": owner},
                        )
                    ],
                    extra={"customer_id": holder, "owner_id": copy.get("owner_id")},
                )

    # --- the answers ------------------------------------------------------------------------------

    def handlers(self) -> Mapping[str, Handler]:
        return {
            cev.LEAD_LINKED.name: self.customer_linked,
            cev.LEAD_REFUSED.name: self.customer_refused,
            pev.OPPORTUNITY_CREATED.name: self.opportunity_created,
            pev.OPPORTUNITY_LEAD_REFUSED.name: self.opportunity_refused,
        }

    async def _answer(self, lead_id: str, decide: Any) -> None:
        """Apply an answer to a lead of this service (another service's copy of the topic may carry
        answers for leads this database does not have)."""
        if await self.repo.get(lead_id) is None:
            return
        await self.repo.store.mutate(lead_id, decide)

    async def customer_linked(self, envelope: EventEnvelope) -> None:
        data = cev.LEAD_LINKED.parse(envelope)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if conv.current(doc, data.conversion_id, ConversionState.requested) is None:
                return Change(None)
            contact_id = data.contact_id or doc["conversion"].get("contact_id")
            if doc["conversion"].get("opportunity_id"):
                conv.customer_done(doc, data.customer.customer_id, contact_id, now)
                event = self._event(
                    ev.LEAD_CONVERSION_PROGRESSED,
                    doc,
                    version,
                    None,
                    conversion=conv.command_of(doc),
                    step="customer",
                    customer_id=data.customer.customer_id,
                    contact_id=contact_id,
                )
                return Change(doc, [event])
            doc["conversion"]["customer_id"] = data.customer.customer_id
            doc["conversion"]["contact_id"] = contact_id
            return self._finish(doc, version, now)

        await self._answer(data.lead_id, decide)

    async def opportunity_created(self, envelope: EventEnvelope) -> None:
        opportunity = pev.OPPORTUNITY_CREATED.parse(envelope).opportunity
        lead_id = opportunity.lead_id
        if not lead_id:
            return
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            conversion = doc.get("conversion") or {}
            if conv.current(doc, conversion.get("conversion_id", ""), ConversionState.customer_done) is None:
                return Change(None)
            if conversion.get("opportunity_id") != opportunity.opportunity_id:
                return Change(None)  # an opportunity of another attempt (or made by hand for the lead)
            return self._finish(doc, version, now)

        await self._answer(lead_id, decide)

    def _finish(self, doc: Document, version: int, now: Any) -> Change:
        conv.finish(doc, now)
        conversion = doc["conversion"]
        event = self._event(
            ev.LEAD_CONVERTED,
            doc,
            version,
            None,
            conversion_id=conversion["conversion_id"],
            customer_id=doc["customer_id"],
            contact_id=doc.get("contact_id"),
            opportunity_id=doc.get("opportunity_id"),
            existing_customer=bool(conversion.get("existing_customer")),
        )
        return Change(doc, [event])

    async def customer_refused(self, envelope: EventEnvelope) -> None:
        data = cev.LEAD_REFUSED.parse(envelope)
        await self._refused(data.lead_id, data.conversion_id, "customer", data.reason, data.errors)

    async def opportunity_refused(self, envelope: EventEnvelope) -> None:
        data = pev.OPPORTUNITY_LEAD_REFUSED.parse(envelope)
        await self._refused(data.lead_id, data.conversion_id, "opportunity", data.reason, data.errors)

    async def _refused(self, lead_id: str, conversion_id: str, step: Any, reason: str, errors: list[Any]) -> None:
        now = self.clock.now()
        expected = ConversionState.requested if step == "customer" else ConversionState.customer_done

        def decide(doc: Document, version: int) -> Change:
            if conv.current(doc, conversion_id, expected) is None:
                return Change(None)
            conv.fail(doc, step, reason, errors, now)
            event = self._event(
                ev.LEAD_CONVERSION_FAILED,
                doc,
                version,
                None,
                conversion_id=conversion_id,
                step=step,
                reason=reason,
                errors=errors,
            )
            return Change(doc, [event])

        await self._answer(lead_id, decide)
