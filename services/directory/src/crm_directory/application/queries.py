"""Lists: users (filters, visibility, multi-key sort, keyset cursors) and departments."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crm_directory.adapters.repository import DirectoryRepository
from crm_directory.domain import departments as dept_rules
from crm_directory.domain import users as user_rules
from crm_platform.auth import Principal, Role
from crm_platform.contracts.directory import Language
from crm_platform.errors import Forbidden, ValidationFailed
from crm_platform.listing import SortKey, decode_cursor, encode_cursor, keyset_filter, mongo_sort, parse_sort

Document = dict[str, Any]


class Page(BaseModel):
    items: list[Document]
    next_cursor: str | None
    total: int | None = None


async def _page(
    find: Any, count: Any, base: Document, keys: list[SortKey], cursor: str | None, limit: int, with_total: bool
) -> Page:
    query = base
    if cursor:
        after = keyset_filter(keys, decode_cursor(cursor, keys))
        query = {"$and": [base, after]} if base else after
    docs = [d async for d in find(query, mongo_sort(keys), limit + 1)]
    next_cursor = encode_cursor(docs[limit - 1], keys) if len(docs) > limit else None
    # Counting is the slow part on large collections, so it is on demand.
    total = await count(base) if with_total else None
    return Page(items=docs[:limit], next_cursor=next_cursor, total=total)


def _and(clauses: list[Document]) -> Document:
    return {"$and": clauses} if len(clauses) > 1 else (clauses[0] if clauses else {})


class UserFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    department_id: str | None = Field(default=None, max_length=63, description="Users of this department ...")
    subtree: bool = Field(default=True, description="... and of every department below it (false: only it).")
    role: Role | None = None
    active: bool | None = Field(default=None, description="true: active only; false: deactivated only.")
    language: Language | None = None
    q: str | None = Field(default=None, max_length=100, description="Name or email contains (case-insensitive).")


async def list_users(
    repo: DirectoryRepository,
    principal: Principal,
    filters: UserFilter,
    *,
    sort: str | None,
    cursor: str | None,
    limit: int,
    with_total: bool,
) -> Page:
    if not (principal.is_admin or principal.is_manager):
        raise Forbidden(
            "Lists of users are for managers and administrators; read yourself at /v1/me and "
            "anyone's name and department at /v1/users/{id}."
        )
    keys = parse_sort(sort, user_rules.SORT_FIELDS, "name")
    clauses: list[Document] = []
    if not principal.is_admin:
        mine = principal.department_path
        visible: list[Document] = [{"_id": principal.user_id}]
        if mine:
            visible.append({"department_path": {"$regex": dept_rules.subtree_regex(mine)}})
        clauses.append({"$or": visible})
    if filters.department_id:
        department = await repo.department(filters.department_id)
        if department is None:
            raise ValidationFailed.for_field("department_id", f"no department with id {filters.department_id}", "query")
        if filters.subtree:
            clauses.append({"department_path": {"$regex": dept_rules.subtree_regex(department["path"])}})
        else:
            clauses.append({"department_id": department["_id"]})
    if filters.role is not None:
        # $in, not equality: the embedded store's equality on an array field can miss elements.
        clauses.append({"roles": {"$in": [filters.role.value]}})
    if filters.active is not None:
        clauses.append({"status": "active" if filters.active else "deactivated"})
    if filters.language is not None:
        clauses.append({"language": filters.language})
    if filters.q:
        clauses.append({"search": {"$regex": re.escape(filters.q.strip().casefold())}})
    return await _page(repo.find_users, repo.count_users, _and(clauses), keys, cursor, limit, with_total)


class DepartmentFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parent_id: str | None = Field(default=None, max_length=63, description="Direct children of this department.")
    under: str | None = Field(default=None, max_length=63, description="This department and every department below it.")
    manager_id: str | None = Field(default=None, max_length=128)
    q: str | None = Field(default=None, max_length=100, description="Name contains (case-insensitive).")
    include_deleted: bool = Field(default=False, description="Admins only: also deleted departments.")


async def list_departments(
    repo: DirectoryRepository,
    principal: Principal,
    filters: DepartmentFilter,
    *,
    sort: str | None,
    cursor: str | None,
    limit: int,
    with_total: bool,
) -> Page:
    keys = parse_sort(sort, dept_rules.SORT_FIELDS, "path")
    clauses: list[Document] = []
    if not (filters.include_deleted and principal.is_admin):
        clauses.append({"status": "active"})
    if filters.parent_id:
        clauses.append({"parent_id": filters.parent_id})
    if filters.under:
        root = await repo.department(filters.under)
        if root is None:
            raise ValidationFailed.for_field("under", f"no department with id {filters.under}", "query")
        clauses.append({"path": {"$regex": dept_rules.subtree_regex(root["path"])}})
    if filters.manager_id:
        clauses.append({"manager_id": filters.manager_id})
    if filters.q:
        clauses.append({"s.name": {"$regex": re.escape(filters.q.strip().casefold())}})
    return await _page(
        repo.find_departments, repo.departments.count_documents, _and(clauses), keys, cursor, limit, with_total
    )


async def department_tree(repo: DirectoryRepository, root_id: str | None) -> list[Document]:
    query: Document = {"status": "active"}
    if root_id:
        root = await repo.department(root_id)
        if root is None or root.get("status") != "active":
            raise ValidationFailed.for_field("root", f"no department with id {root_id}", "query")
        query["path"] = {"$regex": dept_rules.subtree_regex(root["path"])}
    docs = [d async for d in repo.departments.find(query, projection={"outbox": 0}).sort([("path", 1)])]
    return dept_rules.build_tree(docs, root_id)
