"""Who may see which figures: the visibility rules of the source data, as query filters.

A rep sees their own work only (asking for someone else's is a 403), a manager their
department subtree, an admin everything. Facts and states keep the owner (or author,
assignee) and that person's department path, so the filter is a plain query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crm_platform.auth import Principal
from crm_platform.errors import Forbidden
from crm_platform.listing import all_of
from crm_reporting.domain.periods import in_subtree

Document = dict[str, Any]


def subtree_regex(path: str) -> Document:
    return {"$regex": f"^{re.escape(path.rstrip('/'))}(/|$)"}


@dataclass(frozen=True)
class Scope:
    """The caller plus the owner/department filters of a report request (already checked)."""

    principal: Principal
    owner_id: str | None = None
    department_path: str | None = None

    @classmethod
    def check(cls, principal: Principal, owner_id: str | None, department_path: str | None) -> Scope:
        if principal.is_admin:
            return cls(principal, owner_id, department_path)
        if department_path and not principal.manages_path(department_path):
            raise Forbidden("You may only see reports on your own department subtree.")
        if owner_id and owner_id != principal.user_id and not principal.is_manager:
            raise Forbidden("A rep may only see reports on their own work.")
        return cls(principal, owner_id, department_path)

    def query(self, owner_field: str = "owner_id", path_field: str = "department_path") -> Document:
        clauses = [self.principal.mongo_visibility(owner_field, path_field)]
        if self.owner_id:
            clauses.append({owner_field: self.owner_id})
        if self.department_path:
            clauses.append({path_field: subtree_regex(self.department_path)})
        return all_of(*clauses)

    def allows(self, owner_id: str | None, department_path: str | None) -> bool:
        """The same rule for one record in Python."""
        if not self.principal.can_see_owned(owner_id, department_path):
            return False
        if self.owner_id and owner_id != self.owner_id:
            return False
        return in_subtree(department_path, self.department_path)
