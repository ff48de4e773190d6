"""Lead scoring's domain rules, without I/O: facts, rule validation and evaluation, features, training
and the reasons a prediction gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from crm_leads.domain.scoring import (
    Rule,
    RulesIn,
    Sample,
    Scorer,
    TooLittleHistory,
    combine,
    evaluate,
    facts,
    features,
    predict,
    rule_errors,
    train,
)

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def lead(**fields: Any) -> dict[str, Any]:
    return {
        "_id": "lead-1",
        "company_name": "ACME",
        "phones": [],
        "emails": [],
        "status": "new",
        "created_at": NOW - timedelta(days=10),
        **fields,
    }


def rule(field: str, op: str, value: Any, points: int, label: str | None = None) -> Rule:
    return Rule(field=field, op=op, value=value, points=points, label=label or f"{field} {op}")  # type: ignore[arg-type]


def test_facts_read_fields_and_activity_with_defaults_before_activity_exists() -> None:
    fact = facts(lead(source="referral", phones=["+8613912345678"], contact_name="王"), NOW)
    assert fact["source"] == "referral" and fact["has_phone"] and not fact["has_email"] and fact["has_contact_name"]
    assert fact["followup_count"] == 0 and fact["days_since_last_followup"] is None
    assert fact["days_since_created"] == 10
    later = facts(lead(followup_count=4, last_followup_at=NOW - timedelta(days=3, hours=1)), NOW)
    assert later["followup_count"] == 4 and later["days_since_last_followup"] == 3
    as_ms = facts(lead(last_followup_at=int((NOW - timedelta(days=2)).timestamp() * 1000)), NOW)
    assert as_ms["days_since_last_followup"] == 2
    naive = facts(lead(created_at=(NOW - timedelta(days=1)).replace(tzinfo=None)), NOW)
    assert naive["days_since_created"] == 1


def test_each_op_matches_as_documented() -> None:
    fact = facts(
        lead(source="referral", region="华东", followup_count=3, last_followup_at=NOW - timedelta(days=5)), NOW
    )
    result = evaluate(
        [
            rule("source", "in", ["referral", "partner"], 20, "Referral"),
            rule("source", "eq", "web", 50, "Web"),
            rule("region", "eq", "华东", 10, "East"),
            rule("industry", "exists", False, 5, "No industry"),
            rule("industry", "exists", True, 5, "Industry"),
            rule("has_phone", "eq", False, -10, "No phone"),
            rule("followup_count", "gte", 3, 15, "Worked"),
            rule("days_since_last_followup", "lte", 4, 30, "Recent"),
            rule("days_since_created", "lte", 30, 5, "Fresh"),
        ],
        fact,
    )
    assert [(r.label, r.points) for r in result.reasons] == [
        ("Referral", 20),
        ("East", 10),
        ("No industry", 5),
        ("No phone", -10),
        ("Worked", 15),
        ("Fresh", 5),
    ]
    assert result.score == 45


def test_the_score_is_held_within_0_and_100() -> None:
    fact = facts(lead(source="referral"), NOW)
    assert evaluate([rule("source", "eq", "referral", 80), rule("has_phone", "eq", False, 70)], fact).score == 100
    assert evaluate([rule("source", "eq", "referral", -80)], fact).score == 0
    assert evaluate([], fact).score == 0 and evaluate([], fact).reasons == []


def test_a_rule_whose_op_or_value_does_not_fit_its_field_is_named() -> None:
    errors = rule_errors(
        [
            rule("source", "eq", "web", 1),
            rule("source", "gte", 3, 1),
            rule("has_email", "in", ["x"], 1),
            rule("followup_count", "gte", "three", 1),
            rule("source", "in", [], 1),
            rule("industry", "exists", "yes", 1),
            rule("has_phone", "eq", 1, 1),
            rule("followup_count", "eq", True, 1),
            rule("followup_count", "lte", 10**30, 1),
            rule("region", "in", ["x" * 201], 1),
        ]
    )
    assert [e.field for e in errors] == [
        "rules[1].op",
        "rules[2].op",
        "rules[3].value",
        "rules[4].value",
        "rules[5].value",
        "rules[6].value",
        "rules[7].value",
        "rules[8].value",
        "rules[9].value",
    ]
    assert "allowed: eq, in, exists" in errors[0].reason


def test_unknown_fields_ops_and_points_out_of_range_are_refused_by_the_model() -> None:
    with pytest.raises(ValidationError) as caught:
        RulesIn.model_validate(
            {
                "rules": [
                    {"field": "source", "op": "eq", "value": "web", "points": 5, "label": "ok"},
                    {"field": "colour", "op": "eq", "value": "x", "points": 5, "label": "x"},
                    {"field": "source", "op": "like", "value": "x", "points": 5, "label": "x"},
                    {"field": "source", "op": "eq", "value": "x", "points": 500, "label": "x"},
                ]
            }
        )
    assert {tuple(e["loc"]) for e in caught.value.errors()} == {
        ("rules", 1, "field"),
        ("rules", 2, "op"),
        ("rules", 3, "points"),
    }


def test_features_are_one_hot_for_categories_and_numbers_as_they_are() -> None:
    fact = facts(lead(source="web", industry="制造", emails=["a@b.cn"], followup_count=2, status="converted"), NOW)
    assert features(fact) == {
        "source=web": 1.0,
        "industry=制造": 1.0,
        "has_phone": 0.0,
        "has_email": 1.0,
        "has_contact_name": 0.0,
        "followup_count": 2.0,
    }


def history(n: int, seed: int = 7) -> list[Sample]:
    """Referrals and worked leads convert; purchased lists do not (with some noise)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        good = i % 2 == 0
        source = "referral" if good == (rnd.random() < 0.85) else "purchased_list"
        fact = facts(lead(source=source, followup_count=rnd.randint(2, 6) if good else rnd.randint(0, 2)), NOW)
        out.append(Sample(features(fact), good))
    return out


def test_too_little_history_says_how_many_there_are_and_are_needed() -> None:
    with pytest.raises(TooLittleHistory) as caught:
        train(history(40), min_per_class=30)
    assert caught.value.counts == {"converted": 20, "disqualified": 20} and caught.value.needed == 30
    assert "20 converted and 20 disqualified" in str(caught.value)


def test_a_trained_model_explains_a_prediction_by_the_features_that_matter() -> None:
    model = train(history(120), min_per_class=30)
    assert model.samples == {"converted": 60, "disqualified": 60}
    assert model.cv_auc > 0.8 and 0 < model.cv_accuracy <= 1 and model.folds == 5
    stored = {**model.as_document(), "version": 1}
    coef = dict(zip(model.feature_names, model.coefficients, strict=True))
    assert coef["source=referral"] > 0 > coef["source=purchased_list"] and coef["followup_count"] > 0
    good = predict(stored, facts(lead(source="referral", followup_count=5), NOW))
    bad = predict(stored, facts(lead(source="purchased_list"), NOW))
    assert good.probability > 0.7 > 0.3 > bad.probability
    assert {r.feature for r in good.reasons[:2]} == {"source=referral", "followup_count"}
    assert all(r.contribution > 0 for r in good.reasons[:2])
    assert bad.reasons[0].feature == "source=purchased_list" and bad.reasons[0].contribution < 0
    # A category the model never saw gives no reason and no weight.
    unseen = predict(stored, facts(lead(source="exhibition"), NOW))
    assert "source=exhibition" not in {r.feature for r in unseen.reasons}


def test_the_stored_score_combines_rules_and_model_and_records_its_basis() -> None:
    assert combine(40, None) == 40
    model = train(history(120), min_per_class=30)
    scorer = Scorer(
        rules=[rule("source", "eq", "referral", 40, "Referral")],
        model={**model.as_document(), "version": 2},
        rules_version=3,
        model_version=2,
    )
    doc = scorer.stamp(lead(source="referral", followup_count=5, s={"id": "lead-1"}), NOW)
    _, by_rules, by_model = scorer.score(doc, NOW)
    assert by_model is not None and by_rules.score == 40
    assert doc["score"] == round((40 + 100 * by_model.probability) / 2) == doc["s"]["score"]
    assert doc["score_basis"] == "r3-m2"
