"""The role aggregate's rules: plain functions over the stored document, no I/O.

A role is what an administrator grants users: the permissions it gives (``module:action``,
:class:`crm_platform.permissions.Permission`) and, per module, the data scope it reaches
(own, department, subtree = department and below, all). The four built-in roles (admin,
manager, rep, integrator) are seeded from :data:`crm_platform.permissions.ROLE_PERMISSIONS`
at the first start: they can be edited, never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from crm_platform.auth import ROLE_ID, Role
from crm_platform.contracts.directory import FieldChange, RoleSnapshot
from crm_platform.errors import FieldError, ValidationFailed
from crm_platform.fieldaccess import validate_field_rules
from crm_platform.permissions import BUILTIN_SCOPES, ROLE_PERMISSIONS, SCOPE_MODULES, SCOPES, Permission

Document = dict[str, Any]

#: Path segments of the HTTP API a role id could hide; none today, kept for symmetry with departments.
RESERVED_IDS: frozenset[str] = frozenset()
EDITABLE = ("names", "description", "permissions", "scopes", "fields")
_PERMISSION_VALUES = {p.value for p in Permission}

#: The built-in roles' names, for their seeded definitions.
BUILTIN_NAMES: dict[Role, dict[str, str]] = {
    Role.admin: {"zh-CN": "管理员", "en": "Administrator"},
    Role.manager: {"zh-CN": "经理", "en": "Manager"},
    Role.rep: {"zh-CN": "销售代表", "en": "Sales rep"},
    Role.integrator: {"zh-CN": "系统集成", "en": "Integrator"},
}


def validate_id(raw: str, field: str = "id") -> str:
    value = raw.strip()
    if not ROLE_ID.match(value):
        raise ValidationFailed.for_field(
            field, "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit (e.g. key-account)"
        )
    if value in RESERVED_IDS:
        raise ValidationFailed.for_field(field, f"'{value}' is reserved; choose another id")
    return value


def validate_permissions(values: Iterable[str], field: str = "permissions") -> list[str]:
    """The permissions as given, each one known; a 422 names every unknown entry by its index."""
    given = list(values)
    errors = [
        FieldError(field=f"{field}[{i}]", reason=f"'{p}' is not a permission (module:action, e.g. customers:view)")
        for i, p in enumerate(given)
        if p not in _PERMISSION_VALUES
    ]
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    return sorted(set(given))


def validate_scopes(values: dict[str, str], field: str = "scopes") -> dict[str, str]:
    """Module -> scope; an unknown module or scope is a 422 naming ``scopes.<module>``."""
    errors: list[FieldError] = []
    for module, scope in values.items():
        if module not in SCOPE_MODULES:
            errors.append(
                FieldError(
                    field=f"{field}.{module}",
                    reason=f"'{module}' is not a module with a data scope ({', '.join(SCOPE_MODULES)})",
                )
            )
        elif scope not in SCOPES:
            errors.append(
                FieldError(field=f"{field}.{module}", reason=f"'{scope}' is not a scope ({', '.join(SCOPES)})")
            )
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    return dict(sorted(values.items()))


def validate_fields(values: Mapping[str, Mapping[str, str]], field: str = "fields") -> dict[str, dict[str, str]]:
    """Module -> field -> hidden | read; a module, field or access no service honours is a 422 naming it."""
    errors = validate_field_rules(values, field)
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    # An empty module entry restricts nothing: drop it rather than store noise.
    return {module: dict(sorted(rules.items())) for module, rules in sorted(values.items()) if rules}


def new_role(
    *,
    role_id: str,
    names: Mapping[str, str],
    description: str | None,
    permissions: list[str],
    scopes: Mapping[str, str],
    builtin: bool,
    fields: Mapping[str, Mapping[str, str]] | None = None,
    actor: str,
    now: datetime,
) -> Document:
    return {
        "_id": role_id,
        "names": dict(names),
        "description": description,
        "permissions": sorted(set(permissions)),
        "scopes": dict(sorted(scopes.items())),
        "fields": {m: dict(r) for m, r in (fields or {}).items()},
        "builtin": builtin,
        "status": "active",
        "created_at": now,
        "created_by": actor,
        "updated_at": now,
        "updated_by": actor,
    }


def builtin_role(role: Role, now: datetime) -> Document:
    """A built-in role's first definition: what the platform granted it before roles were editable."""
    doc = new_role(
        role_id=role.value,
        names=BUILTIN_NAMES[role],
        description=None,
        permissions=defaults(role),
        scopes={module: BUILTIN_SCOPES[role] for module in SCOPE_MODULES},
        builtin=True,
        actor="system:seed",
        now=now,
    )
    doc["defaults_seen"] = defaults(role)
    return doc


#: Default permissions of built-in roles that came after the built-in definitions were first
#: seeded (roles:manage came with them): a definition seeded before ``defaults_seen`` was recorded
#: has seen every default but these.
ADDED_AFTER_FIRST_SEED: frozenset[str] = frozenset(
    {
        Permission.fields_manage.value,
        Permission.customers_export_policy.value,
        Permission.customers_export_approve.value,
        # The leads service's, which came in the same version as defaults_seen.
        *(p.value for p in Permission if p.value.startswith(("leads:", "campaigns:"))),
        # The sales service's (the product catalogue and price lists), which came later.
        *(p.value for p in Permission if p.value.startswith("products:")),
        # Quotations (sales), later still.
        *(p.value for p in Permission if p.value.startswith("quotations:")),
        # Service tickets (sales), later still.
        *(p.value for p in Permission if p.value.startswith("tickets:")),
        # Contracts and receivables (sales), later still.
        *(p.value for p in Permission if p.value.startswith("contracts:")),
    }
)


def defaults(role: Role) -> list[str]:
    return sorted(p.value for p in ROLE_PERMISSIONS[role])


def upgrade_builtin(doc: Document, role: Role) -> tuple[list[FieldChange], bool]:
    """Bring a stored built-in role up to this version's defaults without undoing an
    administrator's decisions: a default permission this definition has not seen yet (it came
    with a later version, so nobody could have taken it away) is added; a module with no scope
    yet gets the built-in scope. Permissions an administrator removed, scopes they set and field
    rules stay. ``defaults_seen`` records the defaults the definition has seen.

    Returns the visible changes (each one an entry of ``crm.role.updated``'s ``changes``) and
    whether the document changed at all (``defaults_seen`` alone changes no grant)."""
    current = defaults(role)
    stored_seen = doc.get("defaults_seen")
    seen = set(stored_seen) if stored_seen is not None else set(current) - ADDED_AFTER_FIRST_SEED
    granted = list(doc.get("permissions") or [])
    added = [p for p in current if p not in seen and p not in granted]
    scopes = dict(doc.get("scopes") or {})
    missing = {m: BUILTIN_SCOPES[role] for m in SCOPE_MODULES if m not in scopes}
    values: dict[str, Any] = {}
    if added:
        values["permissions"] = sorted(set(granted) | set(added))
    if missing:
        values["scopes"] = dict(sorted({**scopes, **missing}.items()))
    changes = apply_changes(doc, values)
    seen_now = sorted(seen | set(current))
    changed = bool(changes) or stored_seen != seen_now
    doc["defaults_seen"] = seen_now
    return changes, changed


def apply_changes(doc: Document, values: dict[str, Any]) -> list[FieldChange]:
    """Set the given fields; return what actually changed (old -> new)."""
    changes: list[FieldChange] = []
    for field in EDITABLE:
        if field not in values:
            continue
        new = values[field]
        old = doc.get(field)
        if old != new:
            changes.append(FieldChange(field=field, old=old, new=new))
            doc[field] = new
    return changes


def touch(doc: Document, actor: str, now: datetime) -> None:
    doc["updated_at"] = now
    doc["updated_by"] = actor


def grants(doc: Document, permission: Permission) -> bool:
    return doc.get("status") == "active" and permission.value in (doc.get("permissions") or [])


def snapshot(doc: Document) -> RoleSnapshot:
    return RoleSnapshot(
        role_id=doc["_id"],
        names=doc["names"],
        description=doc.get("description"),
        permissions=list(doc.get("permissions") or []),
        scopes=doc.get("scopes") or {},
        fields=doc.get("fields") or {},
        builtin=bool(doc.get("builtin")),
        status=doc.get("status", "active"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )
