"""Use cases of the customers service, one method each.

Each reads what it needs, applies the domain rules, and stores the new state with
its events in one write (through :class:`VersionedStore`). A rule that fails raises
before anything is written, so there is never a half-done change nor an event for
a change that did not happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pymongo.errors import DuplicateKeyError

from crm_customers.adapters.claim_rules import ClaimRulesCopy
from crm_customers.adapters.repository import CustomerRepository, DuplicateKeys, OwnerHolding
from crm_customers.application.duplicates import DuplicateFinder, describe_match
from crm_customers.domain import rules
from crm_customers.domain.model import ContactIn, ContactPatch, CustomerCreate, CustomerPatch
from crm_customers.settings import CustomersSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock, as_utc
from crm_platform.contracts import customers as ev
from crm_platform.contracts import pool
from crm_platform.customfield_store import CustomFields
from crm_platform.customfields import FieldSet
from crm_platform.errors import (
    Conflict,
    DomainError,
    Duplicate,
    FieldError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
    field_errors_from_pydantic,
)
from crm_platform.events import EventEnvelope, EventFactory, EventType
from crm_platform.idempotency import IdempotencyKey, create_once
from crm_platform.permissions import Permission
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.store import Change, Decide

Document = dict[str, Any]
#: The modules of custom fields this service validates against: customers, and their contacts.
MODULE = "customers"
CONTACTS = "contacts"
#: How long after a claim a rep who lost the race (and can no longer see the customer) is told who won.
JUST_CLAIMED = timedelta(minutes=10)
#: What "copy" carries over to the new customer: the profile, never what identifies the original.
COPIED_FIELDS = (
    "industry",
    "size",
    "address",
    "source",
    "tier",
    "lifecycle_stage",
    "website",
    "description",
    "tags",
)


class Customers:
    def __init__(
        self,
        repo: CustomerRepository,
        clock: Clock,
        settings: CustomersSettings,
        source: str,
        claim_rules: ClaimRulesCopy | None = None,
        directory: DirectoryReadModel | None = None,
        fields: CustomFields | None = None,
    ) -> None:
        self.repo = repo
        #: Administrators' custom fields of customers (module ``customers``); None: none defined anywhere.
        self.fields = fields
        self.claim_rules = claim_rules
        self.directory = directory
        self.clock = clock
        self.settings = settings
        self.source = source
        self.events = EventFactory(source, clock)
        self.duplicates = DuplicateFinder(repo, settings.similar_name_threshold)

    # --- helpers -------------------------------------------------------------------

    def _event(
        self, event_type: EventType[Any], doc: Document, data: BaseModel, version: int, actor: str
    ) -> tuple[str, EventEnvelope]:
        return self.events(event_type, doc["_id"], data, version, actor)

    async def _visible(self, principal: Principal, customer_id: str) -> Document:
        return rules.ensure_visible(principal, await self.repo.get(customer_id), customer_id)

    async def holding_limit(self, department_path: str | None) -> rules.HoldingLimit:
        """The limit for an owner in ``department_path``: the pool's rules (read copy), else the setting."""
        claim_rules = await self.claim_rules.current() if self.claim_rules is not None else []
        return rules.holding_limit(claim_rules, department_path, self.settings.max_customers_per_rep)

    async def _check_owner_limit(self, holding: OwnerHolding, department_path: str | None) -> None:
        """Under the owner's lease: refuse if one more would take them past their limit."""
        limit = await self.holding_limit(department_path)
        held = await self.repo.ensure_room(holding, limit.limit)
        if held >= limit.limit:
            raise limit_reached(holding.owner_id, held, limit)

    async def _owner_path(self, owner_id: str, fallback: str | None) -> str | None:
        """Where an owner works, for their holding limit: the directory's copy if it knows them."""
        user = await self.directory.user(owner_id) if self.directory is not None else None
        return str(user["department_path"]) if user is not None and user.get("department_path") else fallback

    async def _exact_matches(self, doc: Document) -> list[Document]:
        return await self.repo.exact_matches(
            kind=doc["kind"],
            name_normalised=doc["name_normalised"],
            uscc=doc.get("uscc"),
            phones=doc["match_phones"],
            emails=doc["match_emails"],
        )

    @staticmethod
    def _unique_violation(exc: DuplicateKeyError, doc: Document) -> Duplicate:
        field = "uscc" if "uscc" in str(exc) else "name"
        return Duplicate(
            f"Another active customer has this {field} ({doc.get(field)}); it was entered first.",
            errors=[FieldError(field=field, reason="already used by another active customer")],
        )

    async def fieldset(self, module: str = MODULE) -> FieldSet:
        """A module's custom fields (customers, contacts) as writes validate against them."""
        return await self.fields.fieldset(module) if self.fields is not None else FieldSet({})

    async def contacts_custom(self, data: CustomerCreate) -> list[Document]:
        """The custom values of each contact a new customer comes with, as validated (errors name
        ``contacts[i].custom.<key>``, all of them at once)."""
        fields = await self.fieldset(CONTACTS)
        out: list[Document] = []
        errors: list[FieldError] = []
        for i, contact in enumerate(data.contacts):
            try:
                out.append(fields.validate(contact.custom, prefix=f"contacts[{i}]."))
            except ValidationFailed as exc:
                errors += exc.errors
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
        return out

    # --- create and read -------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        data: CustomerCreate,
        *,
        via: Literal["api", "import"] = "api",
        idempotency: IdempotencyKey | None = None,
    ) -> Document:
        now = self.clock.now()
        custom = (await self.fieldset()).validate(data.custom)
        contact_custom = await self.contacts_custom(data)
        doc = rules.new_customer(
            data, principal, now, idempotency.record_id if idempotency else None, custom, contact_custom
        )
        if idempotency is not None:
            idempotency.stamp(doc)
        # No duplicate lookup up front: claiming the keys in insert_new is the check (a key held by
        # a live customer refuses the create with that customer's details), one command instead of two.
        event = self._event(
            ev.CUSTOMER_CREATED,
            doc,
            ev.CustomerCreated(
                customer=rules.snapshot(doc), contacts=[rules.contact_data(c) for c in doc["contacts"]], via=via
            ),
            1,
            principal.user_id,
        )
        async with self.repo.owner_lock(doc["owner_id"]) as holding:
            try:
                await self._check_owner_limit(holding, doc.get("department_path"))
            except Conflict:
                # A full owner entering a customer that exists already: "it exists, owned by …"
                # tells them more than the limit does (and the limit changes nothing about it).
                matches = await self._exact_matches(doc)
                if matches:
                    raise self._duplicate_error(doc, matches) from None
                raise
            try:
                stored = await self.repo.insert_new(doc, [event])
                holding.took()
                return stored
            except DuplicateKeys as exc:
                # Lost a race with another create of the same customer: its keys were claimed first.
                raise self._duplicate_error(doc, exc.holders) from exc
            except DuplicateKeyError as exc:
                # Lost a race with another create of the same customer: the unique keys decide.
                matches = await self.repo.exact_matches(
                    kind=doc["kind"], name_normalised=doc["name_normalised"], uscc=doc.get("uscc"), phones=[], emails=[]
                )
                raise (self._duplicate_error(doc, matches) if matches else self._unique_violation(exc, doc)) from exc

    async def create_once(self, principal: Principal, data: CustomerCreate, key: IdempotencyKey | None) -> Document:
        """:meth:`create`, safe to retry with the same key: the customer's id comes from the key.

        A retry finds the customer stored under that id, before any duplicate check could
        mistake it for someone else's record; a retry racing its first attempt fails that check
        or collides on ``_id``, and then finds it too. Either way: the first outcome, one record.
        """
        return await create_once(key, self.repo.get, lambda: self.create(principal, data, idempotency=key))

    async def copy(
        self, principal: Principal, customer_id: str, overrides: Document, key: IdempotencyKey | None = None
    ) -> Document:
        """A new customer with this one's profile (not its identity: USCC, phones, emails, contacts)."""
        original = await self._visible(principal, customer_id)
        profile = {f: original.get(f) for f in COPIED_FIELDS if original.get(f) is not None}
        # Custom values of fields still active are copied like the profile (archived ones take no new values).
        active = (await self.fieldset()).active
        custom = {k: v for k, v in (original.get("custom") or {}).items() if k in active}
        fields = {"kind": original["kind"], **profile, **({"custom": custom} if custom else {}), **overrides}
        try:
            data = CustomerCreate.model_validate(fields)
        except PydanticValidationError as exc:
            raise ValidationFailed(
                "The copy has invalid fields.", errors=field_errors_from_pydantic(exc.errors())
            ) from exc
        return await self.create_once(principal, data, key)

    def _duplicate_error(self, doc: Document, matches: Sequence[Document]) -> Duplicate:
        first = matches[0]
        described = [describe_match(doc, m) for m in matches]
        owner = first.get("owner_id")
        where = (
            "in the recycle bin"
            if first.get("status") == "deleted"
            else ("in the public pool" if first.get("in_pool") else f"owned by {owner}")
        )
        return Duplicate(
            f"This customer already exists as '{first['name']}' ({first['_id']}), {where}; "
            "the first to enter a customer owns it.",
            errors=[
                FieldError(field=f, reason=f"matches existing customer {first['_id']}")
                for f in described[0]["matched_on"]
            ],
            extra={"existing": described},
        )

    async def get(self, principal: Principal, customer_id: str) -> Document:
        doc = await self._visible(principal, customer_id)
        if doc.get("status") == "deleted" and not principal.holds(Permission.customers_recycle_bin):
            raise NotFound(f"No customer with id {customer_id}.")
        return doc

    async def lookup(self, principal: Principal, ids: Sequence[str]) -> list[Document]:
        """The customers among ``ids`` the caller may see (as :meth:`get` would answer), in the
        order asked, each once, read in one command (``$in`` on ``_id`` is index-served)."""
        wanted = list(dict.fromkeys(ids))
        found = await self.repo.get_many(wanted)
        out = []
        for customer_id in wanted:
            doc = found.get(customer_id)
            if doc is None or doc.get("status") == "purged" or not rules.can_view(principal, doc):
                continue
            if doc.get("status") == "deleted" and not principal.holds(Permission.customers_recycle_bin):
                continue
            out.append(doc)
        return out

    # --- profile ---------------------------------------------------------------------

    async def update(
        self, principal: Principal, customer_id: str, patch: CustomerPatch, expected_version: int | None
    ) -> Document:
        fieldset = await self.fieldset()

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            rules.ensure_can_edit(principal, doc)
            changes = rules.apply_patch(doc, patch)
            if "custom" in patch.model_fields_set and patch.custom is not None:
                # Validated against the stored values (a deactivated option a record holds may stay).
                changes += rules.apply_custom(doc, fieldset.validate(patch.custom, doc.get("custom") or {}))
            if not changes:
                return Change(None)
            rules.touch(doc, principal, self.clock.now())
            data = ev.CustomerUpdated(customer=rules.snapshot(doc), changes=changes)
            return Change(doc, [self._event(ev.CUSTOMER_UPDATED, doc, data, version, principal.user_id)])

        doc = await self._visible(principal, customer_id)
        await self._ensure_no_conflicting_keys(doc, patch)
        try:
            return await self.repo.mutate(customer_id, decide, expected_version=expected_version)
        except DuplicateKeyError as exc:
            raise self._unique_violation(exc, patch.model_dump()) from exc

    async def _ensure_no_conflicting_keys(self, doc: Document, patch: CustomerPatch) -> None:
        sent = patch.model_fields_set
        probe = dict(doc)
        probe.update({k: v for k, v in patch.model_dump(mode="json").items() if k in sent})
        probe = rules.refresh_derived(probe)
        matches = await self.repo.exact_matches(
            kind=probe["kind"],
            name_normalised=probe["name_normalised"] if "name" in sent else None,
            uscc=probe.get("uscc") if "uscc" in sent else None,
            phones=[p for p in probe["match_phones"] if p not in doc.get("match_phones", [])],
            emails=[e for e in probe["match_emails"] if e not in doc.get("match_emails", [])],
            exclude_id=doc["_id"],
        )
        if matches:
            raise self._duplicate_error(probe, matches)

    # --- contacts ----------------------------------------------------------------------

    async def add_contact(
        self,
        principal: Principal,
        customer_id: str,
        data: ContactIn,
        expected_version: int | None,
        key: IdempotencyKey | None = None,
    ) -> tuple[Document, Document]:
        """Add a contact; with a key its id comes from the key, so a retry finds it instead of adding another."""
        custom = (await self.fieldset(CONTACTS)).validate(data.custom)
        contact = rules.new_contact(data, self.clock.now(), principal.user_id, custom)
        if key is not None:
            contact["contact_id"] = key.record_id
            key.stamp(contact)
            # Checked before the write: a retry's If-Match is stale by the first attempt's own change.
            if (earlier := await self._added_before(principal, customer_id, key)) is not None:
                return earlier

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            if any(c["contact_id"] == contact["contact_id"] for c in doc.get("contacts") or []):
                return Change(None)  # a racing attempt with the same key added it: no second contact
            rules.ensure_can_edit(principal, doc, rules.CONTACTS)
            if len(doc.get("contacts") or []) >= 100:
                raise ValidationFailed.for_field("contacts", "a customer has at most 100 contacts")
            if contact["is_primary"]:
                for other in doc["contacts"]:
                    other["is_primary"] = False
            doc["contacts"].append(contact)
            rules.touch(doc, principal, self.clock.now())
            data_ = ev.ContactAdded(customer=rules.snapshot(doc), contact=rules.contact_data(contact))
            return Change(doc, [self._event(ev.CONTACT_ADDED, doc, data_, version, principal.user_id)])

        try:
            doc = await self.repo.mutate(customer_id, decide, expected_version=expected_version)
        except PreconditionFailed:
            # A racing attempt with the same key moved the version first: answer with its contact.
            if key is None or (earlier := await self._added_before(principal, customer_id, key)) is None:
                raise
            return earlier
        stored = rules.find_contact(doc, contact["contact_id"])
        # The contact built here is in the document only if this call wrote it; any other is an earlier attempt's.
        return doc, (key.replay(stored) if key is not None and stored is not contact else stored)

    async def _added_before(
        self, principal: Principal, customer_id: str, key: IdempotencyKey
    ) -> tuple[Document, Document] | None:
        doc = await self._visible(principal, customer_id)
        earlier = next((c for c in doc.get("contacts") or [] if c["contact_id"] == key.record_id), None)
        return None if earlier is None else (doc, key.replay(earlier))

    async def update_contact(
        self, principal: Principal, customer_id: str, contact_id: str, patch: ContactPatch, expected_version: int | None
    ) -> tuple[Document, Document]:
        fields = await self.fieldset(CONTACTS)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            rules.ensure_can_edit(principal, doc, rules.CONTACTS)
            contact, changes = rules.apply_contact_patch(doc, contact_id, patch, self.clock.now(), fields)
            if not changes:
                return Change(None)
            rules.touch(doc, principal, self.clock.now())
            data = ev.ContactChanged(customer=rules.snapshot(doc), contact=rules.contact_data(contact), changes=changes)
            return Change(doc, [self._event(ev.CONTACT_CHANGED, doc, data, version, principal.user_id)])

        doc = await self.repo.mutate(customer_id, decide, expected_version=expected_version)
        return doc, rules.find_contact(doc, contact_id)

    async def remove_contact(
        self, principal: Principal, customer_id: str, contact_id: str, expected_version: int | None
    ) -> Document:
        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            rules.ensure_can_edit(principal, doc, rules.CONTACTS)
            rules.find_contact(doc, contact_id)
            doc["contacts"] = [c for c in doc["contacts"] if c["contact_id"] != contact_id]
            rules.touch(doc, principal, self.clock.now())
            data = ev.ContactRemoved(customer=rules.snapshot(doc), contact_id=contact_id)
            return Change(doc, [self._event(ev.CONTACT_REMOVED, doc, data, version, principal.user_id)])

        return await self.repo.mutate(customer_id, decide, expected_version=expected_version)

    # --- ownership and the public pool -----------------------------------------------------

    async def _owner_department(
        self, owner_id: str, department_id: str | None, department_path: str | None
    ) -> tuple[str | None, str]:
        """The new owner's department: from the directory's read copy, or as given by the caller.

        The copy (fed by ``crm.directory.v1``) is the truth when it knows the user; a path given in
        the request is only for users it does not know (managed elsewhere, or not published yet).
        A deactivated user can not receive customers.
        """
        user = await self.directory.user(owner_id) if self.directory is not None else None
        if user is not None:
            if user.get("status") != "active":
                raise ValidationFailed.for_field("owner_id", "the user is deactivated and can not own customers")
            # Known users are where the directory says: a manager can not place someone elsewhere
            # to get around "only to people in your department".
            if department_path is not None and department_path != user.get("department_path"):
                raise ValidationFailed.for_field(
                    "department_path", f"the directory has this user in {user.get('department_path')}"
                )
            return user.get("department_id"), str(user["department_path"])
        if department_path is None:
            raise ValidationFailed.for_field(
                "department_path", "required: the directory does not know this owner (yet), so give their department"
            )
        return department_id, department_path

    async def assign(
        self,
        principal: Principal,
        customer_id: str,
        owner_id: str,
        department_id: str | None,
        department_path: str | None,
        reason: str | None,
        expected_version: int | None,
    ) -> Document:
        principal.require(Permission.customers_assign)
        department_id, department_path = await self._owner_department(owner_id, department_id, department_path)
        if not principal.reaches_path(department_path, rules.CUSTOMERS):
            raise Forbidden("You may only assign customers to people in your data scope for customers.")

        decide = self._assigning(principal, customer_id, owner_id, department_id, department_path, reason)
        async with self.repo.owner_lock(owner_id) as holding:
            await self._check_owner_limit(holding, department_path)
            assigned = await self.repo.mutate(customer_id, decide, expected_version=expected_version)
            holding.took()  # also when nothing changed: a count too high is checked exactly at the limit
            return assigned

    def _assigning(
        self,
        principal: Principal,
        customer_id: str,
        owner_id: str,
        department_id: str | None,
        department_path: str,
        reason: str | None,
    ) -> Decide:
        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            rules.ensure_active(doc)
            rules.ensure_manager_of(principal, doc, "assign this customer")
            rules.ensure_unlocked(doc)
            if doc.get("owner_id") == owner_id and doc.get("department_path") == department_path:
                return Change(None)
            now = self.clock.now()
            previous = rules.change_owner(doc, owner_id, department_id, department_path, now)
            rules.touch(doc, principal, now)
            data = ev.OwnerChanged(
                customer=rules.snapshot(doc), previous_owner_id=previous, owner_id=owner_id, reason=reason
            )
            return Change(doc, [self._event(ev.OWNER_CHANGED, doc, data, version, principal.user_id)])

        return decide

    async def assign_many(
        self,
        principal: Principal,
        customer_ids: Sequence[str],
        owner_id: str,
        department_id: str | None,
        department_path: str | None,
        reason: str | None,
    ) -> list[AssignOutcome]:
        """Give several customers to one owner: all of them within the owner's holding limit, or
        none (409 naming the owner, what they hold, the limit, its rule and how many too many);
        then each customer on its own, with its own outcome (one that cannot be assigned, being
        locked, out of reach or gone, does not stop the others)."""
        principal.require(Permission.customers_assign)
        department_id, path = await self._owner_department(owner_id, department_id, department_path)
        if not principal.reaches_path(path, rules.CUSTOMERS):
            raise Forbidden("You may only assign customers to people in your data scope for customers.")
        wanted = list(dict.fromkeys(customer_ids))
        async with self.repo.owner_lock(owner_id) as holding:
            # What would come to the owner: those of these customers that can be assigned and are not theirs yet.
            found = await self.repo.get_many(wanted)
            coming = sum(1 for d in found.values() if self._assignable(principal, d, owner_id))
            limit = await self.holding_limit(path)
            held = await self.repo.ensure_room(holding, limit.limit, needed=coming)
            if coming and held + coming > limit.limit:
                over = held + coming - limit.limit
                refusal = limit_reached(owner_id, held, limit)
                refusal.detail = (
                    f"{owner_id} holds {held} customers and may hold {limit.limit} ({limit_where(limit)}): "
                    f"{coming} more would be {over} too many; nothing was assigned."
                )
                refusal.extra.update({"requested": coming, "over_by": over})
                raise refusal
            outcomes = []
            for customer_id in wanted:
                decide = self._assigning(principal, customer_id, owner_id, department_id, path, reason)
                before = found.get(customer_id)
                try:
                    doc = await self.repo.mutate(customer_id, decide)
                except DomainError as exc:
                    outcomes.append(AssignOutcome(customer_id, "failed", exc.status, exc.detail))
                    continue
                changed = before is None or doc.get("version") != before.get("version")
                if changed:
                    holding.took()
                outcomes.append(AssignOutcome(customer_id, "assigned" if changed else "unchanged", 200, None, doc))
            return outcomes

    @staticmethod
    def _assignable(principal: Principal, doc: Document, owner_id: str) -> bool:
        """Whether assigning ``doc`` to ``owner_id`` would give it to them (the assign's own checks)."""
        if doc.get("owner_id") == owner_id or not rules.can_view(principal, doc):
            return False
        try:
            rules.ensure_active(doc)
            rules.ensure_manager_of(principal, doc, "assign this customer")
            rules.ensure_unlocked(doc)
        except DomainError:
            return False
        return True

    async def release(
        self, principal: Principal, customer_id: str, reason: str, expected_version: int | None
    ) -> Document:
        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            rules.ensure_active(doc)
            if doc.get("in_pool"):
                raise Conflict("The customer is already in the public pool.")
            if not principal.can_see_owned(doc.get("owner_id"), doc.get("department_path"), module=rules.CUSTOMERS):
                raise Forbidden("Only the owner and those whose customers scope reaches it may release this customer.")
            rules.ensure_unlocked(doc)
            now = self.clock.now()
            previous = rules.change_owner(doc, None, None, None, now)
            doc["in_pool"] = True
            doc["pool_since"] = now
            doc["release_reason"] = reason
            rules.touch(doc, principal, now)
            data = ev.ReleasedToPool(customer=rules.snapshot(doc), previous_owner_id=previous, reason=reason)
            return Change(doc, [self._event(ev.RELEASED, doc, data, version, principal.user_id)])

        return await self.repo.mutate(customer_id, decide, expected_version=expected_version)

    def _just_claimed(self, doc: Document) -> bool:
        """Claimed from the pool within the last minutes (and still held by that claimant)."""
        claimed_at = doc.get("claimed_at")
        return (
            doc.get("status") == "active"
            and not doc.get("in_pool")
            and isinstance(claimed_at, datetime)
            and doc.get("owner_since") == claimed_at
            and self.clock.now() - as_utc(claimed_at) < JUST_CLAIMED
        )

    async def claim(self, principal: Principal, customer_id: str) -> Document:
        # Visibility is checked on the state the rep asked about (in the pool, hence visible);
        # if another rep claims it first, the retry below must say who won (409), not 404.
        current = await self.repo.get(customer_id)
        if current is not None and not rules.can_view(principal, current) and self._just_claimed(current):
            # Claimed by someone else between the pool list this rep saw and this request: the
            # loser of a race hears who won, as a loser who read it before the winner's write does.
            raise Conflict(
                f"The customer is not in the public pool: it was just claimed by {current.get('owner_id')}.",
                extra={"owner_id": current.get("owner_id")},
            )
        rules.ensure_visible(principal, current, customer_id)
        claim_rules = await self.claim_rules.live() if self.claim_rules is not None else []

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_active(doc)
            if not doc.get("in_pool"):
                if doc.get("owner_id") == principal.user_id:
                    raise Conflict("You already own this customer.")
                raise Conflict(
                    f"The customer is not in the public pool: it is owned by {doc.get('owner_id')}.",
                    extra={"owner_id": doc.get("owner_id")},
                )
            rules.ensure_unlocked(doc)
            now = self.clock.now()
            rules.ensure_may_claim(principal, doc, claim_rules, now)
            rules.change_owner(doc, principal.user_id, principal.department_id, principal.department_path, now)
            doc["claimed_at"] = now
            rules.touch(doc, principal, now)
            data = ev.Claimed(customer=rules.snapshot(doc), owner_id=principal.user_id)
            return Change(doc, [self._event(ev.CLAIMED, doc, data, version, principal.user_id)])

        async with self.repo.owner_lock(principal.user_id) as holding:
            await self._check_owner_limit(holding, principal.department_path)
            # No If-Match: the pool itself is the precondition, so of two reps claiming at once exactly one wins.
            claimed = await self.repo.mutate(customer_id, decide)
            holding.took()
            return claimed

    # --- lock -------------------------------------------------------------------------------

    async def lock(
        self, principal: Principal, customer_id: str, reason: str | None, expected_version: int | None
    ) -> Document:
        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            rules.ensure_can_edit(principal, doc)
            now = self.clock.now()
            doc["locked"] = {"by": principal.user_id, "at": now, "reason": reason}
            rules.touch(doc, principal, now)
            data = ev.Locked(customer=rules.snapshot(doc), reason=reason)
            return Change(doc, [self._event(ev.LOCKED, doc, data, version, principal.user_id)])

        return await self.repo.mutate(customer_id, decide, expected_version=expected_version)

    async def unlock(self, principal: Principal, customer_id: str, expected_version: int | None) -> Document:
        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            lock = doc.get("locked")
            if not lock:
                return Change(None)
            if lock.get("by") != principal.user_id:
                rules.ensure_manager_of(principal, doc, "unlock a customer someone else locked")
            doc["locked"] = None
            rules.touch(doc, principal, self.clock.now())
            data = ev.Unlocked(customer=rules.snapshot(doc))
            return Change(doc, [self._event(ev.UNLOCKED, doc, data, version, principal.user_id)])

        return await self.repo.mutate(customer_id, decide, expected_version=expected_version)

    # --- recycle bin --------------------------------------------------------------------------

    async def delete(
        self, principal: Principal, customer_id: str, reason: str | None, expected_version: int | None
    ) -> Document:
        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            rules.ensure_active(doc)
            # A scope of own deletes only its own customers, and only where the service allows it.
            if not principal.reaches_beyond_own(rules.CUSTOMERS):
                if not (self.settings.reps_may_delete and doc.get("owner_id") == principal.user_id):
                    raise Forbidden(
                        "Your customers scope is your own: deleting customers needs a wider scope"
                        " (or, where CRM_REPS_MAY_DELETE allows it, one of your own customers)."
                    )
            else:
                rules.ensure_manager_of(principal, doc, "delete this customer")
            rules.ensure_unlocked(doc)
            now = self.clock.now()
            doc["status"] = "deleted"
            doc["deleted"] = {"by": principal.user_id, "at": now, "reason": reason}
            rules.touch(doc, principal, now)
            data = ev.Deleted(customer=rules.snapshot(doc), reason=reason)
            return Change(doc, [self._event(ev.DELETED, doc, data, version, principal.user_id)])

        return await self.repo.mutate(customer_id, decide, expected_version=expected_version)

    async def restore(self, principal: Principal, customer_id: str, expected_version: int | None) -> Document:
        """Restore from the recycle bin (managers of the customer's department, admins)."""
        principal.require(Permission.customers_recycle_bin)

        def may_restore(doc: Document) -> None:
            rules.ensure_manager_of(principal, doc, "restore this customer")

        return await self._restore_to_owner(principal, customer_id, expected_version, may_restore)

    async def restore_own(self, principal: Principal, customer_id: str, expected_version: int | None) -> Document:
        """Restore a customer the caller moved to the recycle bin themselves and may still see.

        Whoever was allowed to delete a customer may take that back; someone else's deletion is
        not in their bin (404), whatever their role. The owner's limit and the duplicate check
        hold as for any restore.
        """

        def may_restore(doc: Document) -> None:
            if rules.deleted_by(doc) != principal.user_id:
                raise NotFound(f"No customer with id {customer_id} in your recycle bin.")

        return await self._restore_to_owner(principal, customer_id, expected_version, may_restore)

    async def _restore_to_owner(
        self,
        principal: Principal,
        customer_id: str,
        expected_version: int | None,
        may_restore: Callable[[Document], None],
    ) -> Document:
        # A restored customer goes back to its owner: the owner's limit holds, under their lease.
        current = rules.ensure_visible(principal, await self.repo.get(customer_id), customer_id)
        if current.get("status") == "deleted":
            may_restore(current)  # before the lease: nobody learns another's limit through a refusal
        owner = current.get("owner_id")
        if owner and not current.get("in_pool") and current.get("status") == "deleted":
            department_path = await self._owner_path(owner, current.get("department_path"))
            async with self.repo.owner_lock(owner) as holding:
                await self._check_owner_limit(holding, department_path)
                restored = await self._restore(principal, customer_id, expected_version, owner, may_restore)
                holding.took()
                return restored
        return await self._restore(principal, customer_id, expected_version, owner, may_restore)

    async def _restore(
        self,
        principal: Principal,
        customer_id: str,
        expected_version: int | None,
        owner: str | None,
        may_restore: Callable[[Document], None],
    ) -> Document:
        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)
            if doc.get("status") != "deleted":
                raise Conflict("The customer is not in the recycle bin.")
            if doc.get("owner_id") != owner:
                raise Conflict("The customer changed while it was being restored; try again.")
            may_restore(doc)
            doc["status"] = "active"
            doc["deleted"] = None
            rules.touch(doc, principal, self.clock.now())
            data = ev.Restored(customer=rules.snapshot(doc))
            return Change(doc, [self._event(ev.RESTORED, doc, data, version, principal.user_id)])

        try:
            return await self.repo.mutate(customer_id, decide, expected_version=expected_version)
        except DuplicateKeyError as exc:
            raise Duplicate(
                "An active customer with the same name or USCC was entered while this one was in the recycle bin; "
                "merge them instead of restoring.",
            ) from exc

    async def purge(self, principal: Principal, customer_id: str) -> Document:
        principal.require(Permission.customers_purge)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, customer_id)  # a purged customer is gone: 404
            if doc.get("status") != "deleted":
                raise Conflict("Only customers in the recycle bin can be purged; delete it first.")
            now = self.clock.now()
            # Keep a tombstone (id, version, who and when) so the id is never reused; the data is gone.
            tombstone = {"_id": doc["_id"], "status": "purged", "purged": {"by": principal.user_id, "at": now}}
            data = ev.Purged(customer_id=doc["_id"])
            return Change(tombstone, [self._event(ev.PURGED, doc, data, version, principal.user_id)])

        doc = await self.repo.mutate(customer_id, decide)
        return doc

    # --- merge --------------------------------------------------------------------------------

    async def merge(
        self, principal: Principal, survivor_id: str, duplicate_id: str, expected_version: int | None
    ) -> Document:
        """Merge ``duplicate_id`` into ``survivor_id``.

        Two documents, so two writes, each atomic with its event, in an order that can be
        resumed: first the duplicate is marked merged (its unique keys freed), then the
        survivor takes its contacts and fields. Running the merge again after a crash
        finishes what is missing and repeats nothing.
        """
        principal.require(Permission.customers_merge)
        if survivor_id == duplicate_id:
            raise ValidationFailed.for_field("duplicate_id", "a customer cannot be merged into itself")
        survivor = await self._visible(principal, survivor_id)
        duplicate = await self._visible(principal, duplicate_id)
        rules.ensure_active(survivor)
        rules.ensure_unlocked(survivor)
        rules.ensure_manager_of(principal, survivor, "merge customers")
        rules.ensure_manager_of(principal, duplicate, "merge customers")
        if expected_version is not None and survivor["version"] != expected_version:
            from crm_platform.concurrency import stale

            raise stale(survivor["version"], expected_version)
        if duplicate.get("status") == "merged" and duplicate.get("merged_into") != survivor_id:
            raise Conflict(f"{duplicate_id} was already merged into {duplicate.get('merged_into')}.")
        if duplicate.get("status") == "active":
            rules.ensure_unlocked(duplicate)
            if survivor.get("kind") != duplicate.get("kind"):
                raise ValidationFailed.for_field("duplicate_id", "a company and a person cannot be merged")

            def mark_merged(doc: Document, version: int) -> Change:
                if doc.get("status") != "active":
                    raise Conflict("The duplicate changed meanwhile; try again.")
                doc["status"] = "merged"
                doc["merged_into"] = survivor_id
                rules.touch(doc, principal, self.clock.now())
                data = ev.MergedAway(customer=rules.snapshot(doc), survivor_id=survivor_id)
                return Change(doc, [self._event(ev.MERGED_AWAY, doc, data, version, principal.user_id)])

            duplicate = await self.repo.mutate(duplicate_id, mark_merged)
        elif duplicate.get("status") != "merged":
            raise Conflict("Only active customers can be merged.")

        def absorb(doc: Document, version: int) -> Change:
            if duplicate_id in (doc.get("merged_from") or []):
                return Change(None)  # done before: the merge is being resumed
            rules.ensure_active(doc)
            moved = rules.merge_into(doc, duplicate)
            rules.touch(doc, principal, self.clock.now())
            data = ev.Merged(customer=rules.snapshot(doc), merged_customer_id=duplicate_id, moved_contact_ids=moved)
            return Change(doc, [self._event(ev.MERGED, doc, data, version, principal.user_id)])

        return await self.repo.mutate(survivor_id, absorb)

    # --- fed by other services' events ---------------------------------------------------------

    async def apply_pool_release(self, decision: pool.ReleaseDecided) -> bool:
        """Release a customer the pool service found due, unless anything changed since its basis.

        Idempotent: once released (or changed), the same decision no longer matches and is ignored.
        """
        system = Principal(user_id=pool.SYSTEM_ACTOR)

        def decide(doc: Document, version: int) -> Change:
            basis = decision.basis
            if not rules.release_still_valid(doc, decision.owner_id, basis.owner_since, basis.last_interaction_at):
                return Change(None)
            now = self.clock.now()
            previous = rules.change_owner(doc, None, None, None, now)
            doc["in_pool"] = True
            doc["pool_since"] = now
            doc["release_reason"] = decision.reason_text
            doc["release_rule_id"] = decision.rule_id
            rules.touch(doc, system, now)
            data = ev.ReleasedToPool(
                customer=rules.snapshot(doc), previous_owner_id=previous, reason=decision.reason_text
            )
            return Change(doc, [self._event(ev.RELEASED, doc, data, version, pool.SYSTEM_ACTOR)])

        try:
            before = await self.repo.get(decision.customer_id)
            after = await self.repo.mutate(decision.customer_id, decide)
        except NotFound:
            return False
        return before is not None and after.get("version") != before.get("version")

    async def record_follow_up(self, customer_id: str, occurred_at: datetime, author_id: str) -> bool:
        """Keep 'last followed up' fresh. Derived data: no new version (ETags stay valid), no event."""
        # The store keeps milliseconds: compare at that precision, or a redelivered event (or an
        # older one within the same millisecond) would look newer than what was stored from it.
        occurred_at = occurred_at.replace(microsecond=occurred_at.microsecond // 1000 * 1000)
        for _ in range(8):
            doc = await self.repo.get(customer_id)
            if doc is None or doc.get("status") == "purged":
                return False
            last = doc.get("last_followed_up_at")
            if last is not None and last >= occurred_at:
                return False  # an older or repeated event: nothing to do
            doc["last_followed_up_at"] = occurred_at
            doc["last_followed_up_by"] = author_id
            doc["s"] = rules.sort_keys(doc)
            rev = doc.get("outbox_rev", 0)
            doc["outbox_rev"] = rev + 1
            if await self.repo.replace_guarded({"_id": customer_id, "version": doc["version"], "outbox_rev": rev}, doc):
                return True
        raise Conflict(f"could not record the follow-up on {customer_id}: too much contention")


@dataclass
class AssignOutcome:
    """One customer of a bulk assignment: assigned, unchanged (already theirs) or failed (why)."""

    customer_id: str
    outcome: Literal["assigned", "unchanged", "failed"]
    status: int
    detail: str | None
    customer: Document | None = None


def limit_where(limit: rules.HoldingLimit) -> str:
    return f"pool rule {limit.rule_id}" if limit.rule_id else "the service default"


def limit_reached(owner_id: str, held: int, limit: rules.HoldingLimit) -> Conflict:
    """409: the owner holds ``held`` customers and may hold ``limit.limit`` (which rule said so)."""
    return Conflict(
        f"{owner_id} already holds {held} customers, the limit is {limit.limit} ({limit_where(limit)}); "
        "release some to the pool first.",
        extra={"owner_id": owner_id, "held": held, "limit": limit.limit, "limit_rule": limit.source},
    )


def new_id() -> str:
    return str(uuid.uuid4())
