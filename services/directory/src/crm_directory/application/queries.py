"""Lists: users (filters, visibility, multi-key sort, keyset cursors) and departments."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.collection import AsyncCollection

from crm_directory.adapters.repository import PUBLIC_PROJECTION, DirectoryRepository
from crm_directory.domain import departments as dept_rules
from crm_directory.domain import users as user_rules
from crm_platform.auth import ROLE_ID, Principal
from crm_platform.contracts.directory import Language
from crm_platform.errors import Forbidden, ValidationFailed
from crm_platform.listing import PageParams, all_of, fetch_page, parse_sort
from crm_platform.permissions import Permission
from crm_platform.sortkeys import TIEBREAK

Document = dict[str, Any]


class Page(BaseModel):
    items: list[Document]
    next_cursor: str | None
    total: int | None = None


async def _page(
    collection: AsyncCollection[Document],
    clauses: list[Document],
    sort_fields: dict[str, str],
    default_sort: str,
    projection: Document,
    paging: PageParams,
) -> Page:
    # One flat query (the embedded store never indexes a literal $and); a visibility $or is run
    # by fetch_page as one indexed query per alternative, merged in sort order.
    page = await fetch_page(
        collection,
        all_of(*clauses),
        paging,
        sort_fields=sort_fields,
        default_sort=default_sort,
        projection=projection,
        tiebreak=TIEBREAK,
    )
    return Page(items=page.items, next_cursor=page.next_cursor, total=page.total)


class UserFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    department_id: str | None = Field(default=None, max_length=63, description="Users of this department ...")
    subtree: bool = Field(default=True, description="... and of every department below it (false: only it).")
    role: str | None = Field(
        default=None, pattern=ROLE_ID.pattern, description="Users holding this role (built-in or defined)."
    )
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
    if not principal.reaches_beyond_own(user_rules.USERS):
        raise Forbidden(
            "Lists of users need a users scope beyond one's own; read yourself at /v1/me and "
            "anyone's name and department at /v1/users/{id}."
        )
    paging = PageParams(sort=sort, cursor=cursor, limit=limit, include_total=with_total)
    parse_sort(sort, user_rules.SORT_FIELDS, "name")  # a bad sort is a 422 before any look-up
    clauses: list[Document] = []
    if not principal.reaches_all(user_rules.USERS):
        # Oneself, and the users of the departments one's users scope reaches (an indexed
        # equality on the path for "department", an anchored regex for "subtree").
        visible = principal.mongo_visibility("_id", "department_path", module=user_rules.USERS)
        clauses.append(visible)
    if filters.department_id:
        department = await repo.department(filters.department_id)
        if department is None:
            raise ValidationFailed.for_field("department_id", f"no department with id {filters.department_id}", "query")
        if filters.subtree:
            clauses.append({"department_path": {"$regex": dept_rules.subtree_regex(department["path"])}})
        else:
            clauses.append({"department_id": department["_id"]})
    if filters.role is not None:
        # The role's holders, from their own index (a test of the roles array would read every
        # user on the embedded store). A holding is written just before the user's roles change
        # and settled just after; one a crash left behind is dropped from the page below.
        holders = await repo.holder_ids(filters.role)
        if not holders:
            return Page(items=[], next_cursor=None, total=0 if with_total else None)
        clauses.append({"_id": {"$in": holders}})
    if filters.active is not None:
        clauses.append({"status": "active" if filters.active else "deactivated"})
    if filters.language is not None:
        clauses.append({"language": filters.language})
    if filters.q:
        clauses.append({"search": {"$regex": re.escape(filters.q.strip().casefold())}})
    page = await _page(repo.users, clauses, user_rules.SORT_FIELDS, "name", PUBLIC_PROJECTION, paging)
    if filters.role is not None:
        page.items = [u for u in page.items if filters.role in (u.get("roles") or [])]
    return page


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
    # Built without validation: the endpoint already checked the values, and its limit (up to
    # 1000, the whole tree in one page) is wider than PageParams' own bound of 500.
    paging = PageParams.model_construct(sort=sort, cursor=cursor, limit=limit, include_total=with_total)
    parse_sort(sort, dept_rules.SORT_FIELDS, "path")  # a bad sort is a 422 before any look-up
    clauses: list[Document] = []
    if not (filters.include_deleted and principal.holds(Permission.departments_manage)):
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
    return await _page(repo.departments, clauses, dept_rules.SORT_FIELDS, "path", {"outbox": 0}, paging)


async def department_tree(repo: DirectoryRepository, root_id: str | None) -> list[Document]:
    query: Document = {"status": "active"}
    if root_id:
        root = await repo.department(root_id)
        if root is None or root.get("status") != "active":
            raise ValidationFailed.for_field("root", f"no department with id {root_id}", "query")
        query["path"] = {"$regex": dept_rules.subtree_regex(root["path"])}
    docs = [d async for d in repo.departments.find(query, projection={"outbox": 0}).sort([("path", 1)])]
    return dept_rules.build_tree(docs, root_id)
