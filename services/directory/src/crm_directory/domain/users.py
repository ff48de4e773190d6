"""The user aggregate's rules: plain functions over the stored document, no I/O.

The stored document holds the password hash under ``password``; nothing that leaves
the service (snapshots, events, API responses, history) is built from it: they
are built field by field from the names below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm_platform.auth import Principal
from crm_platform.contact_points import InvalidEmail, InvalidPhone, normalise_email, normalise_phone
from crm_platform.contracts.directory import FieldChange, UserSnapshot
from crm_platform.errors import Forbidden, NotFound, ValidationFailed
from crm_platform.permissions import Permission
from crm_platform.sortkeys import epoch_ms

#: The data-scope module the directory honours for user records (see the root README).
USERS = "users"

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Profile fields, in the order history shows them.
PROFILE = ("email", "name", "phone", "language", "time_zone", "roles", "department_id", "department_path")
SELF_EDITABLE = frozenset({"name", "phone", "language", "time_zone"})

#: API sort keys -> stored, never-null fields.
SORT_FIELDS = {
    "name": "s.name",
    "email": "email",
    "created_at": "s.created_at",
    "updated_at": "s.updated_at",
    "department_path": "department_path",
}


def email_or_422(raw: str, field: str = "email") -> str:
    try:
        return normalise_email(raw)
    except InvalidEmail as exc:
        raise ValidationFailed.for_field(field, exc.reason) from exc


def phone_or_422(raw: str | None, region: str, field: str = "phone") -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        return normalise_phone(raw, region)
    except InvalidPhone as exc:
        raise ValidationFailed.for_field(field, exc.reason) from exc


#: The shape of the sort keys; documents stored with another are rewritten once at start-up.
SORT_KEYS_VERSION = 1  # 1: moments as epoch ms, the id's copy (s.id) as the last key


def sort_keys(doc: Document) -> Document:
    """Never-null copies; moments as epoch ms and the id as tie-breaker, because the embedded store
    serves a range on those (every cursor page) from an index but reads every row for a date or _id."""
    return {
        "v": SORT_KEYS_VERSION,
        "name": (doc.get("name") or "").casefold(),
        "created_at": epoch_ms(doc.get("created_at") or EPOCH),
        "updated_at": epoch_ms(doc.get("updated_at") or EPOCH),
        "id": doc["_id"],
    }


def refresh_derived(doc: Document) -> Document:
    """What lists filter and sort on, recomputed from the profile."""
    doc["search"] = f"{(doc.get('name') or '').casefold()} {doc.get('email') or ''}"
    doc["s"] = sort_keys(doc)
    return doc


def new_user(
    *,
    user_id: str,
    email: str,
    name: str,
    phone: str | None,
    language: str,
    time_zone: str | None = None,
    roles: list[str],
    department: Document,
    password_hash: str | None,
    active: bool,
    actor: str,
    now: datetime,
) -> Document:
    doc: Document = {
        "_id": user_id,
        "email": email,
        "name": name,
        "phone": phone,
        "language": language,
        "time_zone": time_zone,
        "roles": sorted(set(roles)),
        "department_id": department["_id"],
        "department_path": department["path"],
        "status": "active" if active else "deactivated",
        "deactivated": None if active else {"at": now, "by": actor, "reason": "created deactivated"},
        "password": {"hash": password_hash, "changed_at": now} if password_hash else None,
        "created_at": now,
        "created_by": actor,
        "updated_at": now,
        "updated_by": actor,
    }
    return refresh_derived(doc)


def apply_changes(doc: Document, values: dict[str, Any]) -> list[FieldChange]:
    """Set the given profile fields; return what actually changed (old -> new)."""
    changes: list[FieldChange] = []
    for field in PROFILE:
        if field not in values:
            continue
        new = sorted(set(values[field])) if field == "roles" else values[field]
        old = doc.get(field)
        if old != new:
            changes.append(FieldChange(field=field, old=old, new=new))
            doc[field] = new
    if changes:
        refresh_derived(doc)
    return changes


def touch(doc: Document, actor: str, now: datetime) -> None:
    doc["updated_at"] = now
    doc["updated_by"] = actor
    refresh_derived(doc)


def snapshot(doc: Document) -> UserSnapshot:
    deactivated = doc.get("deactivated") or {}
    return UserSnapshot(
        user_id=doc["_id"],
        email=doc["email"],
        name=doc["name"],
        phone=doc.get("phone"),
        language=doc.get("language", "zh-CN"),
        roles=list(doc.get("roles") or []),
        department_id=doc["department_id"],
        department_path=doc["department_path"],
        status=doc.get("status", "active"),
        deactivated_at=deactivated.get("at"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


# --- who may see and do what ---------------------------------------------------------------


def can_read_full(principal: Principal, doc: Document) -> bool:
    """Everybody themselves; others as far as the caller's users scope reaches (all: everyone)."""
    return principal.user_id == doc["_id"] or principal.reaches_path(doc.get("department_path"), USERS)


def ensure_readable(principal: Principal, doc: Document | None, user_id: str) -> Document:
    """The full record, or 404: a user one may not read is not there."""
    if doc is None or not can_read_full(principal, doc):
        raise NotFound(f"No user with id {user_id}.")
    return doc


def ensure_may_edit(principal: Principal, doc: Document, fields: set[str]) -> None:
    """users:manage changes anything of a user in the caller's users scope (the built-in admin: of
    everyone); a user changes their own name, phone, language and time zone."""
    if principal.holds(Permission.users_manage) and principal.reaches_path(doc.get("department_path"), USERS):
        return
    if principal.user_id == doc["_id"] and fields <= SELF_EDITABLE:
        return
    if principal.user_id == doc["_id"]:
        others = ", ".join(sorted(fields - SELF_EDITABLE))
        raise Forbidden(
            f"You may change your own name, phone, language and time zone; {others} only an administrator may."
        )
    ensure_readable(principal, doc, doc["_id"])
    raise Forbidden("Only administrators may change other users.")
