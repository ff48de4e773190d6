"""Field-level permissions in reports (:mod:`crm_platform.fieldaccess`).

Reports are made of the same fields as the records: a caller whose roles hide a field gets no
figure made of it. An opportunity's hidden amount leaves the funnel's sums out (those per custom
value too) and refuses the forecast (it is nothing but amounts); a customer's hidden field (a
custom one too) refuses a distribution over it and leaves its column out of the data-quality
report; a hidden custom field of opportunities, interactions or tasks refuses a report grouped by
it; the timeline leaves amounts out of its lines, and an interaction's or a feedback's hidden
content too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from crm_platform.auth import Principal

#: A distribution's field -> the customer field behind it (region and city are the address).
DISTRIBUTION_FIELD = {
    "industry": "industry",
    "region": "address",
    "city": "address",
    "size": "size",
    "tier": "tier",
    "source": "source",
    "lifecycle_stage": "lifecycle_stage",
    "tag": "tags",
}
#: A data-quality field -> the customer field behind it.
QUALITY_FIELD = {**DISTRIBUTION_FIELD, "tags": "tags"}
#: The funnel's figures made of opportunities' amounts.
AMOUNT_KEYS = frozenset({"current_amount", "won_amount", "open_amount", "other_currencies"})
#: The timeline's line for a created or won opportunity ends with its amount: ": 120000.00 CNY".
_AMOUNT_TAIL = re.compile(r": -?\d+(?:\.\d+)?(?: [A-Z]{3})?$")
_AMOUNT_LINES = frozenset({"crm.opportunity.created", "crm.opportunity.won"})
#: Lines that repeat an interaction's or a feedback's content (see crm_reporting.domain.summaries).
_LOGGED, _UPDATED, _RESOLVED = "crm.interaction.logged", "crm.interaction.updated", "crm.feedback.resolved"


def _without(value: Any, keys: Iterable[str]) -> Any:
    drop = frozenset(keys)
    if isinstance(value, dict):
        return {k: _without(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_without(v, drop) for v in value]
    return value


def ensure_forecast_visible(principal: Principal) -> None:
    principal.fields("opportunities").ensure_visible(["amount"], "see a forecast")


def funnel(report: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The funnel without the sums of amounts, for a caller who may not see amounts."""
    if not principal.fields("opportunities").hides("amount"):
        return report
    hidden: dict[str, Any] = _without(report, AMOUNT_KEYS)
    return hidden


def ensure_distribution_visible(principal: Principal, field: str) -> None:
    if field in DISTRIBUTION_FIELD:
        principal.fields("customers").ensure_visible([DISTRIBUTION_FIELD[field]], "see a distribution")
    elif field.startswith("custom."):
        principal.fields("customers").ensure_visible([field], "see a distribution")


def ensure_group_visible(principal: Principal, module: str, field: str | None) -> None:
    """A report grouped by ``custom.<key>`` of ``module`` is refused (403) to a role that hides it."""
    if field is not None:
        principal.fields(module).ensure_visible([field], "group a report")


def quality(report: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The data-quality report without the completeness of fields the caller may not see."""
    policy = principal.fields("customers")
    hidden = [name for name in report.get("required_fields") or [] if policy.hides(QUALITY_FIELD.get(name, name))]
    if not hidden:
        return report
    out: dict[str, Any] = _without(report, {f"missing_{name}" for name in hidden})
    out["required_fields"] = [name for name in out["required_fields"] if name not in hidden]
    per_field = out.get("overall", {}).get("missing_per_field")
    if isinstance(per_field, dict):
        out["overall"]["missing_per_field"] = {k: v for k, v in per_field.items() if k not in hidden}
    return out


def other_quality(report: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The data-quality report without the required custom fields of opportunities and contacts
    the caller may not see."""
    out = report
    for module, one in (("opportunities", "opportunity"), ("contacts", "contact")):
        policy = principal.fields(module)
        required = out.get(f"{one}_required_fields") or []
        hidden = [name for name in required if policy.hides(name)]
        if not hidden:
            continue
        per_field = out["overall"][f"{one}_missing_per_field"]
        out = {
            **out,
            f"{one}_required_fields": [n for n in required if n not in hidden],
            "overall": {
                **out["overall"],
                f"{one}_missing_per_field": {k: v for k, v in per_field.items() if k not in hidden},
            },
        }
    return out


def timeline(report: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The timeline without what its lines repeat of fields the caller may not see: opportunities'
    amounts, an interaction's summary or subject (its "logged" line ends with one of them, and
    which cannot be told apart: either hidden drops the text), the hidden fields an interaction's
    "updated" line names, and a feedback's resolution."""
    hides_amount = principal.fields("opportunities").hides("amount")
    interactions, feedback = principal.fields("interactions"), principal.fields("feedback")
    if not (hides_amount or interactions.hidden or feedback.hidden):
        return report
    hides_text = interactions.hides("summary") or interactions.hides("subject")

    def line(kind: str, summary: str) -> str:
        if hides_amount and kind in _AMOUNT_LINES:
            return _AMOUNT_TAIL.sub("", summary)
        if (kind == _LOGGED and hides_text) or (kind == _RESOLVED and feedback.hides("resolution")):
            return summary.split(": ", 1)[0]  # "phone logged: <summary>" -> "phone logged"
        if kind == _UPDATED and interactions.hidden and ": " in summary:
            head, names = summary.split(": ", 1)  # "phone updated: minutes, location"
            shown = [n for n in names.split(", ") if not interactions.hides(n)]
            return f"{head}: {', '.join(shown)}" if shown else head
        return summary

    items = [
        {**item, "summary": line(str(item.get("type")), item["summary"])}
        if isinstance(item.get("summary"), str)
        else item
        for item in report["items"]
    ]
    return {**report, "items": items}
