"""Every service's read copy of the role definitions the directory publishes (``crm.role.*``).

The directory owns roles (``/v1/roles``): per role, the permissions it grants and the data
scope it gives per module. Each service keeps the definitions it has seen in its own
collection (``role_definitions``), applied by the role's version like every read copy (an
older or repeated event changes nothing), and in memory for :func:`crm_platform.permissions.
authorize`, which must not touch the store on every request. The service kit wires one
:class:`RoleBook` into every service (``kit.roles``): its own consumer group on the
directory's topic, the collection loaded at start, and a reload every few seconds, so that
replicas whose consumer did not get a role's partition learn it from the collection.

What a role id grants, here:

* a role with a definition: the permissions the definition lists (none once deleted);
* a built-in role (admin, manager, rep, integrator) before any definition of it has arrived:
  :data:`crm_platform.permissions.ROLE_PERMISSIONS`, so a fresh system works before the
  directory has published;
* any other role id: nothing (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.auth import Principal, Role, widest
from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import directory as ev
from crm_platform.events import EventEnvelope
from crm_platform.fieldaccess import PROTECTED_FIELDS, FieldPolicy
from crm_platform.permissions import (
    BUILTIN_SCOPES,
    DEFAULTS,
    ROLE_PERMISSIONS,
    SCOPE_MODULES,
    SCOPES,
    Permission,
    Scope,
)

log = structlog.get_logger(__name__)
Document = dict[str, Any]
_PERMISSIONS = {p.value: p for p in Permission}


@dataclass(frozen=True)
class Definition:
    """What one role grants, as this service knows it."""

    role_id: str
    version: int
    permissions: frozenset[Permission]
    scopes: Mapping[str, Scope]
    active: bool
    fields: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, doc: Document) -> Definition:
        # A permission or scope this code does not know (a newer directory) grants nothing.
        permissions = frozenset(_PERMISSIONS[p] for p in doc.get("permissions") or [] if p in _PERMISSIONS)
        scopes: dict[str, Scope] = {m: s for m, s in (doc.get("scopes") or {}).items() if s in SCOPES}
        return cls(
            role_id=str(doc["_id"]),
            version=int(doc.get("source_version") or 0),
            permissions=permissions if doc.get("status", "active") == "active" else frozenset(),
            scopes=scopes,
            active=doc.get("status", "active") == "active",
            fields={m: dict(r) for m, r in (doc.get("fields") or {}).items() if isinstance(r, Mapping)},
        )


class RoleBook:
    """The role definitions a service enforces (see the module docstring)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._definitions: dict[str, Definition] = {}

    # --- what authorize asks ----------------------------------------------------------------

    def permissions_of(self, role_id: str) -> frozenset[Permission]:
        definition = self._definitions.get(role_id)
        if definition is not None:
            return definition.permissions
        return DEFAULTS.permissions_of(role_id)

    def roles_with(self, permission: Permission) -> list[str]:
        """The role ids granting ``permission`` (named in a refusal)."""
        known = {r: d.permissions for r, d in self._definitions.items()}
        for role in Role:
            known.setdefault(role.value, ROLE_PERMISSIONS[role])
        return sorted(r for r, perms in known.items() if permission in perms)

    def scope_of(self, role_id: str, module: str) -> Scope | None:
        """The role's data scope for ``module`` (None: the role grants nothing here)."""
        definition = self._definitions.get(role_id)
        if definition is not None:
            return definition.scopes.get(module, "own") if definition.active else None
        if role_id in Role.__members__:
            return BUILTIN_SCOPES[Role(role_id)]
        return None

    def field_policy(self, role_ids: Iterable[str], module: str) -> FieldPolicy:
        """What the roles together let their holder do with ``module``'s fields: the widest access.

        Only roles that grant something count (a deleted or unknown role cannot widen access);
        a built-in role with no definition yet restricts nothing.
        """
        per_role: list[Mapping[str, str]] = []
        for role_id in role_ids:
            definition = self._definitions.get(str(role_id))
            if definition is not None:
                if definition.active:
                    per_role.append(definition.fields.get(module, {}))
            elif str(role_id) in Role.__members__:
                per_role.append({})
        return FieldPolicy.combine(module, per_role)

    @property
    def restricts_fields(self) -> bool:
        """Whether any active role restricts a field (else no policy needs computing anywhere)."""
        return any(d.active and any(d.fields.values()) for d in self._definitions.values())

    def scopes_of(self, roles: frozenset[str]) -> dict[str, Scope]:
        """Per module, the widest scope over ``roles`` (a module none of them reaches is left out)."""
        out: dict[str, Scope] = {}
        for module in SCOPE_MODULES:
            scope = widest(self.scope_of(str(role), module) for role in roles)
            if scope is not None:
                out[module] = scope
        return out

    def resolve(self, principal: Principal) -> Principal:
        """The request's principal with what its roles give here (once per request): its data scope
        per module, its permissions, and (only while some role restricts a field) its field rules."""
        granted: frozenset[str] = frozenset()
        for role in principal.roles:
            granted |= self.permissions_of(str(role))
        update: dict[str, object] = {"scopes": self.scopes_of(principal.roles), "permissions": granted}
        if self.restricts_fields:
            policies = {m: self.field_policy(principal.roles, m) for m in PROTECTED_FIELDS}
            update["field_policies"] = {m: p for m, p in policies.items() if not p.unrestricted}
        return principal.model_copy(update=update)

    def definition(self, role_id: str) -> Definition | None:
        return self._definitions.get(role_id)

    # --- keeping the copy -----------------------------------------------------------------------

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes([IndexModel([("status", ASCENDING)], name="idx_status")])

    def handlers(self) -> Mapping[str, Handler]:
        return {t.name: self.apply for t in ev.ROLE_EVENTS}

    async def apply(self, envelope: EventEnvelope) -> None:
        """Store the definition the event carries (by version), then refresh memory from the store."""
        role = ev.RoleSnapshot.model_validate(envelope.data["role"])
        await apply_versioned(self.collection, envelope, {"_id": role.role_id, **role.model_dump(mode="json")})
        # Read back what is stored: a stale event must not overwrite a newer definition in memory.
        stored = await self.collection.find_one({"_id": role.role_id})
        if stored is not None:
            self._remember(Definition.from_document(stored))

    async def load(self) -> None:
        """Every stored definition into memory (at start, and periodically: see the module docstring).

        The collection holds one small document per role an administrator defined (tens, not
        thousands), so reading it whole is bounded; both statuses are read, deleted roles too.
        """
        loaded: dict[str, Definition] = {}
        for status in ("active", "deleted"):
            async for doc in self.collection.find({"status": status}):
                loaded[str(doc["_id"])] = Definition.from_document(doc)
        for definition in loaded.values():
            self._remember(definition)

    def _remember(self, definition: Definition) -> None:
        known = self._definitions.get(definition.role_id)
        if known is None or known.version <= definition.version:
            self._definitions[definition.role_id] = definition
