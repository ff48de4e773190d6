"""Use cases on users, one method each.

Each reads what it needs, applies the domain rules and stores the new state with
its events in one guarded write (the versioned store). Revoking refresh tokens
follows the write that causes it (deactivation, a new password); if the process
died in between, refresh still refuses those tokens, because it checks the user's
status and password date on every use.

A user's ``department_path`` is copied from their department. Whenever a write
sets it, the department is read again afterwards (:meth:`Users.settle_department_path`):
if a department move rewrote that department's path meanwhile, either the move's
own pass over the department's users saw this write, or this check sees the new
path; either way the user ends up with the department's current path.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from crm_directory.adapters.credentials import RefreshTokens
from crm_directory.adapters.repository import DirectoryRepository
from crm_directory.application.hashing import off_loop
from crm_directory.application.publishing import EventFactory
from crm_directory.application.roles import Roles
from crm_directory.domain import departments as dept_rules
from crm_directory.domain import users as rules
from crm_directory.domain.model import SelfPatch, UserCreate, UserPatch, UserUpsert
from crm_directory.domain.passwords import Passwords, ensure_acceptable
from crm_directory.settings import DirectorySettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import directory as ev
from crm_platform.errors import Conflict, Duplicate, FieldError, Forbidden, NotFound, ValidationFailed
from crm_platform.events import EventType
from crm_platform.idempotency import IdempotencyKey, create_once
from crm_platform.permissions import Permission
from crm_platform.store import Change

Document = dict[str, Any]


def _duplicate_email(email: str) -> Duplicate:
    return Duplicate(
        f"Another user already has the email {email}.",
        errors=[FieldError(field="email", reason="already used by another user")],
    )


class Users:
    def __init__(
        self,
        repo: DirectoryRepository,
        tokens: RefreshTokens,
        passwords: Passwords,
        settings: DirectorySettings,
        events: EventFactory,
        clock: Clock,
        roles: Roles,
    ) -> None:
        self.roles = roles
        self.repo = repo
        self.tokens = tokens
        self.passwords = passwords
        self.settings = settings
        self.events = events
        self.clock = clock

    # --- helpers -----------------------------------------------------------------------------

    async def hash_password(self, password: str, email: str | None, field: str = "password") -> str:
        ensure_acceptable(password, email, self.settings.directory_password_min_length, field)
        return await off_loop(self.passwords.hash, password)

    async def department(self, department_id: str, field: str = "department_id") -> Document:
        return dept_rules.ensure_active(await self.repo.department(department_id), department_id, field)

    def _phone(self, raw: str | None) -> str | None:
        return rules.phone_or_422(raw, self.settings.default_phone_region)

    async def _ensure_email_free(self, email: str, user_id: str | None) -> None:
        other = await self.repo.user_by_email(email)
        if other is not None and other["_id"] != user_id:
            raise _duplicate_email(email)

    async def _guard_lock_out(self, doc: Document, roles_after: list[str], active_after: bool, action: str) -> None:
        await self.roles.guard.check_user(doc, roles_after, active_after, action)

    async def _store_roles_change(self, user_id: str, before: list[str], after: Document) -> None:
        """After a user write: drop the holdings of roles the user no longer has (see announce_holder)."""
        await self.repo.settle_holder(user_id, sorted(set(before) - set(after.get("roles") or [])))

    # --- create and read -----------------------------------------------------------------------

    async def create(self, principal: Principal, data: UserCreate, key: IdempotencyKey | None = None) -> Document:
        """Create a user; with a key the id comes from it, so a retry answers with the first user
        (before the e-mail check could take that user for someone else holding the address)."""
        principal.require(Permission.users_manage)
        user_id = f"u-{(key.uuid() if key else uuid.uuid4()).hex[:16]}"
        return await create_once(
            key, lambda _: self.repo.user(user_id), lambda: self._create(principal, data, user_id, key)
        )

    async def _create(
        self, principal: Principal, data: UserCreate, user_id: str, key: IdempotencyKey | None
    ) -> Document:
        return await self.insert(
            actor=principal.user_id,
            user_id=user_id,
            email=data.email,
            name=data.name,
            phone=data.phone,
            language=data.language,
            time_zone=data.time_zone,
            roles=list(data.roles),
            department_id=data.department_id,
            password=data.password.get_secret_value() if data.password else None,
            active=True,
            via="api",
            key=key,
        )

    async def insert(
        self,
        *,
        actor: str,
        user_id: str,
        email: str,
        name: str,
        phone: str | None,
        language: str,
        roles: list[str],
        department_id: str,
        password: str | None,
        active: bool,
        via: ev.CreatedVia,
        key: IdempotencyKey | None = None,
        time_zone: str | None = None,
    ) -> Document:
        email = rules.email_or_422(email)
        phone = self._phone(phone)
        department = await self.department(department_id)
        await self.roles.ensure_defined(roles)
        password_hash = await self.hash_password(password, email) if password is not None else None
        await self._ensure_email_free(email, None)
        now = self.clock.now()
        doc = rules.new_user(
            user_id=user_id,
            email=email,
            name=name,
            phone=phone,
            language=language,
            time_zone=time_zone,
            roles=roles,
            department=department,
            password_hash=password_hash,
            active=active,
            actor=actor,
            now=now,
        )
        if key is not None:
            key.stamp(doc)
        event = self.events(
            ev.USER_CREATED,
            user_id,
            ev.UserCreated(user=rules.snapshot(doc), via=via),
            1,
            actor,
        )
        await self.repo.announce_holder(user_id, doc["roles"])
        try:
            doc = await self.repo.user_store.insert(doc, [event])
        except DuplicateKeyError as exc:
            if "email" in str(exc):
                raise _duplicate_email(email) from exc
            raise Duplicate(
                f"A user with id {user_id} already exists.",
                errors=[FieldError(field="id", reason="already used", location="path")],
            ) from exc
        return await self.settle_department_path(doc, actor)

    async def get(self, principal: Principal, user_id: str) -> tuple[Document, bool]:
        """The user and whether the caller may see everything (else only the public card)."""
        doc = await self.repo.user(user_id)
        if doc is None:
            raise NotFound(f"No user with id {user_id}.")
        if rules.can_read_full(principal, doc):
            return doc, True
        if doc.get("status") == "active":
            return doc, False
        raise NotFound(f"No user with id {user_id}.")

    async def get_full(self, principal: Principal, user_id: str) -> Document:
        return rules.ensure_readable(principal, await self.repo.user(user_id), user_id)

    # --- profile -------------------------------------------------------------------------------

    async def update(
        self, principal: Principal, user_id: str, patch: UserPatch | SelfPatch, expected_version: int | None
    ) -> Document:
        fields = set(patch.model_fields_set)
        current = await self.get_full(principal, user_id)
        rules.ensure_may_edit(principal, current, fields)
        values: dict[str, Any] = {}
        for field in fields:
            value = getattr(patch, field)
            if field == "email":
                value = rules.email_or_422(value)
                await self._ensure_email_free(value, user_id)
            elif field == "phone":
                value = self._phone(value)
            elif field == "roles":
                await self.roles.ensure_defined(value)
            elif field == "department_id":
                await self.department(value)
            values[field] = value

        async def decide(doc: Document, version: int) -> Change:
            rules.ensure_may_edit(principal, doc, fields)
            new = dict(values)
            if "department_id" in new:
                new["department_path"] = (await self.department(new["department_id"]))["path"]
            if "roles" in new:
                held_before.update(doc.get("roles") or [])
                await self._guard_lock_out(doc, new["roles"], doc.get("status") == "active", "change these roles")
            changes = rules.apply_changes(doc, new)
            if not changes:
                return Change(None)
            rules.touch(doc, principal.user_id, self.clock.now())
            data = ev.UserUpdated(user=rules.snapshot(doc), changes=changes)
            return Change(doc, [self.events(ev.USER_UPDATED, user_id, data, version, principal.user_id)])

        held_before: set[str] = set()
        if "roles" in values:
            await self.repo.announce_holder(user_id, values["roles"])
        try:
            doc = await self.repo.user_store.mutate(user_id, decide, expected_version=expected_version)
        except DuplicateKeyError as exc:
            raise _duplicate_email(str(values.get("email"))) from exc
        await self._store_roles_change(user_id, sorted(held_before), doc)
        if "department_id" in values:
            doc = await self.settle_department_path(doc, principal.user_id)
        return doc

    async def upsert(
        self, principal: Principal, user_id: str, body: UserUpsert, expected_version: int | None
    ) -> tuple[Document, bool]:
        """PUT: create or bring the user to exactly this state (what a directory sync calls).

        Idempotent: sending the same body again changes nothing and publishes nothing.
        Returns the user and whether it was created.
        """
        principal.require(Permission.users_manage)
        email = rules.email_or_422(body.email)
        phone = self._phone(body.phone)
        await self.department(body.department_id)
        roles = list(body.roles)
        await self.roles.ensure_defined(roles)
        if await self.repo.user(user_id) is None:
            if expected_version is not None:
                raise NotFound(f"No user with id {user_id}; send no If-Match to create it.")
            try:
                doc = await self.insert(
                    actor=principal.user_id,
                    user_id=user_id,
                    email=email,
                    name=body.name,
                    phone=phone,
                    language=body.language,
                    roles=roles,
                    department_id=body.department_id,
                    password=None,
                    active=body.active,
                    via="sync",
                )
                return doc, True
            except Duplicate as exc:
                if any(e.field == "email" for e in exc.errors):
                    raise
                # Created concurrently by another call: fall through and converge to this body.
        await self._ensure_email_free(email, user_id)
        now = self.clock.now()

        async def decide(doc: Document, version: int) -> Change:
            department = await self.department(body.department_id)
            values = {
                "email": email,
                "name": body.name,
                "phone": phone,
                "language": body.language,
                "roles": roles,
                "department_id": department["_id"],
                "department_path": department["path"],
            }
            was_active = doc.get("status") == "active"
            held_before.update(doc.get("roles") or [])
            await self._guard_lock_out(doc, roles, body.active, "deactivate or change the roles of this user")
            changes = rules.apply_changes(doc, values)
            if changes:
                rules.touch(doc, principal.user_id, now)
            deactivating = was_active and not body.active
            reactivating = body.active and not was_active
            if deactivating:
                self._mark_deactivated(doc, principal.user_id, "deactivated by sync")
            elif reactivating:
                self._mark_active(doc, principal.user_id)
            if not (changes or deactivating or reactivating):
                return Change(None)
            # Several events of one write share its version; each carries the final snapshot.
            snapshot = rules.snapshot(doc)
            outgoing: list[tuple[EventType[Any], BaseModel]] = []
            if changes:
                outgoing.append((ev.USER_UPDATED, ev.UserUpdated(user=snapshot, changes=changes, cause="sync")))
            if deactivating:
                outgoing.append((ev.USER_DEACTIVATED, ev.UserDeactivated(user=snapshot, reason="sync")))
            if reactivating:
                outgoing.append((ev.USER_REACTIVATED, ev.UserReactivated(user=snapshot)))
            return Change(doc, [self.events(t, user_id, d, version, principal.user_id) for t, d in outgoing])

        held_before: set[str] = set()
        await self.repo.announce_holder(user_id, roles)
        try:
            doc = await self.repo.user_store.mutate(user_id, decide, expected_version=expected_version)
        except DuplicateKeyError as exc:
            raise _duplicate_email(email) from exc
        await self._store_roles_change(user_id, sorted(held_before), doc)
        if doc.get("status") != "active":
            await self.tokens.revoke_user(user_id, "deactivated", self.clock.now())
        return await self.settle_department_path(doc, principal.user_id), False

    # --- deactivation ------------------------------------------------------------------------

    def _mark_deactivated(self, doc: Document, actor: str, reason: str | None) -> None:
        now = self.clock.now()
        doc["status"] = "deactivated"
        doc["deactivated"] = {"at": now, "by": actor, "reason": reason}
        rules.touch(doc, actor, now)

    def _mark_active(self, doc: Document, actor: str) -> None:
        doc["status"] = "active"
        doc["deactivated"] = None
        rules.touch(doc, actor, self.clock.now())

    async def deactivate(
        self, principal: Principal, user_id: str, reason: str | None, expected_version: int | None
    ) -> Document:
        principal.require(Permission.users_manage)
        if user_id == principal.user_id:
            raise Conflict("You cannot deactivate yourself; ask another administrator.")

        async def decide(doc: Document, version: int) -> Change:
            if doc.get("status") != "active":
                return Change(None)  # already deactivated: nothing to do, no event
            await self._guard_lock_out(doc, list(doc.get("roles") or []), False, "deactivate this user")
            self._mark_deactivated(doc, principal.user_id, reason)
            data = ev.UserDeactivated(user=rules.snapshot(doc), reason=reason)
            return Change(doc, [self.events(ev.USER_DEACTIVATED, user_id, data, version, principal.user_id)])

        doc = await self.repo.user_store.mutate(user_id, decide, expected_version=expected_version)
        # Also when it was deactivated already: a crash after the write above is finished by a retry.
        await self.tokens.revoke_user(user_id, "deactivated", self.clock.now())
        return doc

    async def reactivate(self, principal: Principal, user_id: str, expected_version: int | None) -> Document:
        principal.require(Permission.users_manage)

        async def decide(doc: Document, version: int) -> Change:
            if doc.get("status") == "active":
                return Change(None)
            await self.department(doc["department_id"])
            self._mark_active(doc, principal.user_id)
            data = ev.UserReactivated(user=rules.snapshot(doc))
            return Change(doc, [self.events(ev.USER_REACTIVATED, user_id, data, version, principal.user_id)])

        return await self.repo.user_store.mutate(user_id, decide, expected_version=expected_version)

    # --- passwords -----------------------------------------------------------------------------

    async def _store_password(
        self,
        user_id: str,
        new_hash: str,
        by: ev.ChangedBy,
        actor: str,
        expected_version: int | None,
        old_hash: str | None,
    ) -> Document:
        async def decide(doc: Document, version: int) -> Change:
            if by == "self" and (doc.get("password") or {}).get("hash") != old_hash:
                raise Conflict("Your password was changed meanwhile; sign in again and retry.")
            now = self.clock.now()
            doc["password"] = {"hash": new_hash, "changed_at": now}
            rules.touch(doc, actor, now)
            data = ev.UserPasswordChanged(user=rules.snapshot(doc), by=by)
            return Change(doc, [self.events(ev.USER_PASSWORD_CHANGED, user_id, data, version, actor)])

        doc = await self.repo.user_store.mutate(user_id, decide, expected_version=expected_version)
        await self.tokens.revoke_user(user_id, "password_changed", self.clock.now())
        return doc

    async def set_password(
        self, principal: Principal, user_id: str, new_password: str, expected_version: int | None
    ) -> Document:
        """An administrator sets (or resets) a user's password."""
        principal.require(Permission.users_manage)
        doc = await self.get_full(principal, user_id)
        new_hash = await self.hash_password(new_password, doc["email"], "new_password")
        return await self._store_password(user_id, new_hash, "admin", principal.user_id, expected_version, None)

    async def change_own_password(self, principal: Principal, current: str, new: str, verify: Any) -> Document:
        """``verify(doc, password) -> bool`` checks the current password (and counts failures)."""
        doc = await self.repo.user(principal.user_id)
        if doc is None:
            raise NotFound("Your account no longer exists.")
        if doc.get("status") != "active":
            raise Forbidden("Your account has been deactivated.")
        if not await verify(doc, current):
            raise ValidationFailed.for_field("current_password", "is not your current password")
        if new == current:
            raise ValidationFailed.for_field("new_password", "must differ from the current password")
        new_hash = await self.hash_password(new, doc["email"], "new_password")
        old_hash = (doc.get("password") or {}).get("hash")
        return await self._store_password(doc["_id"], new_hash, "self", principal.user_id, None, old_hash)

    async def rehash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        """Store a hash made with today's argon2 parameters (same password): no event, nothing visible."""

        def decide(doc: Document, version: int) -> Change:
            if (doc.get("password") or {}).get("hash") != old_hash:
                return Change(None)
            doc["password"] = {**doc["password"], "hash": new_hash}
            return Change(doc, [])

        await self.repo.user_store.mutate(user_id, decide)

    # --- the department path, kept equal to the department's -----------------------------------------

    async def settle_department_path(self, doc: Document, actor: str, cause: str | None = None) -> Document:
        """Make the user's department_path the department's current path (see the module docstring)."""
        department = await self.repo.department(doc["department_id"])
        if department is None or department["path"] == doc.get("department_path"):
            return doc
        return await self.sync_department_path(doc["_id"], actor, cause or "department_moved")

    async def sync_department_path(self, user_id: str, actor: str, cause: str) -> Document:
        """One guarded write (and event) if the user's path differs from their department's."""

        async def decide(doc: Document, version: int) -> Change:
            # Read the department after the user (inside the guarded write): a concurrent rewrite of
            # this user makes our replace fail and re-run with the department's newer path.
            department = await self.repo.department(doc["department_id"])
            if department is None or department["path"] == doc.get("department_path"):
                return Change(None)
            changes = rules.apply_changes(doc, {"department_path": department["path"]})
            rules.touch(doc, actor, self.clock.now())
            data = ev.UserUpdated(user=rules.snapshot(doc), changes=changes, cause=cause)
            return Change(doc, [self.events(ev.USER_UPDATED, user_id, data, version, actor)])

        return await self.repo.user_store.mutate(user_id, decide)
