"""The leads service's domain rules, without I/O: keys, status moves, campaign money and periods."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from crm_leads.domain import campaigns
from crm_leads.domain import leads as rules
from crm_leads.domain.model import LeadIn, LeadStatus
from crm_platform.auth import Principal
from crm_platform.errors import Conflict, ValidationFailed

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
REP = Principal(user_id="rep-1", name="李雷", roles=frozenset({"rep"}), department_id="t1", department_path="/hq/t1")


def lead(**fields: Any) -> dict[str, Any]:
    data = LeadIn.model_validate({"company_name": "ACME Co., Ltd.", **fields})
    return rules.new_lead("lead-1", data, REP, NOW)


def test_a_lead_holds_its_name_phones_and_emails_and_a_deleted_one_none() -> None:
    doc = lead(phones=["139 1234 5678", "+86 139 1234 5678", "021 6234 5678"], emails=["A@Example.com"])
    assert doc["phones"] == ["+8613912345678", "+862162345678"]
    assert rules.keys_of(doc) == {
        "name:acme": "company_name",
        "phones:+8613912345678": "phones[0]",
        "phones:+862162345678": "phones[1]",
        "emails:a@example.com": "emails[0]",
    }
    assert rules.keys_of({**doc, "deleted": True}) == {}
    assert rules.keys_of(None) == {}


def test_a_persons_name_is_no_company_name() -> None:
    assert rules.customer_keys("person", "张三", ["+8613912345678"], []) == {"phones:+8613912345678"}
    assert rules.customer_keys("company", "ACME Company Limited", [], ["x@y.cn"]) == {"name:acme", "emails:x@y.cn"}


@pytest.mark.parametrize(
    "start,to,ok",
    [
        (LeadStatus.new, LeadStatus.contacted, True),
        (LeadStatus.contacted, LeadStatus.qualified, True),
        (LeadStatus.qualified, LeadStatus.contacted, False),
        (LeadStatus.disqualified, LeadStatus.new, True),
        (LeadStatus.disqualified, LeadStatus.qualified, False),
        (LeadStatus.new, LeadStatus.new, False),
    ],
)
def test_status_moves(start: LeadStatus, to: LeadStatus, ok: bool) -> None:
    doc = {**lead(), "status": start.value}
    if ok:
        assert rules.move(doc, to, None) == start and doc["status"] == to.value
    else:
        with pytest.raises(Conflict):
            rules.move(doc, to, None)


def test_disqualifying_needs_a_reason_and_reopening_clears_it() -> None:
    doc = lead()
    with pytest.raises(ValidationFailed) as refused:
        rules.move(doc, LeadStatus.disqualified, None)
    assert refused.value.errors[0].field == "reason"
    rules.move(doc, LeadStatus.disqualified, "没有预算")
    assert doc["disqualified_reason"] == "没有预算"
    rules.move(doc, LeadStatus.new, None)
    assert doc["disqualified_reason"] is None


def plan(**fields: Any) -> dict[str, Any]:
    data = campaigns.CampaignIn.model_validate(
        {
            "name": "春季展会",
            "channel": "exhibition",
            "budget": {"amount": "1000", "currency": "CNY"},
            "start_date": "2026-03-01",
            "end_date": "2026-03-03",
            **fields,
        }
    )
    doc = campaigns.new_campaign("c-1", data, REP, NOW)
    doc["version"] = 1
    return doc


def test_costs_add_up_exactly_in_decimals() -> None:
    doc = plan()
    for _ in range(3):
        campaigns.add_cost(doc, campaigns.CostIn(amount="0.10", date=date(2026, 3, 2)), REP, NOW)
    assert doc["cost_total"] == {"amount": "0.30", "currency": "CNY"}  # 0.1 + 0.1 + 0.1, not 0.30000000000000004
    with pytest.raises(ValidationFailed):
        campaigns.add_cost(doc, campaigns.CostIn(amount="1", currency="USD", date=date(2026, 3, 2)), REP, NOW)
    assert doc["s"]["start_date"] == 20260301


def test_a_patch_keeps_the_period_whole_and_the_lifecycle_forward() -> None:
    doc = plan()
    with pytest.raises(ValidationFailed) as refused:
        campaigns.apply_patch(doc, campaigns.CampaignPatch(start_date=date(2026, 4, 1)))
    assert refused.value.errors[0].field == "start_date"
    changes = campaigns.apply_patch(doc, campaigns.CampaignPatch(status=campaigns.CampaignStatus.active))
    assert [(c.field, c.old, c.new) for c in changes] == [("status", "planned", "active")]
    campaigns.apply_patch(doc, campaigns.CampaignPatch(status=campaigns.CampaignStatus.cancelled))
    with pytest.raises(Conflict):
        campaigns.apply_patch(doc, campaigns.CampaignPatch(status=campaigns.CampaignStatus.active))
