"""Role definitions as the directory publishes them, for tests that hand one to a running service.

Tests of data scopes and field rules give a custom role to the service's own read copy of the
role definitions (``app.state.kit.roles``, a :class:`crm_platform.roles.RoleBook`) through the
same ``apply`` its consumer calls, so the role is stored and remembered exactly as in production.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from crm_platform.contracts import directory as ev
from crm_platform.events import EventEnvelope


def role_event(
    role_id: str,
    version: int,
    *,
    permissions: Iterable[str],
    scopes: Mapping[str, str] | None = None,
    fields: Mapping[str, Mapping[str, str]] | None = None,
) -> EventEnvelope:
    """``crm.role.created`` at version 1, ``crm.role.updated`` after, carrying the whole definition."""
    now = datetime.now(UTC)
    role = ev.RoleSnapshot.model_validate(
        {
            "role_id": role_id,
            "names": {"zh-CN": f"角色 {role_id}", "en": f"Role {role_id}"},
            "permissions": sorted(str(p) for p in permissions),
            "scopes": dict(scopes or {}),
            "fields": {m: dict(r) for m, r in (fields or {}).items()},
            "builtin": False,
            "created_at": now,
            "updated_at": now,
        }
    )
    meta: dict[str, Any] = {"source": "/crm/directory", "subject": role_id, "time": now, "actor": "test"}
    if version == 1:
        return ev.ROLE_CREATED.build(data=ev.RoleCreated(role=role), aggregate_version=1, **meta)
    changed = ev.RoleUpdated(role=role, changes=[ev.FieldChange(field="fields", new=role.fields)])
    return ev.ROLE_UPDATED.build(data=changed, aggregate_version=version, **meta)


def role_created(
    role_id: str, permissions: Iterable[str], scopes: Mapping[str, str], version: int = 1
) -> EventEnvelope:
    """The directory's event for a role granting ``permissions`` with ``scopes`` per module."""
    return role_event(role_id, version, permissions=permissions, scopes=scopes)


async def define_role(app: Any, role_id: str, permissions: Iterable[str], scopes: Mapping[str, str]) -> None:
    """Give the running ``app``'s RoleBook a role (idempotent by version, like its consumer)."""
    await app.state.kit.roles.apply(role_created(role_id, permissions, scopes))
