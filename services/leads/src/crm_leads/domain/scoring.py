"""Lead scoring's rules (no I/O): what a lead's facts are, the administrator's rules over them, the
model's features, training a logistic regression on the organisation's history, and the reasons.

A score is always explained. Rules: the labels and points of the rules that matched. Model: the
features that pushed the probability most, each with its signed contribution in log-odds
(coefficient x value: a logistic regression is a sum, so the parts are the explanation).

The model is kept as data (coefficients, intercept, feature names), never a pickle, so every
replica scores with it and a reader can see what it learnt.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_platform.errors import FieldError

Document = dict[str, Any]

# --- facts ------------------------------------------------------------------------------------

CATEGORICAL = ("source", "campaign_id", "region", "industry", "status")
BOOLEAN = ("has_phone", "has_email", "has_contact_name")
NUMERIC = ("followup_count", "days_since_last_followup", "days_since_created")
RuleField = Literal[
    "source",
    "campaign_id",
    "region",
    "industry",
    "status",
    "has_phone",
    "has_email",
    "has_contact_name",
    "followup_count",
    "days_since_last_followup",
    "days_since_created",
]
RuleOp = Literal["eq", "in", "exists", "gte", "lte"]
OPS: dict[str, tuple[str, ...]] = {
    **{f: ("eq", "in", "exists") for f in CATEGORICAL},
    **{f: ("eq",) for f in BOOLEAN},
    **{f: ("eq", "gte", "lte", "exists") for f in NUMERIC},
}
MAX_RULES = 100


def _moment(value: Any) -> datetime | None:
    """A stored moment (datetime, epoch ms or ISO text: the activity fields come from another
    change) as an aware datetime; None when absent or unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            return _moment(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _days(since: datetime | None, now: datetime) -> int | None:
    return None if since is None else max(0, (now - since).days)


def facts(doc: Document, now: datetime) -> Document:
    """What rules and the model see of a stored lead. Activity (``followup_count``,
    ``last_followup_at``) may be absent: 0 follow-ups, never followed up."""
    return {
        **{f: doc.get(f) or None for f in CATEGORICAL},
        "has_phone": bool(doc.get("phones")),
        "has_email": bool(doc.get("emails")),
        "has_contact_name": bool(doc.get("contact_name")),
        "followup_count": int(doc.get("followup_count") or 0),
        "days_since_last_followup": _days(_moment(doc.get("last_followup_at")), now),
        "days_since_created": _days(_moment(doc.get("created_at")), now) or 0,
    }


# --- rules ------------------------------------------------------------------------------------


class Rule(BaseModel):
    """One condition on a lead's fact and the points it gives (negative points take away)."""

    model_config = ConfigDict(extra="forbid")

    field: RuleField
    op: RuleOp
    value: Any = Field(
        description="eq: a text (categorical), true/false (has_*) or a number; in: a list of texts; "
        "exists: true/false; gte/lte: a number."
    )
    points: int = Field(ge=-100, le=100)
    label: str = Field(min_length=1, max_length=200)


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(max_length=MAX_RULES)


MAX_NUMBER = 1_000_000_000
MAX_TEXT = 200


def _is_number(value: Any) -> bool:
    """A JSON number a rule may compare with (bounded: the rule set is stored, and BSON's integers are 64-bit)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) <= MAX_NUMBER if isinstance(value, int) else math.isfinite(value) and abs(value) <= MAX_NUMBER


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_TEXT


def _value_error(rule: Rule) -> str | None:
    """Why ``rule.value`` does not fit its field and op (None: it fits)."""
    v = rule.value
    if rule.op == "exists":
        return None if isinstance(v, bool) else "must be true or false with op exists"
    if rule.op == "in":
        if not isinstance(v, list) or not v or len(v) > 100:
            return "must be a list of 1 to 100 texts with op in"
        if not all(_is_text(x) for x in v):
            return f"every item must be a non-blank text of at most {MAX_TEXT} characters"
        return None
    if rule.field in CATEGORICAL:
        return None if _is_text(v) else f"must be a non-blank text of at most {MAX_TEXT} characters"
    if rule.field in BOOLEAN:
        return None if isinstance(v, bool) else "must be true or false"
    return None if _is_number(v) else f"must be a number between -{MAX_NUMBER} and {MAX_NUMBER}"


def rule_errors(rules: Sequence[Rule]) -> list[FieldError]:
    """Every rule whose op does not apply to its field, or whose value does not fit (``rules[3].op``)."""
    errors: list[FieldError] = []
    for i, rule in enumerate(rules):
        allowed = OPS[rule.field]
        if rule.op not in allowed:
            reason = f"{rule.op} does not apply to {rule.field} (allowed: {', '.join(allowed)})"
            errors.append(FieldError(field=f"rules[{i}].op", reason=reason))
            continue
        problem = _value_error(rule)
        if problem:
            errors.append(FieldError(field=f"rules[{i}].value", reason=problem))
    return errors


def matches(rule: Rule, fact: Document) -> bool:
    value = fact.get(rule.field)
    if rule.op == "exists":
        return (value is not None) == bool(rule.value)
    if value is None:
        return False
    if rule.op == "eq":
        return bool(value == rule.value)
    if rule.op == "in":
        return value in rule.value
    if rule.op == "gte":
        return bool(value >= rule.value)
    return bool(value <= rule.value)


class Reason(BaseModel):
    label: str
    points: int


class RulesScore(BaseModel):
    score: int = Field(description="The points of the matching rules, summed and held within 0..100.")
    reasons: list[Reason]


def evaluate(rules: Sequence[Rule], fact: Document) -> RulesScore:
    reasons = [Reason(label=r.label, points=r.points) for r in rules if matches(r, fact)]
    return RulesScore(score=max(0, min(100, sum(r.points for r in reasons))), reasons=reasons)


# --- the model --------------------------------------------------------------------------------

#: What the model learns from: the lead's own fields and its activity count. ``status`` is left out
#: (it is the outcome), and so are the day counts: history is read long after the fact, so its
#: day counts say when it was entered, not how it was worked.
MODEL_CATEGORICAL = ("source", "campaign_id", "region", "industry")
MODEL_NUMERIC = ("has_phone", "has_email", "has_contact_name", "followup_count")
POSITIVE, NEGATIVE = "converted", "disqualified"
MAX_REASONS = 5


def features(fact: Document) -> dict[str, float]:
    """One-hot for the categorical facts (``source=referral``), numbers as they are, flags as 0/1."""
    out: dict[str, float] = {}
    for name in MODEL_CATEGORICAL:
        if fact.get(name):
            out[f"{name}={fact[name]}"] = 1.0
    for name in MODEL_NUMERIC:
        out[name] = float(fact.get(name) or 0)
    return out


class TooLittleHistory(Exception):
    def __init__(self, counts: dict[str, int], needed: int) -> None:
        self.counts = counts
        self.needed = needed
        super().__init__(
            f"{counts[POSITIVE]} converted and {counts[NEGATIVE]} disqualified leads; at least {needed} of each "
            "are needed to train a model."
        )


@dataclass
class Sample:
    features: dict[str, float]
    converted: bool


@dataclass
class TrainedModel:
    feature_names: list[str]
    coefficients: list[float]
    intercept: float
    samples: dict[str, int]
    cv_auc: float
    cv_accuracy: float
    folds: int
    classes: list[str] = field(default_factory=lambda: [NEGATIVE, POSITIVE])

    def as_document(self) -> Document:
        return {
            "feature_names": self.feature_names,
            "coefficients": self.coefficients,
            "intercept": self.intercept,
            "classes": self.classes,
            "samples": self.samples,
            "cv_auc": self.cv_auc,
            "cv_accuracy": self.cv_accuracy,
            "folds": self.folds,
        }


def vocabulary(samples: Sequence[Sample], min_count: int) -> list[str]:
    """The features the model gets: every numeric one, and each category seen at least ``min_count``
    times (a campaign with two leads teaches nothing and would only be noise)."""
    seen: Counter[str] = Counter(name for s in samples for name in s.features if "=" in name)
    return [*MODEL_NUMERIC, *sorted(name for name, n in seen.items() if n >= min_count)]


def train(samples: Sequence[Sample], min_per_class: int, min_category_count: int = 3) -> TrainedModel:
    """A logistic regression of converted (1) against disqualified (0), with its cross-validated
    AUC and accuracy. CPU work: run it off the event loop."""
    counts = {POSITIVE: sum(s.converted for s in samples), NEGATIVE: sum(not s.converted for s in samples)}
    if min(counts.values()) < min_per_class:
        raise TooLittleHistory(counts, min_per_class)
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate

    names = vocabulary(samples, min_category_count)
    x = np.array([[s.features.get(n, 0.0) for n in names] for s in samples], dtype=float)
    y = np.array([1 if s.converted else 0 for s in samples])
    folds = max(2, min(5, min(counts.values())))
    model = LogisticRegression(C=1.0, max_iter=2000)
    scores = cross_validate(
        model, x, y, cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=0), scoring=("roc_auc", "accuracy")
    )
    model.fit(x, y)
    return TrainedModel(
        feature_names=names,
        coefficients=[round(float(c), 6) for c in model.coef_[0]],
        intercept=round(float(model.intercept_[0]), 6),
        samples=counts,
        cv_auc=round(float(np.mean(scores["test_roc_auc"])), 4),
        cv_accuracy=round(float(np.mean(scores["test_accuracy"])), 4),
        folds=folds,
    )


class Contribution(BaseModel):
    feature: str = Field(description="e.g. source=referral, followup_count.")
    value: float
    contribution: float = Field(description="Signed, in log-odds: coefficient x value.")


class ModelScore(BaseModel):
    probability: float = Field(description="Of converting, by the model trained on the organisation's history.")
    reasons: list[Contribution]


def predict(model: Document, fact: Document) -> ModelScore:
    """The probability the stored ``model`` gives the lead, and the features that pushed it most."""
    values = features(fact)
    parts = [
        Contribution(feature=name, value=values[name], contribution=round(coef * values[name], 4))
        for name, coef in zip(model["feature_names"], model["coefficients"], strict=True)
        if values.get(name) and coef
    ]
    z = float(model["intercept"]) + sum(p.contribution for p in parts)
    probability = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
    parts.sort(key=lambda p: (-abs(p.contribution), p.feature))
    return ModelScore(probability=round(probability, 4), reasons=parts[:MAX_REASONS])


# --- the score --------------------------------------------------------------------------------


def combine(rules_score: int, model: ModelScore | None) -> int:
    """The stored score: the rules' alone, or with a model the mean of the rules' score and the
    model's probability in percent (both 0..100)."""
    if model is None:
        return rules_score
    return round((rules_score + 100 * model.probability) / 2)


@dataclass
class Scorer:
    """The rules and model in force, and the basis they form (``r<rules version>-m<model version>``):
    a lead scored on this basis needs no re-score."""

    rules: list[Rule]
    model: Document | None
    rules_version: int = 0
    model_version: int = 0

    @property
    def basis(self) -> str:
        return f"r{self.rules_version}-m{self.model_version}"

    def score(self, doc: Document, now: datetime) -> tuple[int, RulesScore, ModelScore | None]:
        fact = facts(doc, now)
        by_rules = evaluate(self.rules, fact)
        by_model = predict(self.model, fact) if self.model else None
        return combine(by_rules.score, by_model), by_rules, by_model

    def stamp(self, doc: Document, now: datetime) -> Document:
        """Store the lead's score on it, with its sort key and the basis it was computed on."""
        score, _, _ = self.score(doc, now)
        doc["score"] = score
        doc["score_basis"] = self.basis
        doc.setdefault("s", {})["score"] = score
        return doc
