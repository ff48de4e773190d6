"""The sales funnel (销售漏斗) from opportunities' stage histories: plain maths, no I/O.

Rules (documented in the README):

* The cohort is the opportunities the caller passes (the query picks those of one
  pipeline created in the period, within the caller's scope, not hidden).
* An opportunity **reached** an open stage if it was ever in that stage or in a
  later open stage of the pipeline's *current* order (a forward jump passed the
  stages in between, whose requirements it met), or if it is won now. It reached
  the won stage if it is won, the lost stage if it is lost. So the funnel never
  widens going down, and reordering stages re-reads the same histories.
* **Amount** per stage is the sum of the current amounts of the opportunities that
  reached it, in the requested currency; other currencies are reported apart.
* **Conversion** from a stage is reached(next stage) / reached(this stage); the last
  open stage converts into the won stage.
* **Average time in stage** is the mean of completed stays in the stage (entered and
  left), from the ``seconds_in_previous`` the moves recorded.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from crm_pipeline.domain import pipelines as pl

Document = dict[str, Any]


@dataclass
class StageFigures:
    stage_id: str
    name: str
    name_en: str | None
    kind: str
    position: int
    reached: int = 0
    amount_minor: int = 0
    other_currencies: dict[str, int] = field(default_factory=dict)
    current: int = 0  # opportunities in this stage now
    conversion_to_next: float | None = None
    stays: list[float] = field(default_factory=list)

    @property
    def average_days_in_stage(self) -> float | None:
        return round(sum(self.stays) / len(self.stays) / 86400, 2) if self.stays else None


@dataclass
class Funnel:
    stages: list[StageFigures]
    total: int
    won: int
    lost: int

    @property
    def win_rate(self) -> float | None:
        closed = self.won + self.lost
        return round(self.won / closed, 4) if closed else None


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def compute(pipeline: Document, opportunities: list[Document], currency: str) -> Funnel:
    open_stages = pl.open_stages(pipeline)
    won_stage, lost_stage = pl.stage_of_kind(pipeline, "won"), pl.stage_of_kind(pipeline, "lost")
    ordered = [*open_stages, won_stage, lost_stage]
    figures = {
        s["stage_id"]: StageFigures(s["stage_id"], s["name"], s.get("name_en"), s["kind"], s["position"])
        for s in ordered
    }
    open_rank = {s["stage_id"]: i for i, s in enumerate(open_stages)}
    stays: dict[str, list[float]] = defaultdict(list)
    for opp in opportunities:
        history = opp.get("stage_history") or []
        visited = {e["to_stage_id"] for e in history} | {opp["stage_id"]}
        ranks = [open_rank[s] for s in visited if s in open_rank]
        furthest = len(open_stages) - 1 if opp["status"] == "won" else max(ranks, default=-1)
        reached = [s["stage_id"] for s in open_stages[: furthest + 1]]
        if opp["status"] == "won":
            reached.append(won_stage["stage_id"])
        elif opp["status"] == "lost":
            reached.append(lost_stage["stage_id"])
        for stage_id in reached:
            f = figures[stage_id]
            f.reached += 1
            amount = opp.get("amount_minor")
            if amount is not None:
                if opp["currency"] == currency:
                    f.amount_minor += amount
                else:
                    f.other_currencies[opp["currency"]] = f.other_currencies.get(opp["currency"], 0) + amount
        if opp["stage_id"] in figures:
            figures[opp["stage_id"]].current += 1
        for entry in history:
            if entry.get("from_stage_id") and entry.get("seconds_in_previous") is not None:
                stays[entry["from_stage_id"]].append(float(entry["seconds_in_previous"]))
    for stage_id, values in stays.items():
        if stage_id in figures:
            figures[stage_id].stays = values
    chain = [*open_stages, won_stage]
    for here, after in itertools.pairwise(chain):
        figures[here["stage_id"]].conversion_to_next = _ratio(
            figures[after["stage_id"]].reached, figures[here["stage_id"]].reached
        )
    return Funnel(
        stages=[figures[s["stage_id"]] for s in ordered],
        total=len(opportunities),
        won=figures[won_stage["stage_id"]].reached,
        lost=figures[lost_stage["stage_id"]].reached,
    )
