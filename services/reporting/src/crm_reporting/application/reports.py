"""The reports, computed at request time from the states and facts of the active generation.

Grouping happens in Python over indexed, projected queries rather than in aggregation
pipelines: the embedded store's ``$group`` gives null for ``$sum`` of a missing field and
its date operators return strings, while a projected query behaves the same on both
stores. Figures never depend on the order events arrived in: joins (interaction →
customer, merge → survivor) are made here, when the report is asked for.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from statistics import fmean
from typing import Any
from zoneinfo import ZoneInfo

from crm_platform.errors import NotFound, ValidationFailed
from crm_reporting.adapters.readmodels import ReadModels
from crm_reporting.application.scope import Scope
from crm_reporting.domain.money import dec, money, ratio
from crm_reporting.domain.periods import Bucket, Period, bucket_of, local_day
from crm_reporting.settings import ReportingSettings

Document = dict[str, Any]
DAY_MS = 86_400_000
ENTRY_TYPES = [
    "crm.opportunity.created",
    "crm.opportunity.stage_changed",
    "crm.opportunity.won",
    "crm.opportunity.lost",
    "crm.opportunity.reopened",
]
MOVE_TYPES = ENTRY_TYPES[1:]
CUSTOMER_UPDATE_TYPES = [
    "crm.customer.updated",
    "crm.customer.contact_added",
    "crm.customer.contact_changed",
    "crm.customer.contact_removed",
]
CONTACT_FACT_TYPES = ["crm.customer.created", "crm.customer.contact_added", "crm.customer.contact_changed"]
DISTRIBUTION_FIELDS = ("industry", "region", "city", "size", "tier", "source", "lifecycle_stage", "tag", "kind")


async def _all(cursor: Any) -> list[Document]:
    return [doc async for doc in cursor]


def _days(ms: float) -> float:
    return round(ms / DAY_MS, 2)


async def user_names(models: ReadModels, ids: set[str]) -> dict[str, str]:
    ids.discard("")
    if not ids:
        return {}
    users = await _all(models.directory.users.find({"_id": {"$in": sorted(ids)}}, {"name": 1}))
    return {u["_id"]: u.get("name") or u["_id"] for u in users}


async def merged_into(models: ReadModels, customer_ids: list[str]) -> dict[str, str]:
    """Every customer merged (directly or through a chain) into one of ``customer_ids``: id → survivor."""
    found: dict[str, str] = {}
    frontier = {c: c for c in customer_ids}
    while frontier:
        docs = await _all(models.customers.find({"merged_into": {"$in": sorted(frontier)}}, {"merged_into": 1}))
        nxt = {d["_id"]: frontier[d["merged_into"]] for d in docs if d["_id"] not in found}
        found.update(nxt)
        frontier = nxt
    return found


class Reports:
    def __init__(self, settings: ReportingSettings) -> None:
        self.settings = settings

    # --- 1. funnel ------------------------------------------------------------------------

    async def funnel(self, models: ReadModels, scope: Scope, period: Period, pipeline_id: str | None) -> Document:
        if pipeline_id:
            pipeline = await models.pipelines.find_one({"_id": pipeline_id})
        else:
            pipeline = await models.pipelines.find_one({"is_default": True})
        if pipeline is None:
            raise NotFound(f"No configured pipeline {pipeline_id or '(default)'} is known to reporting yet.")
        pid = pipeline["_id"]
        stages = sorted(pipeline["stages"], key=lambda s: s["position"])
        opps = await _all(
            models.opportunities.find(
                {**scope.query(), "pipeline_id": pid},
                {"stage_id": 1, "status": 1, "amount": 1, "won_on": 1, "lost_on": 1, "created_ms": 1, "hidden": 1},
            )
        )
        opps = [o for o in opps if not o.get("hidden")]
        facts = await _all(
            models.facts.find(
                {**scope.query(), "type": {"$in": ENTRY_TYPES}, "pipeline_id": pid},
                {"opportunity_id": 1, "to_stage_id": 1, "from_stage_id": 1, "at": 1, "seconds_in_previous": 1},
            )
        )
        position = {s["stage_id"]: s["position"] for s in stages}
        chain = [s for s in stages if s["kind"] != "lost"]  # the path an opportunity advances along
        entries: dict[str, list[tuple[int, int]]] = defaultdict(list)  # opportunity → (at, position)
        for f in facts:
            if f.get("to_stage_id") in position and f.get("at") is not None:
                entries[f["opportunity_id"]].append((f["at"], position[f["to_stage_id"]]))
        rows = []
        for index, stage in enumerate(stages):
            sid, pos = stage["stage_id"], stage["position"]
            here = [o for o in opps if o["stage_id"] == sid]
            entered = {
                f["opportunity_id"]
                for f in facts
                if f.get("to_stage_id") == sid and period.start_ms <= (f.get("at") or 0) < period.end_ms
            }
            durations = [
                f["seconds_in_previous"]
                for f in facts
                if f.get("from_stage_id") == sid
                and f.get("seconds_in_previous") is not None
                and period.start_ms <= (f.get("at") or 0) < period.end_ms
            ]
            conversion = None
            next_stage = None
            if stage["kind"] == "open" and stage in chain and chain.index(stage) + 1 < len(chain):
                next_stage = chain[chain.index(stage) + 1]
                converted = 0
                for opp_id in entered:
                    first_in = min(at for at, p in entries[opp_id] if p == pos)
                    nxt = next_stage["position"]
                    lost_positions = {s["position"] for s in stages if s["kind"] == "lost"}
                    if any(at >= first_in and p >= nxt and p not in lost_positions for at, p in entries[opp_id]):
                        converted += 1
                conversion = ratio(converted, len(entered))
            rows.append(
                {
                    "position": index + 1,
                    "stage_id": sid,
                    "stage_name": stage["name"],
                    "kind": stage["kind"],
                    "current_count": len(here),
                    "current_amount": money(sum((dec(o.get("amount")) for o in here), Decimal(0))),
                    "entered_in_period": len(entered),
                    "next_stage_id": next_stage["stage_id"] if next_stage else None,
                    "conversion_to_next": conversion,
                    "avg_days_in_stage": round(fmean(durations) / 86400, 2) if durations else None,
                }
            )
        won = [o for o in opps if o["status"] == "won" and period.contains_day(o.get("won_on"))]
        lost = [o for o in opps if o["status"] == "lost" and period.contains_day(o.get("lost_on"))]
        cycles = [
            (datetime.fromisoformat(o["won_on"]).date() - local_day(o["created_ms"], period.tz)).days
            for o in won
            if o.get("created_ms") is not None
        ]
        return {
            "pipeline_id": pid,
            "pipeline_name": pipeline.get("name"),
            "period": _period_out(period),
            "summary": {
                "won": len(won),
                "lost": len(lost),
                "won_amount": money(sum((dec(o.get("amount")) for o in won), Decimal(0))),
                "win_rate": ratio(len(won), len(won) + len(lost)),
                "avg_sales_cycle_days": round(fmean(cycles), 2) if cycles else None,
            },
            "rows": rows,
        }

    # --- 2. forecast ----------------------------------------------------------------------

    async def forecast(self, models: ReadModels, scope: Scope, period: Period) -> Document:
        opps = await _all(
            models.opportunities.find(
                scope.query(),
                {
                    "owner_id": 1,
                    "department_path": 1,
                    "status": 1,
                    "amount": 1,
                    "probability": 1,
                    "won_on": 1,
                    "expected_close_date": 1,
                    "hidden": 1,
                },
            )
        )
        won: dict[str, Decimal] = defaultdict(Decimal)
        weighted: dict[str, Decimal] = defaultdict(Decimal)
        opp_paths: dict[str, Decimal] = defaultdict(Decimal)  # department path → won
        weighted_paths: dict[str, Decimal] = defaultdict(Decimal)
        for o in opps:
            if o.get("hidden"):
                continue
            amount = dec(o.get("amount"))
            path = o.get("department_path") or ""
            if o["status"] == "won" and period.contains_day(o.get("won_on")):
                won[o["owner_id"]] += amount
                opp_paths[path] += amount
            elif o["status"] == "open" and period.contains_day(o.get("expected_close_date")):
                value = amount * Decimal(int(o.get("probability") or 0)) / Decimal(100)
                weighted[o["owner_id"]] += value
                weighted_paths[path] += value
        targets = await _all(models.targets.find({"period": period.label}))
        rep_targets = {
            t["scope_id"]: dec(t["amount"])
            for t in targets
            if t["scope"] == "rep" and scope.allows(t["scope_id"], t.get("department_path"))
        }
        dept_targets = {
            (t.get("department_path") or t["scope_id"]): (t["scope_id"], dec(t["amount"]))
            for t in targets
            if t["scope"] == "department" and _dept_visible(scope, t.get("department_path"))
        }
        names = await user_names(models, set(won) | set(weighted) | set(rep_targets))
        reps = []
        for rep in sorted(set(won) | set(weighted) | set(rep_targets)):
            reps.append(_forecast_row("rep", rep, names.get(rep, rep), rep_targets.get(rep), won[rep], weighted[rep]))
        departments = []
        paths = set(dept_targets) | {p for p in (*opp_paths, *weighted_paths) if p}
        for path in sorted(paths):
            below = [p for p in set(opp_paths) | set(weighted_paths) if p == path or p.startswith(path + "/")]
            w = sum((opp_paths[p] for p in below), Decimal(0))
            pipe = sum((weighted_paths[p] for p in below), Decimal(0))
            dept_id, target = dept_targets.get(path, (path.rsplit("/", 1)[-1], None))
            departments.append(_forecast_row("department", dept_id, path, target, w, pipe))
        return {"period": _period_out(period), "reps": reps, "departments": departments, "rows": reps + departments}

    # --- 3. activity ----------------------------------------------------------------------

    async def activity(
        self, models: ReadModels, scope: Scope, period: Period, bucket: Bucket, stale_days: int, now: datetime
    ) -> Document:
        tz = period.tz
        interactions = await _all(
            models.interactions.find(
                {
                    **scope.query("author_id", "author_department_path"),
                    "occurred_ms": {"$gte": period.start_ms, "$lt": period.end_ms},
                },
                {"author_id": 1, "channel": 1, "occurred_ms": 1, "status": 1, "hidden": 1},
            )
        )
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for i in interactions:
            if i.get("status") == "active" and not i.get("hidden"):
                counts[(i["author_id"], i["channel"], bucket_of(i["occurred_ms"], bucket, tz))] += 1
        created = await _all(
            models.facts.find(
                {**scope.query(), "type": "crm.customer.created", "t": {"$gte": period.start_ms, "$lt": period.end_ms}},
                {"owner_id": 1},
            )
        )
        new_customers: dict[str, int] = defaultdict(int)
        for f in created:
            new_customers[f.get("owner_id") or ""] += 1
        stale = await self._not_followed_up(models, scope, stale_days, now)
        now_ms = int(now.timestamp() * 1000)
        tasks = await _all(
            models.tasks.find(
                {**scope.query("assignee_id", "assignee_department_path"), "status": "open"},
                {"assignee_id": 1, "due_ms": 1, "hidden": 1},
            )
        )
        overdue: dict[str, int] = defaultdict(int)
        for task in tasks:
            if not task.get("hidden") and task["due_ms"] < now_ms:
                overdue[task["assignee_id"]] += 1
        people = {k[0] for k in counts} | set(new_customers) | set(overdue) | {s["owner_id"] for s in stale}
        names = await user_names(models, people)
        stale_per_owner: dict[str, int] = defaultdict(int)
        for s in stale:
            stale_per_owner[s["owner_id"]] += 1
            s["owner_name"] = names.get(s["owner_id"], s["owner_id"])
        return {
            "period": _period_out(period),
            "bucket": bucket,
            "time_zone": str(tz),
            "stale_days": stale_days,
            "interactions": [
                {"rep_id": r, "rep_name": names.get(r, r), "channel": c, "bucket": b, "count": n}
                for (r, c, b), n in sorted(counts.items())
            ],
            "new_customers": [
                {"rep_id": r, "rep_name": names.get(r, r), "count": n} for r, n in sorted(new_customers.items())
            ],
            "not_followed_up": stale,
            "not_followed_up_per_rep": [
                {"rep_id": r, "rep_name": names.get(r, r), "count": n} for r, n in sorted(stale_per_owner.items())
            ],
            "overdue_tasks": [
                {"rep_id": r, "rep_name": names.get(r, r), "count": n} for r, n in sorted(overdue.items())
            ],
        }

    async def _not_followed_up(self, models: ReadModels, scope: Scope, days: int, now: datetime) -> list[Document]:
        customers = await _all(
            models.customers.find(
                {**scope.query(), "status": "active"}, {"owner_id": 1, "name": 1, "in_pool": 1, "created_ms": 1}
            )
        )
        customers = [c for c in customers if c.get("owner_id") and not c.get("in_pool")]
        if not customers:
            return []
        ids = [c["_id"] for c in customers]
        survivors = {i: i for i in ids} | await merged_into(models, ids)
        last: dict[str, int] = {}
        interactions = await _all(
            models.interactions.find(
                {"customer_id": {"$in": sorted(survivors)}}, {"customer_id": 1, "occurred_ms": 1, "status": 1}
            )
        )
        for i in interactions:
            if i.get("status") != "active":
                continue
            owner = survivors[i["customer_id"]]
            last[owner] = max(last.get(owner, 0), i["occurred_ms"])
        cutoff = int((now - timedelta(days=days)).timestamp() * 1000)
        now_ms = int(now.timestamp() * 1000)
        out = []
        for c in sorted(customers, key=lambda c: (c["owner_id"], c["_id"])):
            seen = last.get(c["_id"])
            if seen is None or seen < cutoff:
                out.append(
                    {
                        "owner_id": c["owner_id"],
                        "customer_id": c["_id"],
                        "customer_name": c.get("name"),
                        "last_interaction_at": _iso_ms(seen),
                        "days_since": _days(now_ms - seen) if seen is not None else None,
                    }
                )
        return out

    # --- 4. distribution ------------------------------------------------------------------

    async def distribution(self, models: ReadModels, scope: Scope, field: str) -> Document:
        if field not in DISTRIBUTION_FIELDS:
            raise ValidationFailed.for_field("field", f"one of {', '.join(DISTRIBUTION_FIELDS)}", "query")
        source = "tags" if field == "tag" else field
        customers = await _all(models.customers.find({**scope.query(), "status": "active"}, {source: 1}))
        counts: dict[str, int] = defaultdict(int)
        for c in customers:
            value = c.get(source)
            values = (value or ["(none)"]) if field == "tag" else [value if value not in (None, "") else "(none)"]
            for v in values:
                counts[str(v)] += 1
        rows = [
            {"value": v, "count": n, "share": ratio(n, len(customers))}
            for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return {
            "field": field,
            "customers": len(customers),
            "rows": rows,
            "chart": {
                "labels": [r["value"] for r in rows],
                "series": [{"name": field, "data": [r["count"] for r in rows]}],
            },
        }

    # --- 6. data quality and adoption -------------------------------------------------------

    async def quality(self, models: ReadModels, scope: Scope, period: Period) -> Document:
        required = self.settings.required_customer_fields
        customers = await _all(models.customers.find({**scope.query(), "status": "active"}))
        ids = [c["_id"] for c in customers]
        survivors = {i: i for i in ids} | await merged_into(models, ids)
        contact_facts = (
            await _all(
                models.facts.find(
                    {"customer_id": {"$in": sorted(survivors)}, "type": {"$in": CONTACT_FACT_TYPES}},
                    {"customer_id": 1, "contacts": 1, "t": 1},
                )
            )
            if survivors
            else []
        )
        reach: dict[str, dict[str, tuple[int, bool]]] = defaultdict(dict)  # customer → contact → (t, reach)
        for f in contact_facts:
            owner = survivors[f["customer_id"]]
            for c in f.get("contacts") or []:
                seen = reach[owner].get(c["contact_id"])
                if seen is None or seen[0] <= f["t"]:
                    reach[owner][c["contact_id"]] = (f["t"], bool(c["reach"]))
        per_rep: dict[str, Document] = defaultdict(lambda: defaultdict(int))
        missing_overall: dict[str, int] = defaultdict(int)
        for c in customers:
            current = c.get("contact_ids")
            contacts = reach.get(c["_id"], {})
            has_reach = any(ok for cid, (_, ok) in contacts.items() if current is None or cid in current)
            missing = [name for name in required if not _has_field(c, name, has_reach)]
            row = per_rep[c.get("owner_id") or ""]
            row["customers"] += 1
            row["complete"] += 0 if missing else 1
            for name in missing:
                row[f"missing_{name}"] += 1
                missing_overall[name] += 1
        # Records updated within 24 h of an interaction.
        interactions = await _all(
            models.interactions.find(
                {
                    **scope.query("author_id", "author_department_path"),
                    "occurred_ms": {"$gte": period.start_ms, "$lt": period.end_ms},
                },
                {"author_id": 1, "customer_id": 1, "occurred_ms": 1, "status": 1},
            )
        )
        interactions = [i for i in interactions if i.get("status") == "active"]
        touched = sorted({i["customer_id"] for i in interactions})
        updates = (
            await _all(
                models.facts.find(
                    {"customer_id": {"$in": touched}, "type": {"$in": CUSTOMER_UPDATE_TYPES}},
                    {"customer_id": 1, "t": 1},
                )
            )
            if touched
            else []
        )
        update_times: dict[str, list[int]] = defaultdict(list)
        for u in updates:
            update_times[u["customer_id"]].append(u["t"])
        for i in interactions:
            row = per_rep[i["author_id"]]
            row["interactions"] += 1
            start = i["occurred_ms"]
            if any(start <= t <= start + DAY_MS for t in update_times.get(i["customer_id"], [])):
                row["followed_by_update"] += 1
        # Stage advances on time.
        moves = await _all(
            models.facts.find(
                {**scope.query(), "type": {"$in": MOVE_TYPES}, "t": {"$gte": period.start_ms, "$lt": period.end_ms}},
                {"owner_id": 1, "from_stage_id": 1, "seconds_in_previous": 1},
            )
        )
        limits = self.settings.stage_time_limit_days
        for m in moves:
            if not m.get("from_stage_id") or m.get("seconds_in_previous") is None:
                continue
            limit = limits.get(m["from_stage_id"], self.settings.default_stage_time_limit_days)
            row = per_rep[m["owner_id"]]
            row["stage_moves"] += 1
            row["stage_moves_on_time"] += 1 if m["seconds_in_previous"] <= limit * 86400 else 0
        # Update frequency and merges.
        changes = await _all(
            models.facts.find(
                {
                    **scope.query(),
                    "type": {"$in": [*CUSTOMER_UPDATE_TYPES, "crm.customer.merged"]},
                    "t": {"$gte": period.start_ms, "$lt": period.end_ms},
                },
                {"owner_id": 1, "type": 1},
            )
        )
        for f in changes:
            key = "merges" if f["type"] == "crm.customer.merged" else "customer_updates"
            per_rep[f.get("owner_id") or ""][key] += 1
        names = await user_names(models, set(per_rep))
        rows = [_quality_row(rep, names.get(rep, rep), dict(r), period) for rep, r in sorted(per_rep.items())]
        total: dict[str, int] = defaultdict(int)
        for r in per_rep.values():
            for k, v in r.items():
                total[k] += v
        overall = _quality_row("", "(all)", dict(total), period)
        overall["missing_per_field"] = {name: missing_overall.get(name, 0) for name in required}
        return {"period": _period_out(period), "required_fields": required, "overall": overall, "rows": rows}


def _has_field(customer: Document, field: str, has_reach: bool) -> bool:
    if field == "contact":
        return has_reach
    if field == "owner":
        return bool(customer.get("owner_id"))
    value = customer.get(field)
    return bool(value) if not isinstance(value, str) else bool(value.strip())


def _quality_row(rep: str, name: str, r: Document, period: Period) -> Document:
    def get(key: str) -> int:
        return int(r.get(key, 0))

    return {
        "rep_id": rep,
        "rep_name": name,
        "customers": get("customers"),
        "complete": get("complete"),
        "completeness": ratio(get("complete"), get("customers")),
        "interactions": get("interactions"),
        "followed_by_update_24h": get("followed_by_update"),
        "update_within_24h_rate": ratio(get("followed_by_update"), get("interactions")),
        "stage_moves": get("stage_moves"),
        "stage_moves_on_time": get("stage_moves_on_time"),
        "on_time_rate": ratio(get("stage_moves_on_time"), get("stage_moves")),
        "customer_updates": get("customer_updates"),
        "updates_per_customer_per_month": ratio(get("customer_updates"), get("customers") * period.months(), 3)
        if get("customers")
        else None,
        "merges": get("merges"),
    }


def _dept_visible(scope: Scope, path: str | None) -> bool:
    p = scope.principal
    if not (p.is_admin or p.manages_path(path)):
        return False
    return scope.allows(None, path) if scope.department_path else scope.owner_id is None


def _forecast_row(kind: str, key: str, name: str, target: Decimal | None, won: Decimal, weighted: Decimal) -> Document:
    return {
        "scope": kind,
        "scope_id": key,
        "name": name,
        "target": money(target) if target is not None else None,
        "won_amount": money(won),
        "weighted_pipeline": money(weighted),
        "attainment_pct": round(float(won / target * 100), 1) if target else None,
    }


def _period_out(period: Period) -> Document:
    return {"label": period.label, "from": period.start.isoformat(), "to_exclusive": period.end.isoformat()}


def _iso_ms(value: int | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC).isoformat()


# --- 5. the customer 360 timeline ---------------------------------------------------------


def encode_cursor(t: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([t, event_id]).encode()).decode()


def decode_cursor(token: str) -> tuple[int, str]:
    try:
        t, event_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(t), str(event_id)
    except Exception as exc:
        raise ValidationFailed.for_field("cursor", "not a cursor this endpoint returned", "query") from exc


async def timeline(
    models: ReadModels, scope: Scope, customer_id: str, limit: int, cursor: str | None, tz: ZoneInfo
) -> Document:
    customer = await models.customers.find_one({"_id": customer_id})
    if customer is None or customer.get("status") == "purged":
        raise NotFound(f"Customer {customer_id} is not known to reporting.")
    in_pool = customer.get("in_pool") and customer.get("status") == "active"
    if not in_pool and not scope.principal.can_see_owned(customer.get("owner_id"), customer.get("department_path")):
        raise NotFound(f"Customer {customer_id} is not known to reporting.")  # no hint that it exists
    ids = sorted({customer_id, *(await merged_into(models, [customer_id]))})
    query: Document = {"customer_id": {"$in": ids}}
    if cursor:
        t, last_id = decode_cursor(cursor)
        query["$or"] = [{"t": {"$gt": t}}, {"t": t, "_id": {"$gt": last_id}}]
    docs = await _all(
        models.facts.find(query, {"type": 1, "t": 1, "actor": 1, "summary": 1, "customer_id": 1, "subject": 1})
        .sort([("t", 1), ("_id", 1)])
        .limit(limit + 1)
    )
    page, more = docs[:limit], len(docs) > limit
    names = await user_names(models, {d.get("actor") or "" for d in page})
    items = [
        {
            "event_id": d["_id"],
            "type": d["type"],
            "time": datetime.fromtimestamp(d["t"] / 1000, UTC).astimezone(tz).isoformat(),
            "actor_id": d.get("actor") or None,
            "actor_name": names.get(d.get("actor") or "", d.get("actor") or None),
            "summary": d.get("summary"),
            "customer_id": d.get("customer_id"),
            "subject": d.get("subject"),
        }
        for d in page
    ]
    next_cursor = encode_cursor(page[-1]["t"], page[-1]["_id"]) if more and page else None
    return {
        "customer_id": customer_id,
        "merged_customer_ids": [i for i in ids if i != customer_id],
        "items": items,
        "next_cursor": next_cursor,
    }
