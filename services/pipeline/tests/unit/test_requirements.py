from datetime import UTC, datetime

import pytest

from crm_pipeline.domain import pipelines as pl
from crm_pipeline.domain import requirements as req

PIPELINE = pl.default_pipeline(datetime(2026, 1, 1, tzinfo=UTC))


def stage(stage_id: str) -> dict:
    found = pl.stage_of(PIPELINE, stage_id)
    assert found is not None
    return found


def opp(**fields) -> dict:
    base = {"amount_minor": None, "quotation_minor": None, "documents": [], "approvals": [], "contact_ids": []}
    return {**base, **fields}


def test_forward_move_checks_the_stages_passed_over_and_the_target():
    stages, skipped = req.path(PIPELINE, "needs_confirmed", stage("negotiation"))
    assert [s["stage_id"] for s in stages] == ["proposal", "negotiation"]
    assert skipped == ["proposal"]
    items = req.missing(opp(), stages)
    assert [(m.stage_id, m.kind, m.item) for m in items] == [
        ("proposal", "document", "requirements"),
        ("negotiation", "field", "quotation_amount"),
    ]


def test_a_complete_opportunity_passes():
    complete = opp(documents=[{"kind": "requirements"}], quotation_minor=100, amount_minor=5)
    assert req.check(complete, PIPELINE, "initial_contact", stage("won")) == [
        "needs_confirmed",
        "proposal",
        "negotiation",
    ]


def test_backward_moves_and_losing_check_nothing():
    assert req.path(PIPELINE, "negotiation", stage("needs_confirmed")) == ([], [])
    assert req.path(PIPELINE, "initial_contact", stage("lost")) == ([], [])


def test_winning_passes_over_every_remaining_open_stage():
    stages, _ = req.path(PIPELINE, "proposal", stage("won"))
    assert [s["stage_id"] for s in stages] == ["negotiation", "won"]
    items = req.missing(opp(), stages)
    assert {(m.kind, m.item) for m in items} == {("field", "quotation_amount"), ("field", "amount")}


def test_creation_is_a_move_from_before_the_first_stage():
    stages, skipped = req.path(PIPELINE, None, stage("proposal"))
    assert [s["stage_id"] for s in stages] == ["initial_contact", "needs_confirmed", "proposal"]
    assert skipped == ["initial_contact", "needs_confirmed"]


def test_approval_requirement_reports_its_state():
    approval_stage = {**stage("negotiation"), "requirements": {"fields": [], "documents": [], "approval": True}}
    assert "not yet requested" in req.missing(opp(), [approval_stage])[0].reason
    pending = opp(approvals=[{"stage_id": "negotiation", "status": "pending"}])
    assert "waiting for a manager" in req.missing(pending, [approval_stage])[0].reason
    rejected = opp(approvals=[{"stage_id": "negotiation", "status": "rejected", "decided_by": "m1"}])
    assert "rejected by m1" in req.missing(rejected, [approval_stage])[0].reason
    assert req.missing(opp(approvals=[{"stage_id": "negotiation", "status": "approved"}]), [approval_stage]) == []


def test_refusal_lists_every_missing_item_as_field_errors():
    with pytest.raises(req.RequirementsNotMet) as caught:
        req.check(opp(), PIPELINE, "initial_contact", stage("won"))
    error = caught.value
    assert error.status == 422
    assert {e.field for e in error.errors} == {"documents", "quotation_amount", "amount"}
    assert {m["item"] for m in error.extra["missing"]} == {"requirements", "quotation_amount", "amount"}


@pytest.mark.parametrize(
    ("field", "value", "filled"),
    [
        ("contact_ids", [], False),
        ("contact_ids", ["c"], True),
        ("notes", "  ", False),
        ("notes", "x", True),
        ("amount", 0, True),
        ("expected_close_date", None, False),
    ],
)
def test_what_counts_as_filled(field, value, filled):
    stored = "amount_minor" if field == "amount" else field
    assert req.is_filled({stored: value}, field) is filled
