"""The counting behind /v1/interactions/stats, on plain rows."""

from __future__ import annotations

from datetime import UTC, datetime

from crm_interactions.application.stats import count


def row(author: str, channel: str, at: datetime, late: bool = False) -> dict[str, object]:
    return {"author_id": author, "channel": channel, "occurred_at": at, "recorded_late": late}


def test_cells_totals_and_missing_late_flags():
    rows = [
        row("a", "phone", datetime(2026, 1, 5, 1, tzinfo=UTC)),
        row("a", "phone", datetime(2026, 1, 5, 15, tzinfo=UTC), late=True),  # 23:00 Shanghai, same day
        row("b", "email", datetime(2026, 1, 5, 17, tzinfo=UTC)),  # 01:00 on the 6th in Shanghai
        {"author_id": "b", "channel": "note", "occurred_at": datetime(2026, 1, 12, 2, tzinfo=UTC)},  # no flag
    ]
    cells, by_rep, by_period, total = count(rows, "day", "Asia/Shanghai")
    assert [(c.period, c.rep_id, c.channel, c.count, c.recorded_late) for c in cells] == [
        ("2026-01-05", "a", "phone", 2, 1),
        ("2026-01-06", "b", "email", 1, 0),
        ("2026-01-12", "b", "note", 1, 0),
    ]
    assert [(r.rep_id, r.count, r.recorded_late, r.by_channel) for r in by_rep] == [
        ("a", 2, 1, {"phone": 2}),
        ("b", 2, 0, {"email": 1, "note": 1}),
    ]
    assert [(p.period, p.count) for p in by_period] == [("2026-01-05", 2), ("2026-01-06", 1), ("2026-01-12", 1)]
    assert (total.count, total.recorded_late, total.by_channel) == (4, 1, {"phone": 2, "email": 1, "note": 1})
    weekly = count(rows, "week", "Asia/Shanghai")[2]
    assert [(p.period, p.count, str(p.period_start)) for p in weekly] == [
        ("2026-W02", 3, "2026-01-05"),
        ("2026-W03", 1, "2026-01-12"),
    ]


def test_nothing_counts_zero():
    cells, by_rep, by_period, total = count([], "month", "UTC")
    assert (cells, by_rep, by_period) == ([], [], []) and total.count == 0 and total.by_channel == {}
