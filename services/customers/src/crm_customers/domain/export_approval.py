"""Export approval's rules (no I/O): when an export is held, who may answer a request, what
answering and downloading do to it.

A request is a document: who asked (``requester_id``, ``requester_department_path``), the filter
and sort, the rows counted then, the threshold it exceeded, ``status`` (pending, approved,
rejected), moments in epoch ms (``at_ms`` requested, ``decided_at_ms``, ``valid_until_ms``), the
approver (``decided_by``), the comment and the downloads. While pending it carries
``pending_path``: the requester's department path with a closing ``/``, so a manager's pending
requests are one index range (every path under theirs), and an answered request leaves it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm_platform.auth import Principal
from crm_platform.contracts import export_approval as ev
from crm_platform.errors import Conflict, Forbidden, NotFound

Document = dict[str, Any]
#: The data-scope module whose reach decides which requests an approver answers.
CUSTOMERS = "customers"

POLICY_ID = "export-policy"
#: Above every character a department id may hold: the end of a path-prefix range.
PATH_END = "\U0010ffff"
MAX_COMMENT = 1000


def needs_approval(threshold: int | None, rows: int, exempt: bool) -> bool:
    """An export is held when approval is on, it counts more rows than the threshold, and the
    exporter is not one who answers requests (managers and admins: holding theirs would only send
    it to a peer or to themselves)."""
    return threshold is not None and not exempt and rows > threshold


def pending_key(department_path: str | None) -> str:
    return (department_path or "").rstrip("/") + "/"


def pending_range(approver: Principal) -> dict[str, str] | None:
    """The ``pending_path`` range of the requests this approver may answer, by their ``customers``
    data scope: all of them, their department and below, their department only (an equality,
    as a range of one key), or none (``own``)."""
    scope = approver.scope(CUSTOMERS)
    if scope == "all":
        return {"$gte": "/", "$lt": "/" + PATH_END}
    if scope in ("subtree", "department") and approver.department_path:
        mine = pending_key(approver.department_path)
        return {"$gte": mine, "$lt": mine + PATH_END} if scope == "subtree" else {"$gte": mine, "$lte": mine}
    return None


def may_answer(approver: Principal, request: Document) -> bool:
    """An approver answers the requests from the departments their ``customers`` data scope reaches
    (by default: a manager their department and below, an administrator all); nobody their own."""
    if request["requester_id"] == approver.user_id:
        return False
    return approver.reaches_path(request.get("requester_department_path"), CUSTOMERS)


def may_read(principal: Principal, request: Document) -> bool:
    return request["requester_id"] == principal.user_id or may_answer(principal, request)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _moment(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def new_request(
    request_id: str,
    requester: Principal,
    filters: Document,
    sort: str | None,
    rows: int,
    threshold: int,
    now: datetime,
) -> Document:
    return {
        "_id": request_id,
        "requester_id": requester.user_id,
        "requester_department_path": requester.department_path,
        "filter": filters,
        "sort": sort,
        "rows": rows,
        "threshold": threshold,
        "status": "pending",
        "at_ms": _ms(now),
        "pending_path": pending_key(requester.department_path),
        "downloads": 0,
    }


def answered(
    request: Document, approver: Principal, approve: bool, comment: str | None, now: datetime, valid_for: timedelta
) -> Document:
    """The request after an approver's answer; refused if they may not answer it or it was answered."""
    if not may_answer(approver, request):
        if request["requester_id"] == approver.user_id:
            raise Forbidden("You cannot answer your own export request; another approver must.")
        raise Forbidden("This export request is from outside the departments you manage.")
    if request["status"] != "pending":
        raise Conflict(f"This export request was already {request['status']}.")
    out = {k: v for k, v in request.items() if k != "pending_path"}
    out |= {
        "status": "approved" if approve else "rejected",
        "decided_by": approver.user_id,
        "decided_at_ms": _ms(now),
        "comment": comment,
    }
    if approve:
        out["valid_until_ms"] = _ms(now + valid_for)
    return out


def downloaded(request: Document, principal: Principal, now: datetime) -> Document:
    """The request after its requester downloaded it; refused unless approved and still valid."""
    if request["requester_id"] != principal.user_id:
        raise NotFound(f"No export request with id {request['_id']} of yours.")
    if request["status"] != "approved":
        raise Conflict(f"This export request is {request['status']}: only an approved one can be downloaded.")
    if _ms(now) >= int(request["valid_until_ms"]):
        raise Conflict("This export's approval has expired: export again to ask anew.")
    return {**request, "downloads": int(request.get("downloads", 0)) + 1, "last_downloaded_at_ms": _ms(now)}


def snapshot(request: Document) -> ev.ExportRequestSnapshot:
    return ev.ExportRequestSnapshot(
        request_id=request["_id"],
        requester_id=request["requester_id"],
        requester_department_path=request.get("requester_department_path"),
        filter=request.get("filter") or {},
        sort=request.get("sort"),
        rows=request["rows"],
        threshold=request["threshold"],
        status=request["status"],
        requested_at=_moment(request["at_ms"]) or datetime.fromtimestamp(0, UTC),
        decided_by=request.get("decided_by"),
        decided_at=_moment(request.get("decided_at_ms")),
        comment=request.get("comment"),
        valid_until=_moment(request.get("valid_until_ms")),
        downloads=int(request.get("downloads", 0)),
    )
