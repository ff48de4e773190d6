"""The lead's side of a conversion, without I/O: which statuses convert, the conversion's states,
and what a converting or converted lead refuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from crm_leads.domain import conversion as conv
from crm_leads.domain import leads as rules
from crm_leads.domain.model import LeadIn, LeadStatus
from crm_platform.auth import Principal
from crm_platform.contracts import leads as ev
from crm_platform.errors import Conflict

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
REP = Principal(user_id="rep-1", roles=frozenset({"rep"}), department_id="t1", department_path="/hq/t1")


def lead(status: LeadStatus = LeadStatus.qualified, **fields: Any) -> dict[str, Any]:
    doc = rules.new_lead("lead-1", LeadIn.model_validate({"company_name": "ACME Co., Ltd.", **fields}), REP, NOW)
    doc["status"] = status.value
    return doc


def command(attempt: int = 1, opportunity: bool = False) -> ev.Conversion:
    return ev.Conversion(
        conversion_id=conv.conversion_id("lead-1", attempt),
        customer_id="c-1",
        existing_customer=False,
        customer_name="ACME",
        owner_id="rep-1",
        contact=ev.ConversionContact(contact_id="k-1", name="王"),
        opportunity=ev.ConversionOpportunity(opportunity_id="o-1", name="首单") if opportunity else None,
        requested_by="rep-1",
        requested_at=NOW,
    )


@pytest.mark.parametrize("status", [s for s in LeadStatus if s != LeadStatus.qualified])
def test_only_a_qualified_lead_converts(status: LeadStatus) -> None:
    with pytest.raises(Conflict):
        conv.start(lead(status), command(), 1, NOW)


def test_a_patch_never_sets_a_conversion_status_and_a_converted_lead_moves_no_more() -> None:
    for to in (LeadStatus.converting, LeadStatus.converted):
        with pytest.raises(Conflict, match="convert"):
            rules.move(lead(), to, None)
    converted = {**lead(LeadStatus.converted), "customer_id": "c-9"}
    for to in (LeadStatus.qualified, LeadStatus.disqualified, LeadStatus.new):
        with pytest.raises(Conflict, match="converted into customer c-9"):
            rules.move(converted, to, "x")
    with pytest.raises(Conflict, match="being converted"):
        rules.move(lead(LeadStatus.converting), LeadStatus.qualified, None)
    assert rules.MOVES[LeadStatus.converted] == set()
    assert rules.MOVES[LeadStatus.converting] == {LeadStatus.converted, LeadStatus.qualified}


def test_a_conversion_without_an_opportunity_ends_converted_with_the_links() -> None:
    doc = lead(contact_name="王经理")
    conv.start(doc, command(), 1, NOW)
    assert doc["status"] == "converting" and doc["conversion"]["state"] == "requested"
    assert conv.current(doc, "lead-1:1", conv.ConversionState.requested) is not None
    assert conv.current(doc, "lead-1:2", conv.ConversionState.requested) is None  # another attempt's
    assert conv.current(doc, "lead-1:1", conv.ConversionState.customer_done) is None
    with pytest.raises(Conflict):
        rules.ensure_open(doc)
    conv.finish(doc, NOW)
    assert doc["status"] == "converted" and doc["customer_id"] == "c-1" and doc["contact_id"] == "k-1"
    assert doc["opportunity_id"] is None and doc["conversion"]["state"] == "converted"
    assert conv.current(doc, "lead-1:1", conv.ConversionState.requested) is None  # applied: a redelivery is a no-op
    snapshot = rules.snapshot(doc)
    assert snapshot.customer_id == "c-1" and snapshot.contact_id == "k-1" and snapshot.status == "converted"
    with pytest.raises(Conflict, match="already converted into customer c-1"):
        conv.ensure_convertible(doc)


def test_with_an_opportunity_the_customer_step_comes_first_and_a_refusal_makes_it_qualified_again() -> None:
    doc = lead()
    conv.start(doc, command(opportunity=True), 1, NOW)
    conv.customer_done(doc, "c-1", "k-1", NOW)
    assert doc["status"] == "converting" and doc["conversion"]["state"] == "customer_done"
    assert conv.command_of(doc).opportunity is not None
    conv.fail(doc, "opportunity", "no such pipeline", [{"field": "pipeline_id", "reason": "unknown"}], NOW)
    assert doc["status"] == "qualified" and doc["conversion"]["state"] == "failed"
    assert doc["conversion"]["reason"] == "no such pipeline" and doc.get("customer_id") is None
    conv.start(doc, command(attempt=2), 2, NOW)  # a new attempt
    assert doc["conversion"]["conversion_id"] == "lead-1:2" and doc["conversion_attempts"] == 2


def test_the_default_contact_is_the_leads_and_the_body_is_strict() -> None:
    assert conv.default_contact(lead()) is None
    contact = conv.default_contact(lead(contact_name="王经理", phones=["139 1234 5678"]))
    assert contact is not None and contact.name == "王经理" and contact.phones == ["+8613912345678"]
    with pytest.raises(ValidationError):
        conv.ConvertIn.model_validate({"customer": {"uscc": "x"}})
    with pytest.raises(ValidationError):
        conv.ConvertIn.model_validate({"opportunity": {"name": "x", "amount": "1.234"}})
    body = conv.ConvertIn.model_validate({"contact": None})
    assert "contact" in body.model_fields_set and body.contact is None
