"""Who may see which figures: the visibility rules of the source data, as query filters.

A report covers what the caller's ``reports`` data scope reaches (the role definitions'
widest over the caller's roles): own (asking for someone else's is a 403), their department,
their department subtree, or everything. Facts and states keep the owner (or author,
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

#: The data-scope module reports honour (see the root README, "Who may do what").
REPORTS = "reports"

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
        if department_path and not principal.reaches_path(department_path, REPORTS):
            raise Forbidden("You may only see reports on the departments your reports scope reaches.")
        if owner_id and owner_id != principal.user_id and not principal.reaches_beyond_own(REPORTS):
            raise Forbidden("A reports scope of own sees reports on one's own work only.")
        return cls(principal, owner_id, department_path)

    def query(self, owner_field: str = "owner_id", path_field: str = "department_path") -> Document:
        clauses = [self.principal.mongo_visibility(owner_field, path_field, module=REPORTS)]
        if self.owner_id:
            clauses.append({owner_field: self.owner_id})
        if self.department_path:
            clauses.append({path_field: subtree_regex(self.department_path)})
        return all_of(*clauses)

    def allows(self, owner_id: str | None, department_path: str | None) -> bool:
        """The same rule for one record in Python."""
        if not self.principal.can_see_owned(owner_id, department_path, module=REPORTS):
            return False
        if self.owner_id and owner_id != self.owner_id:
            return False
        return in_subtree(department_path, self.department_path)
