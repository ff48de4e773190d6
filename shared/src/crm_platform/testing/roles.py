"""Role definitions as the directory publishes them, for tests that hand one to a service's read
copy (``app.state.kit.roles.apply(...)``) the way its consumer would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from crm_platform.contracts import directory as ev
from crm_platform.events import EventEnvelope


def role_event(
    role_id: str,
    version: int,
    *,
    permissions: Sequence[str],
    scopes: Mapping[str, str] | None = None,
    fields: Mapping[str, Mapping[str, str]] | None = None,
) -> EventEnvelope:
    """``crm.role.created`` at version 1, ``crm.role.updated`` after, carrying the whole definition."""
    now = datetime.now(UTC)
    role = ev.RoleSnapshot.model_validate(
        {
            "role_id": role_id,
            "names": {"zh-CN": f"角色 {role_id}", "en": f"Role {role_id}"},
            "permissions": list(permissions),
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
