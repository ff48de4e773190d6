"""What each read copy and fact adds to the rollups (see ``adapters/rollups.py``).

The rules mirror the reports' definitions one for one, so a report summing rollups
gives the figures a scan of every state and fact would:

- a customer (active only): one per profile value in ``roll_customers`` (field ``*`` = the
  customer count), one under field ``*quality`` with the set of fields it misses; and, not
  a counter, ``touch_ms``: its last active interaction (or that of a customer merged
  into it), -1 for none, indexed for "not followed up";
- an interaction (active): ``ia`` (quality), ``if`` when a customer update followed
  within 24 h, ``ch:<channel>`` and ``ic:<key>:<value>`` per value of its groupable custom
  fields unless hidden (activity), in ``roll_time``;
- an opportunity (not hidden): its stage (``n:<stage>``/``amt:<stage>:<currency>`` on day 0);
  won/lost on its day (``won_n``, ``won_amt:<currency>``, ``lost_n``), or open with its expected
  close day and weighted amount (``open_n``, ``wtd:<currency>``), in ``roll_deals``; per value of
  its groupable custom fields ``on:``/``oa:`` (open, day 0), ``wn:``/``wa:`` (won) and ``ln:``
  (lost) on those documents, the amounts' with ``:<currency>`` last; under field
  ``*opportunity-quality`` in ``roll_customers`` the required custom fields it misses. Amounts
  are kept per currency: a report never adds two currencies up;
- a task (not deleted, not hidden): ``tc:<key>:<value>`` per value of its groupable custom
  fields at its creation, for its assignee, in ``roll_time``;
- a journey (the stage entries of one opportunity, from its facts, kept in its document):
  ``en:<pipeline>:...`` per entry in ``roll_time``;
- facts, once when inserted: ``new``/``upd``/``mrg``/``mv:...`` and the time spent in the
  stage left (``ds:``/``dn:``) in ``roll_time``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from crm_platform.customfields import FieldSet
from crm_reporting.adapters.readmodels import ReadModels
from crm_reporting.adapters.rollups import DAY_MS, QUARTER_MS, Batch, Contribution, enc, scaled
from crm_reporting.domain.money import dec

Document = dict[str, Any]
#: Custom field types a distribution groups by (each value its own row).
CUSTOM_DISTRIBUTION_TYPES = frozenset({"choice", "multi_choice", "boolean"})
#: Custom field types of opportunities, interactions and tasks a report groups by (a user field's
#: value is the user's id; a multi-choice field counts a record once under each of its options).
CUSTOM_GROUP_TYPES = frozenset({"choice", "multi_choice", "user", "boolean"})
#: The modules whose custom fields reports group by, besides customers (``Contributions.groupable``).
GROUP_MODULES = ("opportunities", "interactions", "tasks")
NONE = "(none)"
DISTRIBUTION_FIELDS = ("industry", "region", "city", "size", "tier", "source", "lifecycle_stage", "tag", "kind")
QUALITY_CANDIDATES = ("name", "industry", "region", "source", "tier", "size", "lifecycle_stage", "tags", "owner")
CUSTOMER_UPDATE_TYPES = [
    "crm.customer.updated",
    "crm.customer.contact_added",
    "crm.customer.contact_changed",
    "crm.customer.contact_removed",
]
CONTACT_FACT_TYPES = ["crm.customer.created", "crm.customer.contact_added", "crm.customer.contact_changed"]
MOVE_TYPES = [
    "crm.opportunity.stage_changed",
    "crm.opportunity.won",
    "crm.opportunity.lost",
    "crm.opportunity.reopened",
]
ENTRY_TYPES = ["crm.opportunity.created", *MOVE_TYPES]
# The three rollup collections (fewer collections: fewer writes per event).
CUSTOMERS = "roll_customers"  # (field, value, owner, department); field "*": count, QUALITY: missing fields
QUALITY = "*quality"
OPPORTUNITY_QUALITY = "*opportunity-quality"  # per opportunity (not hidden): the required custom fields it misses
CONTACT_QUALITY = "*contact-quality"  # per current contact of an active customer: the required custom fields it misses
PLACEHOLDER = "placeholder"  # the status of a customer only referred to so far (projection.note_reference)
REUSE = "_reuse"  # on a customer copy being written: its reach and last touch, known unchanged
DEALS = "roll_deals"  # (pipeline, owner, department, calendar day ordinal; 0 = the open stages now)
TIME = "roll_time"  # (owner, department, UTC day), counters per quarter hour


async def _all(cursor: Any) -> list[Document]:
    return [doc async for doc in cursor]


async def find_in(collection: Any, field: str, values: list[str], projection: Document | None = None) -> list[Document]:
    """Documents whose scalar ``field`` equals one of ``values``, by one indexed equality per value.

    ``{field: {"$in": values}}`` means the same on MongoDB, but the embedded store reads every row
    for it (it allows for the field being an array); the lists here hold one id, rarely a few.
    """
    docs: list[Document] = []
    for value in dict.fromkeys(values):
        docs += await _all(collection.find({field: value}, projection))
    return docs


async def merged_group(models: ReadModels, customer_id: str) -> list[str]:
    """The customer and every customer merged into it, directly or through a chain."""
    found = [customer_id]
    frontier = [customer_id]
    while frontier:
        docs = await find_in(models.customers, "merged_into", frontier, {"_id": 1})
        frontier = [d["_id"] for d in docs if d["_id"] not in found]
        found += frontier
    return found


async def survivor(models: ReadModels, customer_id: str) -> str | None:
    """The customer that ``customer_id`` ends up merged into (itself if not merged); None if unknown."""
    current, seen = customer_id, set()
    while current not in seen:
        seen.add(current)
        doc = await models.customers.find_one({"_id": current}, {"merged_into": 1})
        if doc is None:
            return None if current == customer_id else current
        if not doc.get("merged_into"):
            return current
        current = doc["merged_into"]
    return current


def _has_field(customer: Document, field: str, has_reach: bool) -> bool:
    if field == "contact":
        return has_reach
    if field == "owner":
        return bool(customer.get("owner_id"))
    if field.startswith("custom."):
        custom = customer.get("custom") or {}
        value = custom.get(field.removeprefix("custom."))
        return value not in (None, "", [])
    value = customer.get(field)
    return bool(value) if not isinstance(value, str) else bool(value.strip())


async def _contacts(models: ReadModels, customer: Document, group: list[str]) -> tuple[bool, list[Document]]:
    """Whether at least one current contact's latest known data has a phone or an email, and the
    latest known custom values of each current contact."""
    # By customer only: the embedded store may pick the far less selective type index otherwise.
    facts = await find_in(models.facts, "customer_id", group, {"type": 1, "contacts": 1, "t": 1})
    latest: dict[str, tuple[int, bool, Document]] = {}
    for f in facts:
        if f["type"] not in CONTACT_FACT_TYPES:
            continue
        for c in f.get("contacts") or []:
            seen = latest.get(c["contact_id"])
            if seen is None or seen[0] <= f["t"]:
                latest[c["contact_id"]] = (f["t"], bool(c["reach"]), c.get("custom") or {})
    current = customer.get("contact_ids")
    mine = [(ok, custom) for cid, (_, ok, custom) in latest.items() if current is None or cid in current]
    return any(ok for ok, _ in mine), [custom for _, custom in mine]


async def last_touch(models: ReadModels, group: list[str]) -> int:
    docs = await find_in(models.interactions, "customer_id", group, {"occurred_ms": 1, "status": 1})
    times = [d["occurred_ms"] for d in docs if d.get("status") == "active" and d.get("occurred_ms") is not None]
    return max(times, default=-1)


def group_values(value: Any) -> list[str]:
    """The rows a record's custom value counts under: each option of a multi-choice value,
    ``true``/``false`` for a boolean, ``(none)`` for no value."""
    values = value if isinstance(value, list) else [value]
    out = [NONE if v in (None, "") else (("true" if v else "false") if isinstance(v, bool) else str(v)) for v in values]
    return list(dict.fromkeys(out)) or [NONE]


def group_counter(metric: str, key: str, value: str) -> str:
    """A custom-field group counter's name: ``<metric>:<key>:<value>`` (each part encoded)."""
    return f"{metric}:{enc(key)}:{enc(value)}"


def missing_key(missing: list[str]) -> str:
    return ",".join(enc(m) for m in missing)


class Contributions:
    def __init__(
        self,
        models: ReadModels,
        required_fields: list[str],
        batch: Batch,
        custom: FieldSet | None = None,
        groupable: dict[str, FieldSet] | None = None,
    ) -> None:
        self.models = models
        self.batch = batch  # the rollup changes of the event being applied
        custom = custom or FieldSet({})
        # Required custom fields count towards completeness; choice, multi-choice and boolean ones
        # are distributions (each value a rollup, as a profile field's).
        required = [f"custom.{k}" for k, d in custom.active.items() if d.get("required")]
        self.quality_fields = list(dict.fromkeys([*QUALITY_CANDIDATES, "contact", *required_fields, *required]))
        self.custom_distributions = [k for k, d in custom.active.items() if d["type"] in CUSTOM_DISTRIBUTION_TYPES]
        # Opportunities', interactions' and tasks' fields reports group by: each record counts
        # under its value(s) in the rollups it already moves (see group_counter).
        self.groups = {
            module: sorted(k for k, d in fields.active.items() if d["type"] in CUSTOM_GROUP_TYPES)
            for module, fields in (groupable or {}).items()
            if module in GROUP_MODULES
        }
        contact_fields = (groupable or {}).get("contacts") or FieldSet({})
        self.contact_required = sorted(f"custom.{k}" for k, d in contact_fields.active.items() if d.get("required"))
        opportunity_fields = (groupable or {}).get("opportunities") or FieldSet({})
        self.opportunity_required = sorted(
            f"custom.{k}" for k, d in opportunity_fields.active.items() if d.get("required")
        )

    def _grouped(self, module: str, doc: Document) -> list[tuple[str, str]]:
        """(key, value) of every row ``doc`` counts under, per groupable field of ``module``."""
        custom = doc.get("custom") or {}
        return [(k, v) for k in self.groups.get(module, []) for v in group_values(custom.get(k))]

    async def customer(self, doc: Document) -> tuple[Contribution, Document]:
        c = Contribution()
        if doc.get("status") != "active":
            return c, {}
        owner, path = doc.get("owner_id") or "", doc.get("department_path") or ""
        for name in DISTRIBUTION_FIELDS:
            value = doc.get("tags" if name == "tag" else name)
            values = (value or ["(none)"]) if name == "tag" else [value if value not in (None, "") else "(none)"]
            for v in values:
                c.add(CUSTOMERS, {"field": name, "value": str(v), "owner_id": owner, "department_path": path}, "n")
        custom = doc.get("custom") or {}
        for cf in self.custom_distributions:
            value = custom.get(cf)
            values = value if isinstance(value, list) else [value]
            for v in values or [None]:
                text = "(none)" if v is None else (("true" if v else "false") if isinstance(v, bool) else str(v))
                c.add(
                    CUSTOMERS,
                    {"field": f"custom.{cf}", "value": text, "owner_id": owner, "department_path": path},
                    "n",
                )
        c.add(CUSTOMERS, {"field": "*", "value": "", "owner_id": owner, "department_path": path}, "n")
        reuse = doc.pop(REUSE, None)  # what the projection knows is unchanged (saves three queries)
        if reuse is not None:
            reach, touch = bool(reuse["reach"]), int(reuse["touch_ms"])
            if "contact_missing" in reuse:
                contact_missing = [list(pair) for pair in reuse["contact_missing"]]
            else:
                contact_missing = self._contact_missing(reuse.get("contacts") or [])
        else:
            group = await merged_group(self.models, doc["_id"])
            reach, contacts = await _contacts(self.models, doc, group)
            touch = await last_touch(self.models, group)
            contact_missing = self._contact_missing(contacts)
        missing = [f for f in self.quality_fields if not _has_field(doc, f, reach)]
        key = {"field": QUALITY, "value": missing_key(missing), "owner_id": owner, "department_path": path}
        c.add(CUSTOMERS, key, "n")
        # Its current contacts, each under the required custom fields of contacts it misses.
        for value, n in contact_missing:
            contact = {"field": CONTACT_QUALITY, "value": value, "owner_id": owner, "department_path": path}
            c.add(CUSTOMERS, contact, "n", n)
        return c, {"touch_ms": touch, "reach": reach, "contact_missing": contact_missing}

    def _contact_missing(self, contacts: list[Document]) -> list[list[Any]]:
        """[missing_key, how many contacts] of contacts' custom values (a list: a key may be empty)."""
        counts: dict[str, int] = {}
        for custom in contacts:
            value = missing_key([f for f in self.contact_required if not _has_field({"custom": custom}, f, False)])
            counts[value] = counts.get(value, 0) + 1
        return [[value, n] for value, n in sorted(counts.items())]

    async def interaction(self, doc: Document) -> tuple[Contribution, Document]:
        c = Contribution()
        occurred = doc.get("occurred_ms")
        if doc.get("status") != "active" or occurred is None:
            return c, {}
        owner, path = doc.get("author_id") or "", doc.get("author_department_path") or ""
        c.timed(TIME, owner, path, occurred, "ia")
        if not doc.get("hidden"):
            c.timed(TIME, owner, path, occurred, f"ch:{enc(doc.get('channel') or '')}")
            for key, value in self._grouped("interactions", doc):
                c.timed(TIME, owner, path, occurred, group_counter("ic", key, value))
        # Customer id and time window only: the customer index is the one the embedded store can
        # use (the type index would scan every update of every customer).
        window = {"customer_id": doc.get("customer_id") or "", "t": {"$gte": occurred, "$lte": occurred + DAY_MS}}
        updates = await _all(self.models.facts.find(window, {"type": 1, "t": 1}))
        if any(u["type"] in CUSTOMER_UPDATE_TYPES and occurred <= u["t"] <= occurred + DAY_MS for u in updates):
            c.timed(TIME, owner, path, occurred, "if")
        return c, {}

    async def opportunity(self, doc: Document) -> tuple[Contribution, Document]:
        c, _ = await self.journey(doc)
        if doc.get("hidden") or "status" not in doc:
            return c, {}
        owner, path, pid = doc.get("owner_id") or "", doc.get("department_path") or "", doc.get("pipeline_id") or ""
        amount = scaled(dec(doc.get("amount")))
        currency = enc(str(doc.get("currency") or ""))
        now = {"pipeline_id": pid, "owner_id": owner, "department_path": path, "day": 0}  # day 0: open now
        stage = enc(doc.get("stage_id") or "")
        c.add(DEALS, now, f"n:{stage}")
        c.add(DEALS, now, f"amt:{stage}:{currency}", amount)
        status = doc.get("status")
        # Completeness: the required custom fields it misses (data quality), like a customer's.
        missing = [f for f in self.opportunity_required if not _has_field(doc, f, False)]
        quality = {
            "field": OPPORTUNITY_QUALITY,
            "value": missing_key(missing),
            "owner_id": owner,
            "department_path": path,
        }
        c.add(CUSTOMERS, quality, "n")
        groups = self._grouped("opportunities", doc)
        if status == "open":
            # Open now, per custom value: ``on:<key>:<value>`` and ``oa:`` (amount) on day 0.
            for gkey, value in groups:
                c.add(DEALS, now, group_counter("on", gkey, value))
                c.add(DEALS, now, f"{group_counter('oa', gkey, value)}:{currency}", amount)

        def deals(day: str) -> dict[str, Any]:
            return {"pipeline_id": pid, "owner_id": owner, "department_path": path, "day": _ordinal(day)}

        if status == "won" and doc.get("won_on"):
            key = deals(doc["won_on"])
            c.add(DEALS, key, "won_n")
            c.add(DEALS, key, f"won_amt:{currency}", amount)
            for gkey, value in groups:  # won on that day, per custom value: ``wn:``, ``wa:``
                c.add(DEALS, key, group_counter("wn", gkey, value))
                c.add(DEALS, key, f"{group_counter('wa', gkey, value)}:{currency}", amount)
            if doc.get("created_ms") is not None:
                c.add(DEALS, key, f"wc:{doc['created_ms'] // QUARTER_MS}")
        elif status == "lost" and doc.get("lost_on"):
            c.add(DEALS, deals(doc["lost_on"]), "lost_n")
            for gkey, value in groups:
                c.add(DEALS, deals(doc["lost_on"]), group_counter("ln", gkey, value))
        elif status == "open" and doc.get("expected_close_date"):
            key = deals(doc["expected_close_date"])
            c.add(DEALS, key, "open_n")
            c.add(DEALS, key, f"wtd:{currency}", amount * int(doc.get("probability") or 0))
        return c, {}

    async def task(self, doc: Document) -> tuple[Contribution, Document]:
        """A task (not deleted, not hidden) counts under its custom values at its creation, for
        its assignee: ``tc:<key>:<value>`` in ``roll_time``."""
        c = Contribution()
        created = doc.get("created_ms")
        if doc.get("status") == "deleted" or doc.get("hidden") or created is None:
            return c, {}
        owner, path = doc.get("assignee_id") or "", doc.get("assignee_department_path") or ""
        for key, value in self._grouped("tasks", doc):
            c.timed(TIME, owner, path, created, group_counter("tc", key, value))
        return c, {}

    async def journey(self, doc: Document) -> tuple[Contribution, Document]:
        """Per stage entry: whether the opportunity had entered that stage before (and in which
        quarter hour) and which stages it reached from its first entry on; the funnel counts an
        opportunity once per period from this and decides conversion with the pipeline's order."""
        c = Contribution()
        entries = [e for e in doc.get("entries") or [] if e[1] is not None]
        for fact_id, at, to, owner, path, pid in entries:
            same = sorted((a, f) for f, a, t, *_ in entries if t == to)
            earlier = [a for a, f in same if (a, f) < (at, fact_id)]
            previous = str(max(earlier) // QUARTER_MS) if earlier else "-"
            first = same[0][0]
            later = ",".join(enc(s) for s in sorted({t for _, a, t, *_ in entries if a >= first}))
            c.timed(TIME, owner, path, at, f"en:{enc(pid)}:{enc(to)}:{previous}:{later}")
        return c, {}


def fact_counters(fact: Document) -> Contribution:
    """The counters one fact moves, once, when it is inserted."""
    c = Contribution()
    t, kind = fact.get("t"), fact["type"]
    owner, path = fact.get("owner_id") or "", fact.get("department_path") or ""
    if t is not None:
        if kind == "crm.customer.created":
            c.timed(TIME, owner, path, t, "new")
        elif kind in CUSTOMER_UPDATE_TYPES:
            c.timed(TIME, owner, path, t, "upd")
        elif kind == "crm.customer.merged":
            c.timed(TIME, owner, path, t, "mrg")
        if kind in MOVE_TYPES and fact.get("from_stage_id") and fact.get("seconds_in_previous") is not None:
            seconds = enc(repr(float(fact["seconds_in_previous"])))
            c.timed(TIME, owner, path, t, f"mv:{enc(fact['from_stage_id'])}:{seconds}")
    at = fact.get("at")
    if (
        kind in ENTRY_TYPES
        and at is not None
        and fact.get("from_stage_id")
        and fact.get("seconds_in_previous") is not None
    ):
        stage = f"{enc(fact.get('pipeline_id') or '')}:{enc(fact['from_stage_id'])}"
        c.timed(TIME, owner, path, at, f"ds:{stage}", float(fact["seconds_in_previous"]))
        c.timed(TIME, owner, path, at, f"dn:{stage}")
    return c


def _ordinal(iso_day: str) -> int:
    return date.fromisoformat(iso_day[:10]).toordinal()
