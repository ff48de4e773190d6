"""Counts of interactions per rep and per channel per day, week or month (the manager's view).

Counted in Python over one indexed, projected query (``occurred_at`` range plus the
visibility filter) rather than with ``$group``: the embedded store's ``$sum`` of a
missing field is null and its ``$dateTrunc`` returns a string, and local days in the
caller's time zone are plain Python anyway. A period too large to count in one
request is refused (narrow it) rather than answered slowly.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from crm_interactions.adapters.repository import Repository, find_all
from crm_interactions.application.interactions import author_visibility
from crm_interactions.domain.calendar import GroupBy, bucket, zone
from crm_interactions.domain.interactions import INTERACTIONS
from crm_platform.auth import Principal
from crm_platform.errors import Forbidden, ValidationFailed
from crm_platform.listing import all_of
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]


class StatsRow(BaseModel):
    period: str = Field(description="2026-01-05 (day), 2026-W02 (ISO week), 2026-01 (month).")
    period_start: date
    rep_id: str
    channel: str
    count: int
    recorded_late: int


class RepTotal(BaseModel):
    rep_id: str
    count: int
    recorded_late: int
    by_channel: dict[str, int]


class PeriodTotal(BaseModel):
    period: str
    period_start: date
    count: int
    recorded_late: int
    by_channel: dict[str, int]


class Totals(BaseModel):
    count: int
    recorded_late: int
    by_channel: dict[str, int]


class Stats(BaseModel):
    group_by: GroupBy
    tz: str
    from_: datetime = Field(alias="from")
    to: datetime
    rows: list[StatsRow]
    by_rep: list[RepTotal]
    by_period: list[PeriodTotal]
    total: Totals

    model_config = {"populate_by_name": True}


def count(
    rows: list[Document], group_by: GroupBy, tz_name: str
) -> tuple[list[StatsRow], list[RepTotal], list[PeriodTotal], Totals]:
    """The pure part: bucket each (author, channel, occurred_at, recorded_late) row and add up."""
    tz = zone(tz_name)
    cells: dict[tuple[str, date, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        label, start = bucket(row["occurred_at"], group_by, tz)
        cell = cells[(label, start, row["author_id"], row["channel"])]
        cell[0] += 1
        cell[1] += 1 if row.get("recorded_late") else 0
    out = [
        StatsRow(period=label, period_start=start, rep_id=rep, channel=channel, count=n, recorded_late=late)
        for (label, start, rep, channel), (n, late) in sorted(cells.items())
    ]
    reps: dict[str, RepTotal] = {}
    periods: dict[str, PeriodTotal] = {}
    channels: Counter[str] = Counter()
    for r in out:
        rep = reps.setdefault(r.rep_id, RepTotal(rep_id=r.rep_id, count=0, recorded_late=0, by_channel={}))
        period = periods.setdefault(
            r.period, PeriodTotal(period=r.period, period_start=r.period_start, count=0, recorded_late=0, by_channel={})
        )
        for total in (rep, period):
            total.count += r.count
            total.recorded_late += r.recorded_late
            total.by_channel[r.channel] = total.by_channel.get(r.channel, 0) + r.count
        channels[r.channel] += r.count
    totals = Totals(
        count=sum(r.count for r in out), recorded_late=sum(r.recorded_late for r in out), by_channel=dict(channels)
    )
    return out, sorted(reps.values(), key=lambda t: t.rep_id), sorted(periods.values(), key=lambda t: t.period), totals


async def interaction_stats(
    repo: Repository,
    principal: Principal,
    *,
    group_by: GroupBy,
    start: datetime,
    end: datetime,
    tz: str,
    department: str | None,
    rep: str | None,
    channel: str | None,
    max_rows: int,
) -> Stats:
    if end <= start:
        raise ValidationFailed.for_field("to", "must be after from", "query")
    clauses: list[Document] = [
        # The epoch-ms copy: a range on the date itself is a full scan on the embedded store.
        {"s.occurred_at": {"$gte": epoch_ms(start), "$lt": epoch_ms(end)}},
        {"status": "active", "hidden": False},
    ]
    if not principal.reaches_all(INTERACTIONS):
        clauses.append(author_visibility(principal))
    if department:
        if not principal.reaches_path(department, INTERACTIONS):
            raise Forbidden("You may count the interactions of the departments your interactions scope reaches.")
        prefix = department.rstrip("/")
        clauses.append({"author_department_path": {"$regex": f"^{re.escape(prefix)}(/|$)"}})
    if rep:
        if not (rep == principal.user_id or principal.reaches_beyond_own(INTERACTIONS)):
            raise Forbidden("An interactions scope of own sees its own counts only.")
        clauses.append({"author_id": rep})
    if channel:
        clauses.append({"channel": {"$in": [c.strip() for c in channel.split(",") if c.strip()]}})
    projection = {"author_id": 1, "channel": 1, "occurred_at": 1, "recorded_late": 1}
    rows = await find_all(repo.interactions, all_of(*clauses), projection, limit=max_rows + 1)
    if len(rows) > max_rows:
        raise ValidationFailed.for_field(
            "from",
            f"more than {max_rows} interactions in the period; narrow it or filter by department or rep",
            "query",
        )
    cells, by_rep, by_period, total = count(rows, group_by, tz)
    return Stats(
        group_by=group_by, tz=tz, **{"from": start}, to=end, rows=cells, by_rep=by_rep, by_period=by_period, total=total
    )
