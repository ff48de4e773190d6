"""Use cases on roles, one method each, and the lock-out guard users share.

Each stores the new state with its events in one guarded write (the versioned store), so
a refused change writes nothing and publishes nothing. The built-in roles are seeded at
start (:meth:`Roles.seed`): the first start publishes their definitions; a later start adds
what a newer version grants them by default and they have not seen yet (an administrator's own
changes stay), publishing ``crm.role.updated`` by ``system:upgrade``.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from crm_directory.adapters.repository import DirectoryRepository
from crm_directory.application.publishing import EventFactory
from crm_directory.domain import roles as rules
from crm_directory.domain.model import RoleCreate, RolePatch
from crm_platform.auth import Principal, Role
from crm_platform.clock import Clock
from crm_platform.contracts import directory as ev
from crm_platform.errors import Conflict, Duplicate, FieldError, NotFound, ValidationFailed
from crm_platform.permissions import Permission
from crm_platform.store import Change

Document = dict[str, Any]
MANAGE = Permission.roles_manage
#: Who a start-up's upgrade of the built-in roles is recorded as.
UPGRADER = "system:upgrade"


class LockOutGuard:
    """Someone active must keep ``roles:manage``, or nobody could ever define roles again."""

    def __init__(self, repo: DirectoryRepository) -> None:
        self.repo = repo

    async def managing_roles(self) -> dict[str, Document]:
        return {r["_id"]: r for r in await self.repo.roles_by_status("active") if rules.grants(r, MANAGE)}

    async def someone_else_manages(self, managing: dict[str, Document], excluding: str | None) -> bool:
        for role_id in sorted(managing):
            if await self.repo.holders(role_id, active_only=True, excluding=excluding):
                return True
        return False

    async def check_user(self, doc: Document, roles_after: list[str], active_after: bool, action: str) -> None:
        """Refuse a change to a user that takes the last active holder's ``roles:manage`` away."""
        managing = await self.managing_roles()
        holds_now = doc.get("status") == "active" and bool(managing.keys() & set(doc.get("roles") or []))
        holds_after = active_after and bool(managing.keys() & set(roles_after))
        if holds_now and not holds_after and not await self.someone_else_manages(managing, excluding=doc["_id"]):
            raise Conflict(
                f"Cannot {action}: {doc['_id']} is the last active user who may manage roles ({MANAGE.value}); "
                "give that to another active user first."
            )

    async def check_role(self, role_after: Document) -> None:
        """Refuse a change to a role that takes ``roles:manage`` from the last active users holding it."""
        managing = await self.managing_roles()  # as stored: before this change
        if role_after["_id"] not in managing or rules.grants(role_after, MANAGE):
            return  # the change does not take roles:manage away
        del managing[role_after["_id"]]
        if not await self.someone_else_manages(managing, excluding=None):
            raise Conflict(
                f"Cannot take {MANAGE.value} from role {role_after['_id']}: no active user would hold it "
                "through another role; give it to one first."
            )


class Roles:
    def __init__(self, repo: DirectoryRepository, events: EventFactory, clock: Clock) -> None:
        self.repo = repo
        self.events = events
        self.clock = clock
        self.guard = LockOutGuard(repo)

    # --- the built-in roles ----------------------------------------------------------------

    async def seed(self) -> None:
        """Define the built-in roles that are not defined yet (the first start: all four), and
        upgrade those that are (:func:`~crm_directory.domain.roles.upgrade_builtin`)."""
        for role in Role:
            if await self.repo.role(role.value) is not None:
                await self._upgrade(role)
                continue
            doc = rules.builtin_role(role, self.clock.now())
            event = self.events(
                ev.ROLE_CREATED, role.value, ev.RoleCreated(role=rules.snapshot(doc), via="seed"), 1, "system:seed"
            )
            try:
                await self.repo.role_store.insert(doc, [event])
            except DuplicateKeyError:
                pass  # another replica seeded it first

    async def _upgrade(self, role: Role) -> None:
        def decide(doc: Document, version: int) -> Change:
            if doc.get("status") != "active":
                return Change(None)
            changes, changed = rules.upgrade_builtin(doc, role)
            if not changed:
                return Change(None)
            if not changes:  # only the defaults seen recorded: no grant changed, nothing to tell
                return Change(doc)
            rules.touch(doc, UPGRADER, self.clock.now())
            data = ev.RoleUpdated(role=rules.snapshot(doc), changes=changes)
            return Change(doc, [self.events(ev.ROLE_UPDATED, role.value, data, version, UPGRADER)])

        await self.repo.role_store.mutate(role.value, decide)

    # --- reading ---------------------------------------------------------------------------

    async def get(self, role_id: str) -> Document:
        doc = await self.repo.role(role_id)
        if doc is None:
            raise NotFound(f"No role with id {role_id}.")
        return doc

    async def list_roles(self, include_deleted: bool = False) -> list[Document]:
        docs = await self.repo.roles_by_status("active")
        if include_deleted:
            docs += await self.repo.roles_by_status("deleted")
        return sorted(docs, key=lambda d: (not d.get("builtin"), d["_id"]))

    async def ensure_defined(self, role_ids: list[str], field: str = "roles") -> None:
        """422 naming each role id that is not an active role (what a user may be given)."""
        errors = []
        for i, role_id in enumerate(role_ids):
            doc = await self.repo.role(role_id)
            if doc is None or doc.get("status") != "active":
                errors.append(FieldError(field=f"{field}[{i}]", reason=f"'{role_id}' is not a defined role"))
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)

    # --- changes -----------------------------------------------------------------------------

    async def create(self, principal: Principal, body: RoleCreate) -> Document:
        role_id = rules.validate_id(body.id)
        doc = rules.new_role(
            role_id=role_id,
            names=body.names.as_dict(),
            description=body.description,
            permissions=rules.validate_permissions(body.permissions),
            scopes=rules.validate_scopes(body.scopes),
            fields=rules.validate_fields(body.fields),
            builtin=False,
            actor=principal.user_id,
            now=self.clock.now(),
        )
        event = self.events(ev.ROLE_CREATED, role_id, ev.RoleCreated(role=rules.snapshot(doc)), 1, principal.user_id)
        try:
            return await self.repo.role_store.insert(doc, [event])
        except DuplicateKeyError as exc:
            existing = await self.repo.role(role_id)
            state = "a deleted role" if existing is not None and existing.get("status") == "deleted" else "a role"
            raise Duplicate(
                f"The id {role_id} is already used by {state}; choose another.",
                errors=[FieldError(field="id", reason="already used")],
            ) from exc

    async def update(
        self, principal: Principal, role_id: str, patch: RolePatch, expected_version: int | None
    ) -> Document:
        values: dict[str, Any] = {}
        for field in patch.model_fields_set:
            value = getattr(patch, field)
            if field == "names":
                value = value.as_dict()
            elif field == "permissions":
                value = rules.validate_permissions(value)
            elif field == "scopes":
                value = rules.validate_scopes(value)
            elif field == "fields":
                value = rules.validate_fields(value)
            values[field] = value

        async def decide(doc: Document, version: int) -> Change:
            if doc.get("status") != "active":
                raise NotFound(f"No role with id {role_id}.")
            changes = rules.apply_changes(doc, values)
            if not changes:
                return Change(None)
            if any(c.field == "permissions" for c in changes):
                await self.guard.check_role(doc)
            rules.touch(doc, principal.user_id, self.clock.now())
            data = ev.RoleUpdated(role=rules.snapshot(doc), changes=changes)
            return Change(doc, [self.events(ev.ROLE_UPDATED, role_id, data, version, principal.user_id)])

        return await self.repo.role_store.mutate(role_id, decide, expected_version=expected_version)

    async def delete(self, principal: Principal, role_id: str, expected_version: int | None) -> Document:
        """Delete a custom role no user holds (deactivated users count: they keep their roles)."""

        async def decide(current: Document, version: int) -> Change:
            if current.get("status") != "active":
                raise NotFound(f"No role with id {role_id}.")
            if current.get("builtin"):
                raise Conflict(f"{role_id} is a built-in role: it can be edited, not deleted.")
            holders = await self.repo.holders(role_id)
            if holders:
                raise Conflict(
                    f"Role {role_id} is held by {len(holders)} user(s) (deactivated users count); "
                    "take it from them first.",
                    extra={"users": len(holders)},
                )
            current["status"] = "deleted"
            rules.touch(current, principal.user_id, self.clock.now())
            data = ev.RoleDeleted(role=rules.snapshot(current))
            return Change(current, [self.events(ev.ROLE_DELETED, role_id, data, version, principal.user_id)])

        return await self.repo.role_store.mutate(role_id, decide, expected_version=expected_version)
