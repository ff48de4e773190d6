"""What the quotation list sorts and filters on (no I/O).

Every quotation keeps never-null sort copies in ``s`` (see crm_platform.sortkeys): the creation
moment as epoch milliseconds, the number, ``valid_until`` as the integer day ``YYYYMMDD`` (a range
on an ISO string is compared through a function on the embedded store, which no index serves) and
its copy ``valid_day`` for the status filter, the total in minor units (comparable only within one
currency: the list sorts on it only with a ``currency`` filter) and the id. ``expired`` is not
stored (it is computed on read), so the status filter is an equality on the stored status plus a
range on the ``valid_until`` day: an open status means "on or after today", ``expired`` means one
of the open statuses "before today" (one indexed query per open status).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from crm_platform.sortkeys import epoch_ms
from crm_sales.domain.quotations import OPEN

Document = dict[str, Any]

#: Bumped when the shape of ``s`` changes: the start-up rewrites older documents once.
SORT_VERSION = 1
SORT_FIELDS = {
    "created_at": "s.created_at",
    "number": "s.number",
    "valid_until": "s.valid_until",
    "total": "s.total",
}
DEFAULT_SORT = "-created_at"
#: Equality filters of the list, each with its own ``(<field>, s.<sort>, s.id)`` index per sort;
#: ``department_path`` is the visibility's branch (department scope) and ``currency`` the one
#: filter a sort on ``total`` requires.
FILTER_FIELDS = ("customer_id", "opportunity_id", "owner_id", "status", "currency", "department_path")


def day(value: date) -> int:
    return value.year * 10000 + value.month * 100 + value.day


def sort_keys(doc: Document) -> Document:
    return {
        "v": SORT_VERSION,
        "created_at": epoch_ms(doc["created_at"]),
        "number": str(doc.get("number") or ""),
        "valid_until": day(date.fromisoformat(doc["valid_until"])),
        # The same day again, for the status filter's range: were the range on ``valid_until``,
        # SQLite would take an index (<filter>, s.valid_until) for it and sort every match by the
        # asked key; on a copy no list index holds, the sort's index is walked and this is a test.
        "valid_day": day(date.fromisoformat(doc["valid_until"])),
        "total": int(doc.get("total_minor") or 0),
        "id": doc["_id"],
    }


def status_conditions(status: str, today: date) -> Document:
    """The stored condition of a shown status (see quotations.shown_status)."""
    if status == "expired":
        return {"$or": [{"status": s, "s.valid_day": {"$lt": day(today)}} for s in OPEN]}
    if status in OPEN:
        return {"status": status, "s.valid_day": {"$gte": day(today)}}
    return {"status": status}


def number_prefix(text: str) -> Document:
    """Numbers starting with ``text`` (any case), as a range the number's unique index serves."""
    prefix = text.strip().upper()
    return {"$gte": prefix, "$lt": prefix + "\U0010ffff"}
