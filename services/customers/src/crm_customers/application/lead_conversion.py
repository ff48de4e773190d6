"""The customers service's part of a lead's conversion: ``crm.lead.conversion_requested`` in,
``crm.customer.lead_linked`` or ``crm.customer.lead_refused`` out.

A new customer is made under the id the conversion chose, with its contact under the contact id
it chose, by the same rules as ``POST /v1/customers`` (validation, custom fields, the duplicate
check by keys, the owner's holding limit): one insert carries ``crm.customer.created``
(``via="lead"``, ``lead_id``) and ``lead_linked``. An existing customer gets the contact
(``contact_added``) and ``lead_linked`` in one guarded write. Either way the customer records
the lead (``lead_ids``) and the conversion (``lead_conversions``).

A refusal writes no customer: it is a document of its own in ``lead_conversions`` (keyed by the
conversion id, with its outbox) carrying ``lead_refused`` with the field errors, so state and
event are still one write.

Redelivery is idempotent: a conversion the customer (or a refusal) records already is answered
by that write's events, which are in the outbox already; nothing is written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from pymongo.errors import DuplicateKeyError

from crm_customers.adapters.repository import DuplicateKeys
from crm_customers.application.customers import Customers
from crm_customers.domain import rules
from crm_customers.domain.model import ContactIn, CustomerCreate, Source
from crm_platform.auth import Principal
from crm_platform.consumer import Handler
from crm_platform.contracts import customers as ev
from crm_platform.contracts import leads as lev
from crm_platform.errors import DomainError, FieldError, NotFound, field_errors_from_pydantic
from crm_platform.events import EventEnvelope
from crm_platform.store import Change, VersionedStore

Document = dict[str, Any]
COLLECTION = "lead_conversions"
#: A lead's source as a customer's (the lead's own when customers know it, else ``lead_conversion``).
SOURCES = {"web": Source.website.value} | {s.value: s.value for s in Source}


class Refused(Exception):
    """The conversion cannot be done: why, and the field errors."""

    def __init__(self, reason: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []


class LeadConversions:
    def __init__(self, service: Customers, collection: Any, wake_relay: Callable[[], None]) -> None:
        self.service = service
        self.repo = service.repo
        #: ``lead_conversions``: the refusals (a conversion made or linked is recorded on its customer).
        self.collection = collection
        self.store = VersionedStore(collection, service.clock, wake_relay=wake_relay)

    def handlers(self) -> Mapping[str, Handler]:
        return {lev.LEAD_CONVERSION_REQUESTED.name: self.requested}

    async def requested(self, envelope: EventEnvelope) -> None:
        data = lev.LEAD_CONVERSION_REQUESTED.parse(envelope)
        await self.convert(data.lead.lead_id, data.conversion)

    async def convert(self, lead_id: str, conversion: lev.Conversion) -> None:
        if await self.store.get(conversion.conversion_id) is not None:
            return  # refused already: the refusal is in that record's outbox
        try:
            if conversion.existing_customer:
                await self._link(lead_id, conversion)
            else:
                await self._create(lead_id, conversion)
        except Refused as refused:
            await self._refuse(lead_id, conversion, refused)

    # --- a new customer ---------------------------------------------------------------------------

    def _customer_data(self, conversion: lev.Conversion) -> CustomerCreate:
        contact = conversion.contact
        fields: Document = {
            "kind": conversion.customer_kind,
            "name": conversion.customer_name,
            "phones": conversion.phones,
            "emails": conversion.emails,
            "industry": conversion.industry,
            "source": SOURCES.get(conversion.source or "", Source.lead_conversion.value),
            "contacts": [
                {"name": contact.name, "title": contact.title, "phones": contact.phones, "emails": contact.emails}
            ]
            if contact is not None
            else [],
        }
        try:
            return CustomerCreate.model_validate({k: v for k, v in fields.items() if v is not None})
        except PydanticValidationError as exc:
            errors = field_errors_from_pydantic(exc.errors())
            raise Refused("The customer the lead would become has invalid fields.", errors) from exc

    async def _create(self, lead_id: str, conversion: lev.Conversion) -> None:
        existing = await self.repo.get(conversion.customer_id)
        if existing is not None:
            if conversion.conversion_id in (existing.get("lead_conversions") or []):
                return  # made already: its events are in its outbox
            raise Refused(f"A customer with the id {conversion.customer_id} exists already.")
        data = self._customer_data(conversion)
        owner = Principal(
            user_id=conversion.owner_id,
            department_id=conversion.department_id,
            department_path=conversion.department_path,
        )
        try:
            custom = (await self.service.fieldset()).validate(None)
            contact_custom = await self.service.contacts_custom(data)
            doc = rules.new_customer(
                data, owner, conversion.requested_at, conversion.customer_id, custom, contact_custom
            )
        except DomainError as exc:
            raise Refused(exc.detail, exc.errors) from exc
        if conversion.contact is not None:
            doc["contacts"][0]["contact_id"] = conversion.contact.contact_id
            doc["contacts"][0]["is_primary"] = True
        doc["created_by"] = doc["updated_by"] = conversion.requested_by
        doc["lead_ids"] = [lead_id]
        doc["lead_conversions"] = [conversion.conversion_id]
        rules.refresh_derived(doc)
        snapshot = rules.snapshot(doc)
        actor = conversion.requested_by
        created = ev.CustomerCreated(
            customer=snapshot,
            contacts=[rules.contact_data(c) for c in doc["contacts"]],
            via="lead",
            lead_id=lead_id,
        )
        linked = ev.LeadLinked(
            customer=snapshot,
            lead_id=lead_id,
            conversion_id=conversion.conversion_id,
            contact_id=conversion.contact.contact_id if conversion.contact else None,
            created=True,
        )
        events = [
            self.service.events(ev.CUSTOMER_CREATED, doc["_id"], created, 1, actor),
            self.service.events(ev.LEAD_LINKED, doc["_id"], linked, 1, actor),
        ]
        async with self.repo.owner_lock(doc["owner_id"]) as holding:
            try:
                await self.service._check_owner_limit(holding, doc.get("department_path"))
            except DomainError as exc:
                raise Refused(exc.detail, [FieldError(field="owner_id", reason=exc.detail)]) from exc
            try:
                await self.repo.insert_new(doc, events)
                holding.took()
            except DuplicateKeys as exc:
                error = self.service._duplicate_error(doc, exc.holders)
                raise Refused(error.detail, error.errors) from exc
            except DuplicateKeyError as exc:
                again = await self.repo.get(conversion.customer_id)
                if again is not None and conversion.conversion_id in (again.get("lead_conversions") or []):
                    return  # a redelivery racing this one made it
                error = self.service._unique_violation(exc, doc)
                raise Refused(error.detail, error.errors) from exc

    # --- an existing customer ---------------------------------------------------------------------

    async def _link(self, lead_id: str, conversion: lev.Conversion) -> None:
        contact = None
        if conversion.contact is not None:
            spec = conversion.contact
            try:
                data = ContactIn(name=spec.name, title=spec.title, phones=spec.phones, emails=spec.emails)
            except PydanticValidationError as exc:
                errors = [
                    FieldError(field=f"contact.{e.field}", reason=e.reason, code=e.code)
                    for e in field_errors_from_pydantic(exc.errors())
                ]
                raise Refused("The contact the lead would become has invalid fields.", errors) from exc
            try:
                custom = (await self.service.fieldset("contacts")).validate(None)
            except DomainError as exc:
                raise Refused(exc.detail, exc.errors) from exc
            contact = rules.new_contact(data, conversion.requested_at, conversion.requested_by, custom)
            contact["contact_id"] = spec.contact_id
        actor = conversion.requested_by
        now = self.service.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if conversion.conversion_id in (doc.get("lead_conversions") or []):
                return Change(None)  # linked already
            if doc.get("status") != "active":
                raise Refused(
                    f"The customer {conversion.customer_id} is {doc.get('status')}.",
                    [FieldError(field="customer_id", reason=f"the customer is {doc.get('status')}")],
                )
            events = []
            if contact is not None:
                if len(doc.get("contacts") or []) >= 100:
                    raise Refused(
                        "The customer has 100 contacts already.",
                        [FieldError(field="contact", reason="a customer has at most 100 contacts")],
                    )
                doc.setdefault("contacts", []).append(contact)
            doc["lead_ids"] = [*(doc.get("lead_ids") or []), lead_id]
            doc["lead_conversions"] = [*(doc.get("lead_conversions") or []), conversion.conversion_id]
            doc["updated_at"] = now
            doc["updated_by"] = actor
            rules.refresh_derived(doc)
            snapshot = rules.snapshot(doc)
            if contact is not None:
                added = ev.ContactAdded(customer=snapshot, contact=rules.contact_data(contact))
                events.append(self.service.events(ev.CONTACT_ADDED, doc["_id"], added, version, actor))
            linked = ev.LeadLinked(
                customer=snapshot,
                lead_id=lead_id,
                conversion_id=conversion.conversion_id,
                contact_id=contact["contact_id"] if contact is not None else None,
                created=False,
            )
            events.append(self.service.events(ev.LEAD_LINKED, doc["_id"], linked, version, actor))
            return Change(doc, events)

        try:
            await self.repo.mutate(conversion.customer_id, decide)
        except NotFound as exc:
            raise Refused(
                f"No customer {conversion.customer_id}.",
                [FieldError(field="customer_id", reason="no such customer")],
            ) from exc

    # --- a refusal --------------------------------------------------------------------------------

    async def _refuse(self, lead_id: str, conversion: lev.Conversion, refused: Refused) -> None:
        data = ev.LeadRefused(
            customer_id=conversion.customer_id,
            lead_id=lead_id,
            conversion_id=conversion.conversion_id,
            reason=refused.reason,
            errors=[e.model_dump(mode="json", exclude_none=True) for e in refused.errors],
        )
        record: Document = {
            "_id": conversion.conversion_id,
            "lead_id": lead_id,
            "customer_id": conversion.customer_id,
            "outcome": "refused",
            "reason": refused.reason,
            "errors": data.errors,
            "at": self.service.clock.now(),
        }
        event = self.service.events(ev.LEAD_REFUSED, conversion.customer_id, data, 1, conversion.requested_by)
        try:
            await self.store.insert(record, [event])
        except DuplicateKeyError:
            return  # a redelivery racing this one refused it already
