"""Define a role in a running service, as the directory's ``crm.role.created`` event would.

Tests of data scopes hand a custom role to the service's own read copy of the role definitions
(``app.state.kit.roles``, a :class:`crm_platform.roles.RoleBook`) through the same ``apply`` its
consumer calls, so the role is stored and remembered exactly as in production.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from crm_platform.contracts import directory as ev
from crm_platform.events import EventEnvelope


def role_created(
    role_id: str, permissions: Iterable[str], scopes: Mapping[str, str], version: int = 1
) -> EventEnvelope:
    """The directory's event for a new role granting ``permissions`` with ``scopes`` per module."""
    now = datetime.now(UTC)
    role = ev.RoleSnapshot(
        role_id=role_id,
        names={"zh-CN": "测试角色", "en": "Test role"},
        permissions=sorted(str(p) for p in permissions),
        scopes=dict(scopes),  # type: ignore[arg-type]
        builtin=False,
        created_at=now,
        updated_at=now,
    )
    return ev.ROLE_CREATED.build(
        source="/crm/directory",
        subject=role_id,
        data=ev.RoleCreated(role=role),
        aggregate_version=version,
        time=now,
        actor="test",
    )


async def define_role(app: Any, role_id: str, permissions: Iterable[str], scopes: Mapping[str, str]) -> None:
    """Give the running ``app``'s RoleBook a role (idempotent by version, like its consumer)."""
    await app.state.kit.roles.apply(role_created(role_id, permissions, scopes))
