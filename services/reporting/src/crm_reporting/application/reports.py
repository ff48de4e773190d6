"""The reports, summed at request time from the rollups of the active generation.

Each report reads a few hundred small counter documents (``roll_*``, kept by the
projection, see ``application/contributions.py``) rather than every state and fact:
time-keyed counters per quarter hour are bucketed here in the report's time zone. Where
a figure is a list of records ("not followed up", overdue tasks, the timeline) it is an
indexed query that reads only those records. Grouping happens in Python rather than in
aggregation pipelines: the embedded store's ``$group`` gives null for ``$sum`` of a
missing field and its date operators return strings.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from crm_platform.customfield_store import DefinitionCopy
from crm_platform.customfields import FieldSet
from crm_platform.errors import NotFound, ValidationFailed
from crm_reporting.adapters.readmodels import ReadModels
from crm_reporting.adapters.rollups import DAY_MS, QUARTER_MS, dec_, enc, timed_counters, unscaled
from crm_reporting.application.contributions import (
    CONTACT_QUALITY,
    CUSTOM_DISTRIBUTION_TYPES,
    CUSTOM_GROUP_TYPES,
    CUSTOMERS,
    DEALS,
    DISTRIBUTION_FIELDS,
    OPPORTUNITY_QUALITY,
    PLACEHOLDER,
    QUALITY,
    TIME,
    find_in,
)
from crm_reporting.application.scope import REPORTS, Scope
from crm_reporting.domain.money import dec, money_in, ratio
from crm_reporting.domain.periods import Bucket, Period, bucket_of, local_day
from crm_reporting.settings import ReportingSettings

Document = dict[str, Any]


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
        docs = await find_in(models.customers, "merged_into", sorted(frontier), {"merged_into": 1})
        nxt = {d["_id"]: frontier[d["merged_into"]] for d in docs if d["_id"] not in found}
        found.update(nxt)
        frontier = nxt
    return found


@dataclass(frozen=True)
class GroupBy:
    """A custom field of opportunities, interactions or tasks a report groups by."""

    module: str
    key: str
    type: str

    @property
    def name(self) -> str:
        return f"custom.{self.key}"

    def value_of(self, counter: str, metric: str) -> str | None:
        """The value of a group counter ``<metric>:<key>:<value>`` of this field, else None."""
        kind, _, rest = counter.partition(":")
        if kind != metric:
            return None
        key, _, value = rest.partition(":")
        return dec_(value) if key == enc(self.key) else None


async def _group_rows(models: ReadModels, group: GroupBy, counts: Mapping[str, Document]) -> list[Document]:
    """One row per value (``name`` too for a user field), most counted first; all-zero rows left out."""
    rows = [{"value": v, **c} for v, c in counts.items() if any(c.values())]
    if group.type == "user":
        names = await user_names(models, {r["value"] for r in rows})
        rows = [{"value": r["value"], "name": names.get(r["value"]), **r} for r in rows]
    return sorted(rows, key=lambda r: (-sum(v for v in r.values() if isinstance(v, int)), r["value"]))


class Reports:
    def __init__(self, settings: ReportingSettings, definitions: DefinitionCopy | None = None) -> None:
        self.settings = settings
        self.definitions = definitions

    def custom_fields(self) -> FieldSet:
        """The customers' custom fields, as learnt from the crm.custom_field.* events."""
        return self.definitions.fieldset("customers") if self.definitions is not None else FieldSet({})

    def group_by(self, module: str, name: str, parameter: str) -> GroupBy:
        """The active choice, multi-choice, user or boolean custom field ``custom.<key>`` of
        ``module`` a report groups by; else a 422 naming ``parameter`` and why."""
        fields = self.definitions.fieldset(module) if self.definitions is not None else FieldSet({})
        kinds = ", ".join(sorted(CUSTOM_GROUP_TYPES))
        if not name.startswith("custom.") or not name.removeprefix("custom."):
            raise ValidationFailed.for_field(parameter, f"custom.<key> of a custom field of {module}", "query")
        key = name.removeprefix("custom.")
        definition = fields.active.get(key)
        if definition is None:
            reason = "is archived" if key in fields.archived else "is not a custom field"
            raise ValidationFailed.for_field(parameter, f"{name} {reason} of {module}", "query")
        if definition["type"] not in CUSTOM_GROUP_TYPES:
            raise ValidationFailed.for_field(
                parameter, f"{name} is a {definition['type']} field: a report groups by {kinds} fields", "query"
            )
        return GroupBy(module, key, str(definition["type"]))

    # --- 1. funnel ------------------------------------------------------------------------

    async def funnel(
        self,
        models: ReadModels,
        scope: Scope,
        period: Period,
        pipeline_id: str | None,
        group: GroupBy | None = None,
        currency: str = "CNY",
    ) -> Document:
        """Amounts in ``currency`` only (opportunities in another currency are counted, and their
        sums listed apart in ``other_currencies``: two currencies are never added up)."""
        if pipeline_id:
            pipeline = await models.pipelines.find_one({"_id": pipeline_id})
        else:
            pipeline = await models.pipelines.find_one({"is_default": True})
        if pipeline is None:
            raise NotFound(f"No configured pipeline {pipeline_id or '(default)'} is known to reporting yet.")
        pid = pipeline["_id"]
        stages = sorted(pipeline["stages"], key=lambda s: s["position"])
        position = {s["stage_id"]: s["position"] for s in stages}
        lost_positions = {s["position"] for s in stages if s["kind"] == "lost"}
        # Open opportunities now: rollup per (pipeline, stage, owner, department).
        current_n: dict[str, int] = defaultdict(int)
        current_amount: dict[str, int] = defaultdict(int)
        others: dict[str, dict[str, int]] = defaultdict(lambda: {"current_amount": 0, "won_amount": 0})
        # Per value of the custom field grouped by: open now (day 0), won and lost in the period.
        grouped: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(GROUP_COUNTERS.values(), 0))
        async for doc in models.collection(DEALS).find({**scope.query(), "pipeline_id": pid, "day": 0}):
            for name, value in doc.items():
                kind, _, stage = name.partition(":")
                if kind == "n":
                    current_n[dec_(stage)] += int(value)
                elif kind == "amt" and (found := in_currency(name, 3)) is not None:
                    counter, cur = found
                    if cur == currency:
                        current_amount[dec_(counter.partition(":")[2])] += int(value)
                    else:
                        others[cur]["current_amount"] += int(value)
                elif group is not None and kind == "on":
                    _count(grouped, group, name, kind, value)
                elif group is not None and kind == "oa" and (found := in_currency(name, 4)) and found[1] == currency:
                    _count(grouped, group, found[0], kind, value)
        # Stage entries and times in stage in the period: rollup per (pipeline, owner, department,
        # UTC day), one counter per quarter hour (see contributions.Contributions.journey).
        entered: dict[str, int] = defaultdict(int)
        converted_to: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
        seconds: dict[str, float] = defaultdict(float)
        moves: dict[str, int] = defaultdict(int)
        counters = timed_counters(models.collection(TIME), scope.query(),
                                  period.start_ms, period.end_ms)  # fmt: skip
        mine = enc(pid)
        async for _doc, metric, _instant, value in counters:
            kind, _, rest = metric.partition(":")
            if kind not in ("en", "ds", "dn"):
                continue
            in_pipeline, _, rest = rest.partition(":")
            if in_pipeline != mine:
                continue
            if kind == "en":
                stage, previous, later = rest.split(":")
                # Counted once per opportunity: only its first entry into the stage in the period.
                if previous != "-" and int(previous) * QUARTER_MS >= period.start_ms:
                    continue
                sid = dec_(stage)
                entered[sid] += int(value)
                converted_to[sid].append(([dec_(x) for x in later.split(",") if x], value))
            elif kind == "ds":
                seconds[dec_(rest)] += value
            else:
                moves[dec_(rest)] += int(value)
        chain = [s for s in stages if s["kind"] != "lost"]  # the path an opportunity advances along
        rows = []
        for index, stage in enumerate(stages):
            sid = stage["stage_id"]
            conversion = None
            next_stage = None
            if stage["kind"] == "open" and stage in chain and chain.index(stage) + 1 < len(chain):
                next_stage = chain[chain.index(stage) + 1]
                nxt = next_stage["position"]
                converted = sum(
                    int(n)
                    for later, n in converted_to[sid]
                    if any(s in position and position[s] >= nxt and position[s] not in lost_positions for s in later)
                )
                conversion = ratio(converted, entered[sid])
            rows.append(
                {
                    "position": index + 1,
                    "stage_id": sid,
                    "stage_name": stage["name"],
                    "kind": stage["kind"],
                    "current_count": current_n[sid],
                    "current_amount": money_in(unscaled(current_amount[sid]), currency),
                    "entered_in_period": entered[sid],
                    "next_stage_id": next_stage["stage_id"] if next_stage else None,
                    "conversion_to_next": conversion,
                    "avg_days_in_stage": round(seconds[sid] / moves[sid] / 86400, 2) if moves[sid] else None,
                }
            )
        # Won and lost in the period, and the sales cycle: rollup per (pipeline, owner,
        # department, calendar day won or lost); ``wc:<quarter hour>`` counts the won ones by
        # creation time, so the cycle is counted in days of the report's time zone.
        won = lost = 0
        won_amount = 0
        cycle_days = cycle_n = 0
        async for doc in models.collection(DEALS).find({**scope.query(), "pipeline_id": pid, "day": _ordinals(period)}):
            won += int(doc.get("won_n") or 0)
            lost += int(doc.get("lost_n") or 0)
            won_day = date.fromordinal(int(doc["day"]))
            for name, value in doc.items():
                if name.startswith("won_amt:") and (found := in_currency(name, 2)) is not None:
                    if found[1] == currency:
                        won_amount += int(value)
                    else:
                        others[found[1]]["won_amount"] += int(value)
                elif group is not None and name[:3] in ("wn:", "ln:"):
                    _count(grouped, group, name, name[:2], value)
                elif group is not None and name[:3] == "wa:" and (found := in_currency(name, 4)):
                    if found[1] == currency:
                        _count(grouped, group, found[0], "wa", value)
                if name.startswith("wc:") and value:
                    created = local_day(int(name[3:]) * QUARTER_MS, period.tz)
                    cycle_days += (won_day - created).days * int(value)
                    cycle_n += int(value)
        report: Document = {
            "pipeline_id": pid,
            "pipeline_name": pipeline.get("name"),
            "period": _period_out(period),
            "currency": currency,
            "summary": {
                "won": won,
                "lost": lost,
                "won_amount": money_in(unscaled(won_amount), currency),
                "win_rate": ratio(won, won + lost),
                "avg_sales_cycle_days": round(cycle_days / cycle_n, 2) if cycle_n else None,
            },
            "rows": rows,
            "other_currencies": [
                {"currency": cur, **{k: money_in(unscaled(n), cur) for k, n in sums.items()}}
                for cur, sums in sorted(others.items())
                if any(sums.values())
            ],
        }
        if group is not None:
            counts = {
                v: {k: money_in(unscaled(n), currency) if k.endswith("_amount") else n for k, n in c.items()}
                for v, c in grouped.items()
            }
            rows_by = await _group_rows(models, group, {v: c for v, c in counts.items() if any(grouped[v].values())})
            report["by_custom_field"] = {"field": group.name, "type": group.type, "rows": rows_by}
        return report

    # --- 2. forecast ----------------------------------------------------------------------

    async def forecast(self, models: ReadModels, scope: Scope, period: Period, currency: str = "CNY") -> Document:
        """Won and weighted open amounts in ``currency`` against the targets set in it (the
        targets of another currency, and opportunities in one, are not this forecast's)."""
        # Rollup documents per (pipeline, owner, department, calendar day): won on that day,
        # and open with that expected close day (amount x probability).
        won: dict[str, Decimal] = defaultdict(Decimal)
        weighted: dict[str, Decimal] = defaultdict(Decimal)
        opp_paths: dict[str, Decimal] = defaultdict(Decimal)  # department path → won
        weighted_paths: dict[str, Decimal] = defaultdict(Decimal)
        won_raw: dict[tuple[str, str], int] = defaultdict(int)
        weighted_raw: dict[tuple[str, str], int] = defaultdict(int)
        won_key, weighted_key = f"won_amt:{enc(currency)}", f"wtd:{enc(currency)}"
        async for doc in models.collection(DEALS).find({**scope.query(), "day": _ordinals(period)}):
            key = (doc["owner_id"], doc.get("department_path") or "")
            if doc.get("won_n") and won_key in doc:  # won that day, some of it in this currency
                won_raw[key] += int(doc[won_key])
            if doc.get("open_n") and weighted_key in doc:
                weighted_raw[key] += int(doc[weighted_key])
        for (owner, path), value in won_raw.items():
            won[owner] += unscaled(value)
            opp_paths[path] += unscaled(value)
        for (owner, path), value in weighted_raw.items():
            weighted[owner] += unscaled(value) / Decimal(100)
            weighted_paths[path] += unscaled(value) / Decimal(100)
        targets = [
            t for t in await _all(models.targets.find({"period": period.label})) if t.get("currency") == currency
        ]
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
            target = rep_targets.get(rep)
            reps.append(_forecast_row("rep", rep, names.get(rep, rep), target, won[rep], weighted[rep], currency))
        departments = []
        paths = set(dept_targets) | {p for p in (*opp_paths, *weighted_paths) if p}
        for path in sorted(paths):
            below = [p for p in set(opp_paths) | set(weighted_paths) if p == path or p.startswith(path + "/")]
            w = sum((opp_paths[p] for p in below), Decimal(0))
            pipe = sum((weighted_paths[p] for p in below), Decimal(0))
            dept_id, target = dept_targets.get(path, (path.rsplit("/", 1)[-1], None))
            departments.append(_forecast_row("department", dept_id, path, target, w, pipe, currency))
        return {
            "period": _period_out(period),
            "currency": currency,
            "reps": reps,
            "departments": departments,
            "rows": reps + departments,
        }

    # --- 3. activity ----------------------------------------------------------------------

    async def activity(
        self,
        models: ReadModels,
        scope: Scope,
        period: Period,
        bucket: Bucket,
        stale_days: int,
        now: datetime,
        interaction_group: GroupBy | None = None,
        task_group: GroupBy | None = None,
    ) -> Document:
        tz = period.tz
        # Interactions (active, not hidden) and new customers: rollup per (owner, department,
        # UTC day), one counter per quarter hour, bucketed here in the report's time zone.
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        new_customers: dict[str, int] = defaultdict(int)
        by_interaction: dict[tuple[str, str], int] = defaultdict(int)
        by_task: dict[tuple[str, str], int] = defaultdict(int)
        async for doc, metric, instant, value in timed_counters(
            models.collection(TIME), scope.query(), period.start_ms, period.end_ms
        ):
            if metric.startswith("ch:"):
                counts[(doc["owner_id"], dec_(metric[3:]), bucket_of(instant, bucket, tz))] += int(value)
            elif metric == "new":
                new_customers[doc.get("owner_id") or ""] += int(value)
            else:
                # Interactions (by occurrence, author) and tasks (by creation, assignee) per custom value.
                for group, metric_name, into in (
                    (interaction_group, "ic", by_interaction),
                    (task_group, "tc", by_task),
                ):
                    found = group.value_of(metric, metric_name) if group is not None else None
                    if found is not None:
                        into[(doc.get("owner_id") or "", found)] += int(value)
        counts = defaultdict(int, {k: n for k, n in counts.items() if n})
        new_customers = defaultdict(int, {k: n for k, n in new_customers.items() if n})
        stale = await self._not_followed_up(models, scope, stale_days, now)
        now_ms = int(now.timestamp() * 1000)
        tasks = await _all(
            models.tasks.find(
                {**scope.query("assignee_id", "assignee_department_path"), "status": "open", "due_ms": {"$lt": now_ms}},
                {"assignee_id": 1, "due_ms": 1, "hidden": 1},
            )
        )
        overdue: dict[str, int] = defaultdict(int)
        for task in tasks:
            if not task.get("hidden") and task["due_ms"] < now_ms:
                overdue[task["assignee_id"]] += 1
        by_interaction = {k: n for k, n in by_interaction.items() if n}
        by_task = {k: n for k, n in by_task.items() if n}
        people = {k[0] for k in counts} | set(new_customers) | set(overdue) | {s["owner_id"] for s in stale}
        people |= {k[0] for k in (*by_interaction, *by_task)}
        names = await user_names(models, people)
        stale_per_owner: dict[str, int] = defaultdict(int)
        for s in stale:
            stale_per_owner[s["owner_id"]] += 1
            s["owner_name"] = names.get(s["owner_id"], s["owner_id"])
        report: Document = {
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
        for group, per_rep, section in (
            (interaction_group, by_interaction, "interactions_by_field"),
            (task_group, by_task, "tasks_by_field"),
        ):
            if group is None:
                continue
            totals: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0})
            for (_, v), n in per_rep.items():
                totals[v]["count"] += n
            report.setdefault("custom_fields", {})[group.module] = {"field": group.name, "type": group.type}
            report[section] = await _group_rows(models, group, totals)
            report[f"{section}_per_rep"] = [
                {"rep_id": r, "rep_name": names.get(r, r), "value": v, "count": n}
                for (r, v), n in sorted(per_rep.items())
            ]
        return report

    async def _not_followed_up(self, models: ReadModels, scope: Scope, days: int, now: datetime) -> list[Document]:
        # ``touch_ms``: the customer's last active interaction, or of one merged into it (-1: none),
        # kept by the projection and indexed: only the customers past the cut-off are read.
        cutoff = int((now - timedelta(days=days)).timestamp() * 1000)
        customers = await _all(
            models.customers.find(
                {**scope.query(), "status": "active", "touch_ms": {"$lt": cutoff}},
                {"owner_id": 1, "name": 1, "in_pool": 1, "touch_ms": 1},
            )
        )
        now_ms = int(now.timestamp() * 1000)
        out = []
        for c in sorted(customers, key=lambda c: (c["owner_id"], c["_id"])):
            if not c.get("owner_id") or c.get("in_pool"):
                continue
            seen = c["touch_ms"] if c.get("touch_ms", -1) >= 0 else None
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
        custom = self.custom_fields()
        distributable = [f"custom.{k}" for k, d in custom.active.items() if d["type"] in CUSTOM_DISTRIBUTION_TYPES]
        if field not in DISTRIBUTION_FIELDS and field not in distributable:
            choices = ", ".join([*DISTRIBUTION_FIELDS, *distributable])
            raise ValidationFailed.for_field(
                "field", f"one of {choices} (custom: choice, multi-choice, boolean)", "query"
            )
        # Rollup documents per (field, value, owner, department) of active customers; "*" = the count.
        counts: dict[str, int] = defaultdict(int)
        total = 0
        async for doc in models.collection(CUSTOMERS).find({**scope.query(), "field": {"$in": [field, "*"]}}):
            n = int(doc.get("n") or 0)
            if doc["field"] == "*":
                total += n
            elif n:
                counts[doc["value"]] += n
        rows = [
            {"value": v, "count": n, "share": ratio(n, total)}
            for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n
        ]
        return {
            "field": field,
            "customers": total,
            "rows": rows,
            "chart": {
                "labels": [r["value"] for r in rows],
                "series": [{"name": field, "data": [r["count"] for r in rows]}],
            },
        }

    # --- 6. data quality and adoption -------------------------------------------------------

    async def quality(self, models: ReadModels, scope: Scope, period: Period) -> Document:
        custom = self.custom_fields()
        required = [
            *self.settings.required_customer_fields,
            *(f"custom.{k}" for k, d in custom.active.items() if d.get("required")),
        ]
        per_rep: dict[str, Document] = defaultdict(lambda: defaultdict(int))
        missing_overall: dict[str, int] = defaultdict(int)
        # Completeness: rollup per (owner, department, the fields an active customer misses).
        async for doc in models.collection(CUSTOMERS).find({**scope.query(), "field": QUALITY}):
            n = int(doc.get("n") or 0)
            if not n:
                continue
            missing = [name for name in (dec_(m) for m in doc["value"].split(",") if m) if name in required]
            row = per_rep[doc.get("owner_id") or ""]
            row["customers"] += n
            row["complete"] += 0 if missing else n
            for name in missing:
                row[f"missing_{name}"] += n
                missing_overall[name] += n
        # Interactions (and those followed by a customer update within 24 h), stage moves
        # (with the time spent in the stage left), customer updates and merges in the period:
        # rollup per (owner, department, UTC day), one counter per quarter hour.
        limits = self.settings.stage_time_limit_days
        async for doc, metric, _instant, value in timed_counters(
            models.collection(TIME), scope.query(), period.start_ms, period.end_ms
        ):
            n = int(value)
            row = per_rep[doc.get("owner_id") or ""]
            if metric == "ia":
                row["interactions"] += n
            elif metric == "if":
                row["followed_by_update"] += n
            elif metric == "upd":
                row["customer_updates"] += n
            elif metric == "mrg":
                row["merges"] += n
            elif metric.startswith("mv:"):
                _, stage, seconds = metric.split(":")
                limit = limits.get(dec_(stage), self.settings.default_stage_time_limit_days)
                row["stage_moves"] += n
                row["stage_moves_on_time"] += n if float(dec_(seconds)) <= limit * 86400 else 0
        # Opportunities (not hidden) and the current contacts of active customers missing required
        # custom fields of their module: rollups per (owner, department, the fields missed); read
        # only while such a field is required.
        other_required: dict[str, list[str]] = {}
        other_missing: dict[str, dict[str, int]] = {}
        for module, rollup in (("opportunities", OPPORTUNITY_QUALITY), ("contacts", CONTACT_QUALITY)):
            defined = self.definitions.fieldset(module) if self.definitions is not None else FieldSet({})
            needed = sorted(f"custom.{k}" for k, d in defined.active.items() if d.get("required"))
            if not needed:
                continue
            other_required[module] = needed
            other_missing[module] = dict.fromkeys(needed, 0)
            async for doc in models.collection(CUSTOMERS).find({**scope.query(), "field": rollup}):
                n = int(doc.get("n") or 0)
                if not n:
                    continue
                missing = [m for m in (dec_(m) for m in doc["value"].split(",") if m) if m in needed]
                row = per_rep[doc.get("owner_id") or ""]
                row[module] += n
                row[f"{module}_complete"] += 0 if missing else n
                for name in missing:
                    other_missing[module][name] += n
        per_rep = {rep: r for rep, r in per_rep.items() if any(r.values())}
        names = await user_names(models, set(per_rep))
        rows = [_quality_row(rep, names.get(rep, rep), dict(r), period) for rep, r in sorted(per_rep.items())]
        total: dict[str, int] = defaultdict(int)
        for r in per_rep.values():
            for k, v in r.items():
                total[k] += v
        overall = _quality_row("", "(all)", dict(total), period)
        overall["missing_per_field"] = {name: missing_overall.get(name, 0) for name in required}
        report: Document = {
            "period": _period_out(period),
            "required_fields": required,
            "overall": overall,
            "rows": rows,
        }
        for module, needed in other_required.items():
            one = OTHER_QUALITY[module]
            report[f"{one}_required_fields"] = needed
            for row, r in [*zip(rows, [per_rep[rep] for rep in sorted(per_rep)], strict=True), (overall, total)]:
                row[module] = int(r.get(module, 0))
                row[f"{module}_complete"] = int(r.get(f"{module}_complete", 0))
                row[f"{one}_completeness"] = ratio(row[f"{module}_complete"], row[module])
            overall[f"{one}_missing_per_field"] = other_missing[module]
        return report


#: Data quality of other modules' required custom fields: module -> the prefix of its figures.
OTHER_QUALITY = {"opportunities": "opportunity", "contacts": "contact"}


#: A funnel's group counters (contributions.Contributions.opportunity) -> the row's figure.
def in_currency(name: str, parts: int) -> tuple[str, str] | None:
    """An amount counter ``<counter>:<currency>`` of ``parts`` parts split into the counter and its
    currency; None for one of another shape (a counter kept before amounts were kept per
    currency: a generation that needs `crm-reporting rebuild`, see the README)."""
    if name.count(":") != parts - 1:
        return None
    counter, _, currency = name.rpartition(":")
    return counter, dec_(currency)


GROUP_COUNTERS = {
    "on": "open_count",
    "oa": "open_amount",
    "wn": "won",
    "wa": "won_amount",
    "ln": "lost",
}


def _count(grouped: dict[str, dict[str, int]], group: GroupBy, name: str, metric: str, value: float) -> None:
    found = group.value_of(name, metric)
    if found is not None:
        grouped[found][GROUP_COUNTERS[metric]] += int(value)


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
    if not p.reaches_path(path, REPORTS):
        return False
    return scope.allows(None, path) if scope.department_path else scope.owner_id is None


def _forecast_row(
    kind: str, key: str, name: str, target: Decimal | None, won: Decimal, weighted: Decimal, currency: str
) -> Document:
    return {
        "scope": kind,
        "scope_id": key,
        "name": name,
        "target": money_in(target, currency) if target is not None else None,
        "won_amount": money_in(won, currency),
        "weighted_pipeline": money_in(weighted, currency),
        "attainment_pct": round(float(won / target * 100), 1) if target else None,
    }


def _ordinals(period: Period) -> Document:
    """The calendar days of a period as a range of ordinals (the ``day`` of ``roll_deals``)."""
    return {"$gte": period.start.toordinal(), "$lt": period.end.toordinal()}


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
    if customer is None or customer.get("status") in ("purged", PLACEHOLDER):
        raise NotFound(f"Customer {customer_id} is not known to reporting.")
    in_pool = customer.get("in_pool") and customer.get("status") == "active"
    if not in_pool and not scope.principal.can_see_owned(
        customer.get("owner_id"), customer.get("department_path"), module=REPORTS
    ):
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
