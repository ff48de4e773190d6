"""Who is told what about a quotation's approval (crm.sales.v1): pure functions, no I/O.

A quotation submitted for approval (a discount above the threshold) is told to its **approvers**:
the users who hold ``quotations:approve`` and whose customers scope reaches the quotation's
department (the same rule the sales service applies to who may see and decide it), never its owner
(who may not approve their own). The decision (approved, rejected) is told to the quotation's owner,
with the approver's comment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crm_notifications.domain.kinds import Kind
from crm_notifications.domain.planning import Intent, money
from crm_platform.auth import Principal
from crm_platform.contracts import sales

Document = dict[str, Any]
APPROVE = "quotations:approve"
MODULE = "customers"  # quotations follow their customers' data scope


def link(q: sales.QuotationSnapshot) -> str:
    return f"/quotations/{q.quotation_id}"  # the console's page of the quotation


def may_approve(user: Principal, q: sales.QuotationSnapshot) -> bool:
    """``user`` (resolved against the role definitions) may decide on ``q``: holds the permission,
    sees the quotation (customers scope over its department) and is not its owner."""
    return (
        user.user_id != q.owner_id
        and user.holds(APPROVE)
        and user.can_see_owned(q.owner_id, q.department_path, module=MODULE)
    )


def params(q: sales.QuotationSnapshot) -> dict[str, str]:
    return {
        "number": q.number,
        "customer_name": q.customer_name or q.customer_id,
        "total": money(q.total, q.currency),
    }


def submitted(q: sales.QuotationSnapshot, owner_name: str, approvers: Iterable[Principal]) -> list[Intent]:
    """One intent per approver (each once; the owner never)."""
    values = {**params(q), "owner_name": owner_name}
    seen: set[str] = set()
    out: list[Intent] = []
    for user in approvers:
        if user.user_id in seen or not may_approve(user, q):
            continue
        seen.add(user.user_id)
        out.append(Intent(user.user_id, Kind.quotation_approval_requested, link(q), values))
    return out


def decided(q: sales.QuotationSnapshot, approved: bool, approver_name: str, comment: str | None) -> list[Intent]:
    """The owner learns the decision and the comment (not when they decided it themselves: they cannot)."""
    kind = Kind.quotation_approved if approved else Kind.quotation_rejected
    values = {**params(q), "approver_name": approver_name, "comment": comment or "-"}
    return [Intent(q.owner_id, kind, link(q), values)]
