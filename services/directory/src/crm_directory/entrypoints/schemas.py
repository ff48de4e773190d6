"""What the HTTP API returns. Built field by field: nothing of the password leaves the service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_platform.clock import as_utc

Document = dict[str, Any]


def _dt(value: Any) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


class DeactivationOut(BaseModel):
    at: datetime
    by: str | None = None
    reason: str | None = None


class UserOut(BaseModel):
    view: Literal["full"] = "full"
    id: str
    version: int
    email: str
    name: str
    phone: str | None = None
    language: str
    time_zone: str | None = Field(default=None, description="IANA zone; none set: the client's default.")
    roles: list[str]
    department_id: str
    department_path: str
    status: Literal["active", "deactivated"]
    active: bool
    deactivated: DeactivationOut | None = None
    has_password: bool = Field(description="False: cannot sign in with a password (e.g. synced from an IdP).")
    password_changed_at: datetime | None = None
    last_sign_in_at: datetime | None = None
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None


class PublicUserOut(BaseModel):
    """What any signed-in user may read about any active user: enough to show a record's owner."""

    view: Literal["public"] = "public"
    id: str
    name: str
    department_id: str
    department_path: str
    active: bool = True


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None = None
    total: int | None = None


class DepartmentOut(BaseModel):
    id: str
    version: int
    name: str
    parent_id: str | None = None
    path: str
    manager_id: str | None = None
    status: Literal["active", "deleted"]
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None


class DepartmentPage(BaseModel):
    items: list[DepartmentOut]
    next_cursor: str | None = None
    total: int | None = None


class RoleOut(BaseModel):
    id: str
    version: int
    names: dict[str, str] = Field(description="zh-CN and en.")
    description: str | None = None
    permissions: list[str] = Field(description="module:action values the role grants.")
    scopes: dict[str, str] = Field(description="Module -> own | department | subtree | all (not listed: own).")
    fields: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Module -> field -> hidden | read (not listed: read-write)."
    )
    builtin: bool = Field(description="admin, manager, rep, integrator: editable, never deleted.")
    status: Literal["active", "deleted"]
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None


class TreeNode(BaseModel):
    id: str
    name: str
    path: str
    manager_id: str | None = None
    children: list[TreeNode] = []


def user_out(doc: Document, last_sign_in_at: datetime | None = None) -> UserOut:
    deactivated = doc.get("deactivated")
    password = doc.get("password") or {}
    return UserOut(
        id=doc["_id"],
        version=doc["version"],
        email=doc["email"],
        name=doc["name"],
        phone=doc.get("phone"),
        language=doc.get("language", "zh-CN"),
        time_zone=doc.get("time_zone"),
        roles=list(doc.get("roles") or []),
        department_id=doc["department_id"],
        department_path=doc["department_path"],
        status=doc.get("status", "active"),
        active=doc.get("status") == "active",
        deactivated=(
            DeactivationOut(at=as_utc(deactivated["at"]), by=deactivated.get("by"), reason=deactivated.get("reason"))
            if deactivated
            else None
        ),
        has_password=bool(password.get("hash")),
        password_changed_at=_dt(password.get("changed_at")),
        last_sign_in_at=last_sign_in_at,
        created_at=as_utc(doc["created_at"]),
        created_by=doc.get("created_by"),
        updated_at=as_utc(doc["updated_at"]),
        updated_by=doc.get("updated_by"),
    )


def public_user_out(doc: Document) -> PublicUserOut:
    return PublicUserOut(
        id=doc["_id"],
        name=doc["name"],
        department_id=doc["department_id"],
        department_path=doc["department_path"],
        active=doc.get("status") == "active",
    )


def department_out(doc: Document) -> DepartmentOut:
    return DepartmentOut(
        id=doc["_id"],
        version=doc["version"],
        name=doc["name"],
        parent_id=doc.get("parent_id"),
        path=doc["path"],
        manager_id=doc.get("manager_id"),
        status=doc.get("status", "active"),
        created_at=as_utc(doc["created_at"]),
        created_by=doc.get("created_by"),
        updated_at=as_utc(doc["updated_at"]),
        updated_by=doc.get("updated_by"),
    )


def tree_out(node: Document) -> TreeNode:
    d = node["department"]
    return TreeNode(
        id=d["_id"],
        name=d["name"],
        path=d["path"],
        manager_id=d.get("manager_id"),
        children=[tree_out(c) for c in node["children"]],
    )


def role_out(doc: Document) -> RoleOut:
    return RoleOut(
        id=doc["_id"],
        version=doc["version"],
        names=doc["names"],
        description=doc.get("description"),
        permissions=list(doc.get("permissions") or []),
        scopes=doc.get("scopes") or {},
        fields=doc.get("fields") or {},
        builtin=bool(doc.get("builtin")),
        status=doc.get("status", "active"),
        created_at=as_utc(doc["created_at"]),
        created_by=doc.get("created_by"),
        updated_at=as_utc(doc["updated_at"]),
        updated_by=doc.get("updated_by"),
    )
