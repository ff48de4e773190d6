"""The first administrator: from the CLI, or from settings on the first start.

There is never a built-in account or password: the password is either given by the
operator (``--password-stdin``) or generated here and shown exactly once.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from crm_directory.application.directory import Directory
from crm_directory.domain import departments as dept_rules
from crm_directory.domain.model import DepartmentCreate
from crm_directory.domain.passwords import generate_password
from crm_platform.auth import Principal, Role
from crm_platform.contracts.directory import CreatedVia
from crm_platform.errors import Conflict, Duplicate

log = structlog.get_logger(__name__)
Document = dict[str, Any]


def system_principal(name: str) -> Principal:
    # Genuinely the built-in admin: a start-up job has no token and no role book, so it acts with
    # the built-in admin's defaults (allow-listed in tests/test_code_quality.py).
    return Principal(user_id=f"system:{name}", name=name, roles=frozenset({Role.admin}))


async def ensure_department_path(directory: Directory, path: str, actor: Principal) -> Document:
    """The department at ``path`` ("/hq" or "/hq/it"), creating the missing ones (named after their ids)."""
    ids = [part for part in path.strip().strip("/").split("/") if part]
    if not ids:
        raise ValueError("the department path must name at least one department, e.g. /hq")
    parent: Document | None = None
    for department_id in ids:
        dept_rules.validate_id(department_id, "department_path")
        doc = await directory.repo.department(department_id)
        if doc is not None and doc.get("status") == "active":
            if doc.get("parent_id") != (parent["_id"] if parent else None):
                raise Conflict(f"Department {department_id} exists elsewhere in the tree, at {doc['path']}.")
        else:
            doc = await directory.departments.create(
                actor,
                DepartmentCreate(id=department_id, name=department_id, parent_id=parent["_id"] if parent else None),
            )
        parent = doc
    assert parent is not None
    return parent


async def create_admin(
    directory: Directory,
    *,
    email: str,
    name: str,
    department_path: str,
    password: str | None,
    via: CreatedVia,
) -> tuple[Document, str | None]:
    """Create an administrator; returns the user and the generated password (None if one was given)."""
    actor = system_principal(via)
    generated = None if password else generate_password()
    department = await ensure_department_path(directory, department_path, actor)
    user = await directory.users.insert(
        actor=actor.user_id,
        user_id=f"u-{uuid.uuid4().hex[:16]}",
        email=email,
        name=name,
        phone=None,
        language="zh-CN",
        # The bootstrap administrator holds the built-in admin role (allow-listed, as above).
        roles=[Role.admin.value],
        department_id=department["_id"],
        password=password or generated,
        active=True,
        via=via,
    )
    return user, generated


async def bootstrap_admin(directory: Directory, out: Callable[[str], None] | None = None) -> Document | None:
    """On start: if settings name a bootstrap admin and no active admin exists, create one.

    The generated password goes to stdout once (not to the structured log). Several
    replicas starting together race on the unique email; the losers do nothing.
    """
    s = directory.settings
    email = s.directory_bootstrap_admin_email
    if not email or await directory.repo.count_active_admins() > 0:
        return None
    try:
        user, password = await create_admin(
            directory,
            email=email,
            name=s.directory_bootstrap_admin_name,
            department_path=s.directory_bootstrap_department_path,
            password=None,
            via="bootstrap",
        )
    except Duplicate:
        log.warning("bootstrap admin not created: the email is already used", email=email)
        return None
    write = out or (lambda text: print(text, file=sys.stdout, flush=True))
    write(
        f"\n*** First administrator created: {user['email']} (id {user['_id']}).\n"
        f"*** Password (shown once, change it after signing in): {password}\n"
    )
    log.info("bootstrap admin created", user_id=user["_id"], email=user["email"])
    return user
