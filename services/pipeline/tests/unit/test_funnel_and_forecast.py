from datetime import UTC, datetime

from crm_pipeline.domain import forecast as fc
from crm_pipeline.domain import funnel as fn
from crm_pipeline.domain import pipelines as pl
from crm_pipeline.domain.periods import parse_period

PIPELINE = pl.default_pipeline(datetime(2026, 1, 1, tzinfo=UTC))
DAY = 86400.0


def opp(
    status: str, stage: str, path: list[tuple[str, float | None]], amount: int | None = 1000, currency: str = "CNY"
) -> dict:
    """``path``: (stage entered, seconds spent in the stage before it), in order."""
    history = []
    previous = None
    for to, seconds in path:
        history.append({"from_stage_id": previous, "to_stage_id": to, "seconds_in_previous": seconds})
        previous = to
    return {"status": status, "stage_id": stage, "amount_minor": amount, "currency": currency, "stage_history": history}


def by_id(funnel: fn.Funnel) -> dict[str, fn.StageFigures]:
    return {s.stage_id: s for s in funnel.stages}


def test_reached_counts_skipped_stages_and_never_widens():
    cohort = [
        opp("open", "initial_contact", [("initial_contact", None)]),
        opp("open", "negotiation", [("initial_contact", None), ("negotiation", 2 * DAY)]),  # jumped two stages
        opp("won", "won", [("initial_contact", None), ("needs_confirmed", DAY), ("won", 3 * DAY)], amount=5000),
        opp("lost", "lost", [("initial_contact", None), ("needs_confirmed", 4 * DAY), ("lost", DAY)]),
    ]
    funnel = fn.compute(PIPELINE, cohort, "CNY")
    stages = by_id(funnel)
    assert [
        stages[s].reached for s in ("initial_contact", "needs_confirmed", "proposal", "negotiation", "won", "lost")
    ] == [4, 3, 2, 2, 1, 1]
    assert stages["initial_contact"].amount_minor == 8000 and stages["won"].amount_minor == 5000
    assert stages["initial_contact"].conversion_to_next == 0.75
    assert stages["negotiation"].conversion_to_next == 0.5
    assert stages["initial_contact"].average_days_in_stage == round((2 + 1 + 4) / 3, 2)
    assert stages["needs_confirmed"].average_days_in_stage == 2.0  # (3 + 1) / 2
    assert stages["proposal"].average_days_in_stage is None
    assert stages["initial_contact"].current == 1 and stages["negotiation"].current == 1
    assert funnel.win_rate == 0.5 and funnel.total == 4


def test_other_currencies_are_reported_apart_and_empty_stages_do_not_divide_by_zero():
    funnel = fn.compute(
        PIPELINE, [opp("open", "initial_contact", [("initial_contact", None)], amount=700, currency="USD")], "CNY"
    )
    stages = by_id(funnel)
    assert stages["initial_contact"].amount_minor == 0 and stages["initial_contact"].other_currencies == {"USD": 700}
    assert stages["proposal"].conversion_to_next is None and funnel.win_rate is None


def test_reordering_stages_rereads_the_same_history():
    reordered = {
        **PIPELINE,
        "stages": [PIPELINE["stages"][i] for i in (0, 2, 1, 3, 4, 5)],
    }  # proposal before needs_confirmed
    cohort = [opp("open", "needs_confirmed", [("initial_contact", None), ("needs_confirmed", DAY)])]
    stages = by_id(fn.compute(reordered, cohort, "CNY"))
    assert stages["proposal"].reached == 1 and stages["negotiation"].reached == 0


def test_target_resolution_prefers_the_exact_period_then_sums_parts():
    q4 = parse_period("2026-Q4")
    assert fc.resolve(q4, {"2026-Q4": 900, "2026-10": 1}) == fc.ResolvedTarget(900, "set", ["2026-Q4"])
    assert fc.resolve(q4, {"2026-10": 100, "2026-12": 300}) == fc.ResolvedTarget(
        400, "sum_of_months", ["2026-10", "2026-12"]
    )
    year = fc.resolve(parse_period("2026"), {"2026-Q1": 1000, "2026-05": 10, "2026-06": 20, "2026-11": 5})
    assert (year.amount_minor, year.source) == (1035, "sum_of_quarters")
    assert fc.resolve(parse_period("2026-11"), {"2026-Q4": 900}) == fc.NONE


def test_department_target_sums_the_subtree_without_counting_twice():
    q4 = parse_period("2026-Q4")
    departments = {"/hq/east": {"2026-Q4": 1000}, "/hq/east/team-1": {"2026-Q4": 400}, "/hq/west": {"2026-10": 50}}
    reps = [
        ("r1", "/hq/east/team-1", {"2026-Q4": 200}),
        ("r2", "/hq/north", {"2026-Q4": 70}),
        ("r3", "/hq", {"2026-11": 5}),
    ]
    resolved = fc.resolve_department(q4, "/hq", departments, reps)
    # /hq/east (1000, covers team-1 and r1) + /hq/west (50, by its months) + r2 (70) + r3 (5)
    assert (resolved.amount_minor, resolved.source) == (1125, "sum_of_subtree")
    assert fc.resolve_department(q4, "/hq/east", departments, reps).amount_minor == 1000
    assert fc.resolve_department(q4, "/elsewhere", departments, reps) == fc.NONE


def test_forecast_figures():
    won = [{"amount_minor": 3000}, {"amount_minor": None}]
    open_ = [
        {"amount_minor": 1000, "probability": 40},
        {"amount_minor": 2000, "probability": 55},
        {"amount_minor": None, "probability": 90},
    ]
    f = fc.figures(10000, won, open_)
    assert (f.won_minor, f.won_count, f.pipeline_minor, f.weighted_minor, f.open_count) == (3000, 2, 3000, 1500, 3)
    assert (f.remaining_minor, f.gap_minor, f.attainment) == (7000, 5500, 0.3)
    assert fc.figures(None, won, open_).gap_minor is None
