"""A customer whose hidden fields the customers service left out still renders (StrictUndefined)."""

from __future__ import annotations

from crm_console.records import complete_customer, complete_page


def test_left_out_fields_are_filled_empty_and_present_ones_kept() -> None:
    contact = {"contact_id": "k1", "name": "王", "emails": ["w@x.cn"]}
    sent = {"id": "c1", "name": "甲", "tier": "A", "contacts": [contact]}
    customer = complete_customer(sent)
    assert customer["phones"] == [] and customer["address"] is None and customer["tier"] == "A"
    assert customer["contacts"][0]["phones"] == [] and customer["contacts"][0]["emails"] == ["w@x.cn"]
    assert customer["contacts"][0]["title"] is None
    page = complete_page({"items": [{"id": "c2", "name": "乙", "phones": ["+8613800138000"]}]})
    assert page["items"][0]["phones"] == ["+8613800138000"] and page["items"][0]["emails"] == []
