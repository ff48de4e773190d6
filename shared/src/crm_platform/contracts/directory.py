"""Events of the directory service, on ``crm.directory.v1`` (key: the user or department id).

Two aggregates publish here: users and departments. Every event carries the full
snapshot of its aggregate as it stands after the change, so another service keeps
a read copy from any single event with ``consumer.apply_versioned`` (by
``aggregateversion``). The snapshots never hold password data; they do hold each
user's email and language (the notifications service writes to people in their
language) and each department's path (``/hq/east/sh-team-1``: ids from the root,
so "this department and everything below it" is a prefix test).

Users, departments and roles have separate id spaces: tell them apart by the event type
(``crm.user.*``, ``crm.department.*`` or ``crm.role.*``), not by the subject.

Roles (``crm.role.*``) are what administrators define: per role, the permissions it grants
(``module:action``, see ``crm_platform.permissions.Permission``) and the data scope it gives per
module. Every service keeps a read copy of them (``crm_platform.roles.RoleBook``) and grants a
caller the union of what their roles' definitions grant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_platform.events import define

TOPIC = "crm.directory.v1"

Language = Literal["zh-CN", "en"]
RoleName = Literal["admin", "manager", "rep", "integrator"]  # the built-in roles
RoleScope = Literal["own", "department", "subtree", "all"]
FieldAccessRule = Literal["hidden", "read"]
RoleStatus = Literal["active", "deleted"]
UserStatus = Literal["active", "deactivated"]
DepartmentStatus = Literal["active", "deleted"]
CreatedVia = Literal["api", "sync", "cli", "bootstrap"]
ChangedBy = Literal["self", "admin"]


class UserSnapshot(BaseModel):
    """A user after the change (no password data, ever)."""

    user_id: str
    email: str = Field(description="Lower-cased, unique.")
    name: str
    phone: str | None = Field(default=None, description="E.164, e.g. +8613800138000.")
    language: Language = "zh-CN"
    roles: list[str] = Field(
        description="Role ids: the built-in admin, manager, rep, integrator, or roles administrators defined.",
        examples=[["rep"]],
    )
    department_id: str
    department_path: str = Field(description="Ids from the root joined by '/', e.g. /hq/east/sh-team-1.")
    status: UserStatus = "active"
    deactivated_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class DepartmentSnapshot(BaseModel):
    """A department after the change."""

    department_id: str
    name: str
    parent_id: str | None = None
    path: str = Field(description="Ids from the root joined by '/', e.g. /hq/east/sh-team-1.")
    manager_id: str | None = None
    status: DepartmentStatus = "active"
    created_at: datetime
    updated_at: datetime


class RoleSnapshot(BaseModel):
    """A role definition after the change: everything a service needs to enforce it."""

    role_id: str = Field(description="Slug, e.g. 'rep' or 'key-account'.", examples=["key-account"])
    names: dict[Language, str] = Field(
        description="The role's name per language: zh-CN and en.",
        examples=[{"zh-CN": "大客户经理", "en": "Key account manager"}],
    )
    description: str | None = None
    permissions: list[str] = Field(
        description="Permission values (module:action); a consumer ignores one it does not know.",
        examples=[["account:self", "customers:view", "customers:edit", "opportunities:view"]],
    )
    scopes: dict[str, RoleScope] = Field(
        description="Per module, which records the role reaches: own, department, subtree (department and "
        "below) or all. A module not listed: own.",
        examples=[{"customers": "subtree", "opportunities": "department"}],
    )
    fields: dict[str, dict[str, FieldAccessRule]] = Field(
        default_factory=dict,
        description="Field-level permissions: module -> field -> hidden | read (a field not listed: read-write); "
        "custom fields are custom.<key>. Added later: an event without it restricts no field.",
        examples=[{"customers": {"phones": "hidden"}}],
    )
    builtin: bool = Field(description="One of admin, manager, rep, integrator: editable, never deleted.")
    status: RoleStatus = "active"
    created_at: datetime
    updated_at: datetime


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


# --- users ----------------------------------------------------------------------------


class UserCreated(BaseModel):
    user: UserSnapshot
    via: CreatedVia = "api"


class UserUpdated(BaseModel):
    user: UserSnapshot
    changes: list[FieldChange]
    cause: str | None = Field(
        default=None, description="Why, when not a person's edit: e.g. 'department_moved:<department id>'."
    )


class UserDeactivated(BaseModel):
    user: UserSnapshot
    reason: str | None = None


class UserReactivated(BaseModel):
    user: UserSnapshot


class UserPasswordChanged(BaseModel):
    """The password changed (no secret in it): every refresh token of the user was revoked."""

    user: UserSnapshot
    by: ChangedBy


# --- departments ----------------------------------------------------------------------------


class DepartmentCreated(BaseModel):
    department: DepartmentSnapshot


class DepartmentRenamed(BaseModel):
    department: DepartmentSnapshot
    old_name: str
    new_name: str


class DepartmentMoved(BaseModel):
    """The department's path changed: it was moved, or a department above it was.

    ``moved_department_id`` is the department an administrator moved; for the
    departments below it (whose parent did not change) it names that ancestor.
    """

    department: DepartmentSnapshot
    moved_department_id: str
    old_parent_id: str | None
    new_parent_id: str | None
    old_path: str
    new_path: str


class DepartmentManagerChanged(BaseModel):
    department: DepartmentSnapshot
    old_manager_id: str | None
    new_manager_id: str | None


class DepartmentDeleted(BaseModel):
    department: DepartmentSnapshot


# --- roles ----------------------------------------------------------------------------------


class RoleCreated(BaseModel):
    role: RoleSnapshot
    via: Literal["api", "seed"] = "api"


class RoleUpdated(BaseModel):
    role: RoleSnapshot
    changes: list[FieldChange]


class RoleDeleted(BaseModel):
    """A role no user held was deleted: it grants nothing from now on."""

    role: RoleSnapshot


USER_CREATED = define("crm.user.created", UserCreated, TOPIC, description="A user was created.")
USER_UPDATED = define(
    "crm.user.updated",
    UserUpdated,
    TOPIC,
    description="A user's profile, roles or department changed (also when their department moved).",
)
USER_DEACTIVATED = define(
    "crm.user.deactivated",
    UserDeactivated,
    TOPIC,
    description="A user was deactivated: they cannot sign in; their records and history are kept.",
)
USER_REACTIVATED = define("crm.user.reactivated", UserReactivated, TOPIC, description="A user was reactivated.")
USER_PASSWORD_CHANGED = define(
    "crm.user.password_changed",
    UserPasswordChanged,
    TOPIC,
    description="A user's password changed (by themselves or an administrator); no secret is carried.",
)
DEPARTMENT_CREATED = define("crm.department.created", DepartmentCreated, TOPIC, description="A department was created.")
DEPARTMENT_RENAMED = define("crm.department.renamed", DepartmentRenamed, TOPIC, description="A department was renamed.")
DEPARTMENT_MOVED = define(
    "crm.department.moved",
    DepartmentMoved,
    TOPIC,
    description="A department's path changed: it (or a department above it) moved under another parent.",
)
DEPARTMENT_MANAGER_CHANGED = define(
    "crm.department.manager_changed",
    DepartmentManagerChanged,
    TOPIC,
    description="A department's manager changed.",
)
DEPARTMENT_DELETED = define(
    "crm.department.deleted", DepartmentDeleted, TOPIC, description="An empty department was deleted."
)

# --- sign-ins (for the audit log) ----------------------------------------------------------------

SignInFailure = Literal["invalid_credentials", "deactivated"]


class SignedIn(BaseModel):
    """A user signed in with their password (subject: the user id; actor: the user)."""

    user_id: str
    email: str
    client_address: str | None = Field(
        default=None, description="The client's address as the directory saw it through CRM_TRUSTED_PROXIES."
    )


class SignInFailed(BaseModel):
    """A sign-in was refused (subject: an id of this attempt, never a user id; no actor).

    An unknown email and a wrong password give the same reason, ``invalid_credentials``, and
    the event names no user, so it tells no more than the sign-in answer did: whether an
    account exists stays unknown. ``deactivated`` is only ever given after the right password
    (the answer says so too). Attempts refused by the throttle (429) make no event.
    """

    email: str = Field(description="The email as typed (lower-cased), which may name no account.")
    reason: SignInFailure
    client_address: str | None = Field(
        default=None, description="The client's address as the directory saw it through CRM_TRUSTED_PROXIES."
    )


SIGNED_IN = define(
    "crm.directory.signed_in",
    SignedIn,
    TOPIC,
    description="A user signed in with email and password (refreshing a token is not a sign-in). "
    "Webhooks get it only by naming it exactly, not through a wildcard.",
    exact_only=True,  # the email people typed: a webhook gets it only by naming the type
)
SIGN_IN_FAILED = define(
    "crm.directory.sign_in_failed",
    SignInFailed,
    TOPIC,
    description="A sign-in with email and password was refused; names no user, so it does not tell "
    "whether the account exists. Webhooks get it only by naming it exactly, not through a wildcard.",
    exact_only=True,  # the email people typed: a webhook gets it only by naming the type
)

ROLE_CREATED = define(
    "crm.role.created",
    RoleCreated,
    TOPIC,
    description="A role was defined (by an administrator, or a built-in role seeded at first start).",
)
ROLE_UPDATED = define(
    "crm.role.updated",
    RoleUpdated,
    TOPIC,
    description="A role's names, description, permissions or data scopes changed.",
)
ROLE_DELETED = define(
    "crm.role.deleted", RoleDeleted, TOPIC, description="A custom role no user held was deleted: it grants nothing."
)

USER_EVENTS = (USER_CREATED, USER_UPDATED, USER_DEACTIVATED, USER_REACTIVATED, USER_PASSWORD_CHANGED)
DEPARTMENT_EVENTS = (
    DEPARTMENT_CREATED,
    DEPARTMENT_RENAMED,
    DEPARTMENT_MOVED,
    DEPARTMENT_MANAGER_CHANGED,
    DEPARTMENT_DELETED,
)
ROLE_EVENTS = (ROLE_CREATED, ROLE_UPDATED, ROLE_DELETED)
