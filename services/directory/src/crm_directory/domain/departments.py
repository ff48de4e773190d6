"""The department tree's rules: ids, paths, cycles. Plain functions, no I/O.

A department's ``path`` is the ids from the root joined by "/" ("/hq/east/sh-team-1").
It is what access tokens carry (``dept_path``) and what every service compares
with a prefix test, so ids are slugs that can never contain "/".
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import UTC, datetime
from typing import Any

from crm_platform.contracts.directory import DepartmentSnapshot
from crm_platform.errors import Conflict, FieldError, ValidationFailed
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")
# Path segments of the HTTP API that would hide a department with that id.
RESERVED_IDS = frozenset({"tree"})

#: API sort keys -> stored, never-null fields (see crm_platform.listing).
SORT_FIELDS = {"path": "path", "name": "s.name", "created_at": "s.created_at", "updated_at": "s.updated_at"}


def validate_id(raw: str, field: str = "id") -> str:
    value = raw.strip()
    if not ID_PATTERN.match(value):
        raise ValidationFailed.for_field(
            field, "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit (e.g. sh-team-1)"
        )
    if value in RESERVED_IDS:
        raise ValidationFailed.for_field(field, f"'{value}' is reserved; choose another id")
    return value


def slug_from_name(name: str) -> str | None:
    """An id proposed from a name ("East China Sales" -> "east-china-sales"); None if nothing ASCII is left."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:48].strip("-")
    return slug if slug and slug not in RESERVED_IDS else None


def generated_id(name: str) -> str:
    """A readable id when the admin chose none: the slug of the name, else "dept-<random>"."""
    return slug_from_name(name) or f"dept-{secrets.token_hex(4)}"


def with_suffix(base: str) -> str:
    """Another candidate when ``base`` is taken."""
    return f"{base[:54]}-{secrets.token_hex(3)}"


def child_path(parent_path: str | None, department_id: str) -> str:
    return f"{(parent_path or '').rstrip('/')}/{department_id}"


def is_within(path: str, ancestor_path: str) -> bool:
    """True if ``path`` is ``ancestor_path`` or below it (stopping at a segment boundary)."""
    return path == ancestor_path or path.startswith(ancestor_path.rstrip("/") + "/")


def subtree_regex(path: str) -> str:
    """An anchored regex for a path and everything below it (uses the index on the path)."""
    return f"^{re.escape(path.rstrip('/'))}(/|$)"


def ensure_not_into_itself(department: Document, new_parent: Document | None) -> None:
    """Refuse a move that would make a department its own ancestor (a cycle)."""
    if new_parent is None:
        return
    if new_parent["_id"] == department["_id"] or is_within(new_parent["path"], department["path"]):
        raise Conflict(
            f"Cannot move {department['_id']} under {new_parent['_id']}: "
            f"{new_parent['_id']} is {department['_id']} itself or one of its sub-departments.",
            errors=[FieldError(field="parent_id", reason="would create a cycle in the department tree")],
        )


def ensure_active(doc: Document | None, department_id: str, field: str = "department_id") -> Document:
    if doc is None or doc.get("status") != "active":
        raise ValidationFailed.for_field(field, f"no department with id {department_id}")
    return doc


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


def new_department(
    department_id: str,
    name: str,
    parent: Document | None,
    manager_id: str | None,
    actor: str,
    now: datetime,
) -> Document:
    doc: Document = {
        "_id": department_id,
        "name": name,
        "parent_id": parent["_id"] if parent else None,
        "path": child_path(parent["path"] if parent else None, department_id),
        "manager_id": manager_id,
        "status": "active",
        "created_at": now,
        "created_by": actor,
        "updated_at": now,
        "updated_by": actor,
    }
    doc["s"] = sort_keys(doc)
    return doc


def touch(doc: Document, actor: str, now: datetime) -> None:
    doc["updated_at"] = now
    doc["updated_by"] = actor
    doc["s"] = sort_keys(doc)


def snapshot(doc: Document) -> DepartmentSnapshot:
    return DepartmentSnapshot(
        department_id=doc["_id"],
        name=doc["name"],
        parent_id=doc.get("parent_id"),
        path=doc["path"],
        manager_id=doc.get("manager_id"),
        status=doc.get("status", "active"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def build_tree(docs: list[Document], root_id: str | None = None) -> list[Document]:
    """Nest departments (sorted by path) into {department, children}; roots first."""
    by_id: dict[str, Document] = {d["_id"]: {"department": d, "children": []} for d in docs}
    roots: list[Document] = []
    for doc in sorted(docs, key=lambda d: d["path"]):
        node = by_id[doc["_id"]]
        parent = by_id.get(doc.get("parent_id") or "")
        if doc["_id"] == root_id or (root_id is None and parent is None):
            roots.append(node)
        elif parent is not None:
            parent["children"].append(node)
    for node in by_id.values():
        node["children"].sort(key=lambda n: (n["department"]["name"].casefold(), n["department"]["_id"]))
    roots.sort(key=lambda n: (n["department"]["name"].casefold(), n["department"]["_id"]))
    return roots
