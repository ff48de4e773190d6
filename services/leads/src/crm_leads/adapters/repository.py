"""The leads service's collections, their indexes, and the key documents of its duplicate check.

``leads`` and ``campaigns`` are aggregates written only through a :class:`VersionedStore` (state, version and
outbox events in one guarded write). ``lead_keys`` and ``customer_keys`` are the keys leads
and customers hold (normalised company name, phones, emails) as documents keyed by ``_id``
(:mod:`crm_platform.keydocs`): a check is one ``_id`` lookup per key, where ``$in`` on the
leads' array fields would read every lead on the embedded store. ``customers`` is the copy of
each customer's keys, fed by the customers service's events (``source_version`` guarded), and
``directory_users``/``directory_departments`` the directory's read copy (for assignment).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from crm_leads.domain.leads import SORT_FIELDS
from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.keydocs import KeyDocuments
from crm_platform.store import VersionedStore

Document = dict[str, Any]

#: The visibility alternatives a list is split into (crm_platform.listing runs one indexed query
#: per ``$or`` branch), each with ``deleted`` behind it: everything (scope all), one owner (own
#: scope, the owner_id filter), a department path (department, subtree by an anchored regex:
#: a range of the same index) and the lead pool.
PREFIXES: dict[str, list[tuple[str, int]]] = {
    "live": [("deleted", ASCENDING)],
    "owner": [("owner_id", ASCENDING), ("deleted", ASCENDING)],
    "dept": [("department_path", ASCENDING), ("deleted", ASCENDING)],
    "pool": [("in_pool", ASCENDING), ("deleted", ASCENDING)],
    # One department's pool (a rep's own department: see crm_leads.domain.assignment.pool_branch).
    "pooldept": [("in_pool", ASCENDING), ("department_path", ASCENDING), ("deleted", ASCENDING)],
}
#: Equality filters of the list, each with an index behind every prefix so that a filtered page
#: is an index search walked in sort order, not a walk of the whole scope testing each row.
FILTERS = ("status", "campaign_id", "source", "department_id")


def list_indexes() -> list[IndexModel]:
    sorts = [field for field in SORT_FIELDS.values()]
    out: list[IndexModel] = []
    for name, prefix in PREFIXES.items():
        for sort in sorts:
            key = sort.removeprefix("s.")
            out.append(IndexModel([*prefix, (sort, ASCENDING), ("s.id", ASCENDING)], name=f"{name}_{key}"))
            for field in FILTERS:
                out.append(
                    IndexModel(
                        [*prefix, (field, ASCENDING), (sort, ASCENDING), ("s.id", ASCENDING)],
                        name=f"{name}_{field}_{key}",
                    )
                )
    # Single fields, named so the embedded store uses them (its planner wants a name ending in _<field>).
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in ("owner_id", "deleted", "in_pool", "status")]
    # And every other field a list compares by equality: the department path (a visibility branch),
    # the filters, and the sort keys a cursor's tie branch pins (``s.created_at = v``). Without its
    # idx_<field> the embedded store compiles each as an array test of every row the index finds.
    out += [
        IndexModel([(f, ASCENDING)], name=f"idx_{f}")
        for f in ("department_path", "campaign_id", "source", "department_id", *sorts)
    ]
    # A user's open leads (the assignment rules' capacity): counted from this index alone.
    out.append(IndexModel([("owner_id", ASCENDING), ("deleted", ASCENDING), ("status", ASCENDING)], name="open_status"))
    return out


#: Campaign lists: every one is ``live`` (always true: the prefix that lets an unfiltered page walk an
#: index), then an optional equality filter, then the sort key and the id.
CAMPAIGN_FILTERS = ("status", "channel", "owner_id")


def campaign_indexes() -> list[IndexModel]:
    out: list[IndexModel] = []
    for key in ("created_at", "start_date"):
        sort = [(f"s.{key}", ASCENDING), ("s.id", ASCENDING)]
        out.append(IndexModel([("live", ASCENDING), *sort], name=f"live_{key}"))
        out += [
            IndexModel([("live", ASCENDING), (field, ASCENDING), *sort], name=f"live_{field}_{key}")
            for field in CAMPAIGN_FILTERS
        ]
    # Single fields named idx_<field>: the embedded store turns an equality into a plain (indexable)
    # comparison only for a field with an index so named, else into an array-aware OR that scans.
    out += [IndexModel([(f, ASCENDING)], name=f"idx_{f}") for f in ("live", *CAMPAIGN_FILTERS)]
    # So for the sort keys: a cursor's tie branch (``s.start_date = v``) is then a scalar comparison.
    out += [IndexModel([(f"s.{k}", ASCENDING)], name=f"idx_s.{k}") for k in ("created_at", "start_date")]
    return out


class LeadRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.leads = db["leads"]
        self.store = VersionedStore(
            self.leads, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No lead with id {i}.")
        )
        self.lead_keys = KeyDocuments(db["lead_keys"])
        self.campaigns = db["campaigns"]
        self.campaign_store = VersionedStore(
            self.campaigns, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No campaign with id {i}.")
        )
        self.customers = db["customers"]
        self.customer_keys = KeyDocuments(db["customer_keys"])
        self.directory_users = db["directory_users"]
        self.directory_departments = db["directory_departments"]
        self.lead_settings = db["lead_settings"]  # the pool's settings (crm_leads.application.assignment)
        # Intake: CSV import records (with their summary event), the campaigns' web-form keys (the
        # key's hash as ``_id``), the web form's per-campaign counts, and rate-limit counters
        # (``_id`` "addr:<ip>:<window>" or "key:<hash>:<window>", deleted once their window is over).
        self.imports = db["lead_imports"]
        self.import_store = VersionedStore(
            self.imports, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No import with id {i}.")
        )
        self.web_form_keys = db["web_form_keys"]
        self.web_form_stats = db["web_form_stats"]
        self.rate_counters = db["rate_counters"]

    async def ensure_indexes(self) -> None:
        await self.leads.create_indexes(list_indexes())
        await self.campaigns.create_indexes(campaign_indexes())
        # Not a TTL index: with one in the database the embedded store reads its TTL table on every
        # statement; spent counters are deleted by an index range on their end (application/webform.py).
        await self.rate_counters.create_index([("expires_ms", ASCENDING)], name="idx_expires_ms")

    async def get(self, lead_id: str) -> Document | None:
        return await self.store.get(lead_id)

    async def customer(self, customer_id: str) -> Document | None:
        return await self.customers.find_one({"_id": customer_id})
