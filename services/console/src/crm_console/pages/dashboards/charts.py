"""ECharts options built from the reporting service's JSON (plain dicts the page hands to
``echarts.init(...).setOption``). Labels come through ``t`` so the charts speak the user's language."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

Translate = Callable[..., str]
Option = dict[str, Any]

BASE: Option = {"aria": {"enabled": True}, "tooltip": {}, "grid": {"containLabel": True, "left": 8, "right": 16}}


def _num(value: Any) -> float:
    """Amounts come as decimal strings ("1200.00"); ECharts wants numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def funnel(report: dict[str, Any], t: Translate) -> Option:
    """Open opportunities now in each stage, in stage order (won and lost left out: they have left the funnel)."""
    rows = [r for r in report.get("rows", []) if r.get("kind") == "open"]
    data = [{"name": r["stage_name"], "value": r["current_count"]} for r in rows]
    return {
        **BASE,
        "tooltip": {"trigger": "item"},
        "series": [
            {
                "name": t("dashboards.funnel.series"),
                "type": "funnel",
                "sort": "none",
                "minSize": "20%",
                "label": {"show": True, "position": "inside", "formatter": "{b}: {c}"},
                "data": data,
            }
        ]
        if data
        else [],
    }


def forecast(report: dict[str, Any], t: Translate) -> Option:
    """Per rep: target, won and probability-weighted open pipeline."""
    reps = report.get("reps", [])
    names = [r["name"] for r in reps]
    series = [
        {"name": t("dashboards.forecast.target"), "type": "bar", "data": [_num(r.get("target")) for r in reps]},
        {"name": t("dashboards.forecast.won"), "type": "bar", "data": [_num(r.get("won_amount")) for r in reps]},
        {
            "name": t("dashboards.forecast.weighted"),
            "type": "bar",
            "data": [_num(r.get("weighted_pipeline")) for r in reps],
        },
    ]
    return {
        **BASE,
        "tooltip": {"trigger": "axis"},
        "legend": {"bottom": 0},
        "xAxis": {"type": "category", "data": names},
        "yAxis": {"type": "value"},
        "series": series if reps else [],
    }


def activity(report: dict[str, Any], t: Translate) -> Option:
    """Interactions per rep, stacked by channel, over the whole period."""
    per: dict[tuple[str, str], int] = defaultdict(int)
    reps: dict[str, str] = {}
    for row in report.get("interactions", []):
        per[(row["rep_id"], row["channel"])] += int(row["count"])
        reps[row["rep_id"]] = row.get("rep_name") or row["rep_id"]
    rep_ids = sorted(reps, key=lambda r: reps[r])
    channels = sorted({c for _, c in per})
    series = [
        {
            "name": t(f"dashboards.channel.{c}") if c in CHANNELS else c,
            "type": "bar",
            "stack": "channels",
            "data": [per.get((r, c), 0) for r in rep_ids],
        }
        for c in channels
    ]
    return {
        **BASE,
        "tooltip": {"trigger": "axis"},
        "legend": {"bottom": 0},
        "xAxis": {"type": "category", "data": [reps[r] for r in rep_ids]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": series,
    }


CHANNELS = ("phone", "email", "meeting", "visit", "social", "note")  # crm_platform.contracts.interactions.Channel


def distribution(report: dict[str, Any], t: Translate) -> Option:
    """Active customers per value of the chosen profile field (the service's own chart series)."""
    chart = report.get("chart") or {}
    labels = [
        t("dashboards.distribution.blank") if label in ("", "(none)") else label for label in chart.get("labels", [])
    ]
    data = (chart.get("series") or [{}])[0].get("data", [])
    return {
        **BASE,
        "tooltip": {"trigger": "item"},
        "series": [
            {
                "name": t(f"dashboards.field.{report.get('field', '')}"),
                "type": "pie",
                "radius": ["35%", "70%"],
                "data": [{"name": name, "value": value} for name, value in zip(labels, data, strict=False)],
            }
        ]
        if data
        else [],
    }


def quality(report: dict[str, Any], t: Translate) -> Option:
    """Per rep, in percent: complete records, interactions followed by an update within 24 h, stage moves on time."""
    rows = report.get("rows", [])

    def pct(value: Any) -> float | None:
        return None if value is None else round(_num(value) * 100, 1)

    keys = (
        ("completeness", "dashboards.quality.completeness"),
        ("update_within_24h_rate", "dashboards.quality.updated"),
        ("on_time_rate", "dashboards.quality.on_time"),
    )
    return {
        **BASE,
        "tooltip": {"trigger": "axis"},
        "legend": {"bottom": 0},
        "xAxis": {"type": "category", "data": [r["rep_name"] for r in rows]},
        "yAxis": {"type": "value", "max": 100, "axisLabel": {"formatter": "{value}%"}},
        "series": [{"name": t(label), "type": "bar", "data": [pct(r.get(key)) for r in rows]} for key, label in keys]
        if rows
        else [],
    }
