"""Targets (目标) and the forecast (预测): plain maths, no I/O.

Which target applies to a period (documented in the README):

* A target set for exactly that period wins.
* Otherwise a quarter is the sum of its months' targets, and a year the sum of its
  quarters, each quarter being its own target or else the sum of its months.
  Parts without a target count as nothing; ``parts`` says which were summed.
* A department without a target of its own (resolved as above) gets the sum over
  its subtree: the targets of the highest departments below it that have one, plus
  the targets of reps not covered by any of those departments (so nothing is
  counted twice).

The forecast for a period compares the target with the amount **won** in the
period (``won_on`` inside it) and the **probability-weighted open pipeline**
expected to close in it (``expected_close_date`` inside it). ``gap`` is what is
left after both: target − won − weighted (negative: ahead of target);
``remaining`` is target − won.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crm_pipeline.domain import money
from crm_pipeline.domain.periods import Period

Document = dict[str, Any]
TargetsByPeriod = dict[str, int]  # "2026-11" -> minor units


@dataclass(frozen=True)
class ResolvedTarget:
    amount_minor: int | None
    source: str  # set | sum_of_months | sum_of_quarters | sum_of_subtree | none
    parts: list[str] = field(default_factory=list)


NONE = ResolvedTarget(None, "none", [])


def resolve(period: Period, targets: TargetsByPeriod) -> ResolvedTarget:
    key = str(period)
    if key in targets:
        return ResolvedTarget(targets[key], "set", [key])
    if period.kind == "quarter":
        months = [str(m) for m in period.months() if str(m) in targets]
        if months:
            return ResolvedTarget(sum(targets[m] for m in months), "sum_of_months", months)
    if period.kind == "year":
        total, parts = 0, []
        for quarter in period.quarters():
            part = resolve(quarter, targets)
            if part.amount_minor is not None:
                total += part.amount_minor
                parts += part.parts
        if parts:
            return ResolvedTarget(total, "sum_of_quarters", parts)
    return NONE


def is_under(path: str | None, ancestor: str) -> bool:
    """Strictly below ``ancestor`` in the department tree."""
    return bool(path) and path != ancestor and path.startswith(ancestor.rstrip("/") + "/")  # type: ignore[union-attr]


def covers(ancestor: str, path: str | None) -> bool:
    return path == ancestor or is_under(path, ancestor)


def resolve_department(
    period: Period,
    path: str,
    departments: dict[str, TargetsByPeriod],
    reps: list[tuple[str, str | None, TargetsByPeriod]],
) -> ResolvedTarget:
    """``departments``: department path -> its targets; ``reps``: (rep id, rep's department path, targets)."""
    own = resolve(period, departments.get(path, {}))
    if own.amount_minor is not None:
        return own
    below = {p: resolve(period, t) for p, t in departments.items() if is_under(p, path)}
    below = {p: r for p, r in below.items() if r.amount_minor is not None}
    top = {p: r for p, r in below.items() if not any(is_under(p, q) for q in below)}
    total, parts = 0, []
    for p, r in sorted(top.items()):
        total += r.amount_minor or 0
        parts += [f"department {p}: {x}" for x in r.parts]
    for rep_id, rep_path, targets in sorted(reps, key=lambda r: r[0]):
        if not covers(path, rep_path) or any(covers(q, rep_path) for q in top):
            continue
        r = resolve(period, targets)
        if r.amount_minor is not None:
            total += r.amount_minor
            parts += [f"rep {rep_id}: {x}" for x in r.parts]
    return ResolvedTarget(total, "sum_of_subtree", parts) if parts else NONE


@dataclass(frozen=True)
class Figures:
    target_minor: int | None
    won_minor: int
    won_count: int
    pipeline_minor: int
    weighted_minor: int
    open_count: int

    @property
    def remaining_minor(self) -> int | None:
        return None if self.target_minor is None else self.target_minor - self.won_minor

    @property
    def gap_minor(self) -> int | None:
        return None if self.target_minor is None else self.target_minor - self.won_minor - self.weighted_minor

    @property
    def attainment(self) -> float | None:
        return round(self.won_minor / self.target_minor, 4) if self.target_minor else None


def figures(target_minor: int | None, won: list[Document], open_: list[Document]) -> Figures:
    return Figures(
        target_minor=target_minor,
        won_minor=sum(o.get("amount_minor") or 0 for o in won),
        won_count=len(won),
        pipeline_minor=sum(o.get("amount_minor") or 0 for o in open_),
        weighted_minor=sum(
            money.weighted(o["amount_minor"], o["probability"]) for o in open_ if o.get("amount_minor") is not None
        ),
        open_count=len(open_),
    )
