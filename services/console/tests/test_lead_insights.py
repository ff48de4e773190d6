"""Browser journeys of what the leads work added to the lead and campaign pages, against the real
leads, interactions, reporting and directory services: a lead's score with the rules' reasons and
its follow-ups, the leads list ordered by score, a campaign's figures from the reports, and its
web-to-lead form turned on (the key shown once), rotated and turned off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique


def phone() -> str:
    return f"138{int(unique('')[-8:], 16) % 10**8:08d}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_scoring_rule(stack: Stack, token: str, rule: dict[str, Any]) -> None:
    """Append a rule to the organisation's rule set (If-Match; again on a 412 from another writer)."""
    async with httpx.AsyncClient(base_url=stack.urls["leads"], headers=bearer(token)) as leads:
        for _ in range(10):
            current = await leads.get("/v1/leads/scoring/rules")
            assert current.status_code == 200, current.text
            body = {"rules": [*current.json()["rules"], rule]}
            if_match = {"If-Match": current.headers["ETag"]}
            answer = await leads.put("/v1/leads/scoring/rules", json=body, headers=if_match)
            if answer.status_code != 412:
                assert answer.status_code == 200, answer.text
                return
    raise AssertionError("the scoring rules kept changing under the test")


async def new_lead(stack: Stack, token: str, **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.urls["leads"]) as leads:
        body = {"phones": [phone()], **fields}
        answer = await leads.post("/v1/leads", json=body, headers=bearer(token))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def log_follow_up(stack: Stack, token: str, lead_id: str) -> None:
    """A phone call on the lead, once the interactions service knows the lead (from its events)."""
    body = {
        "channel": "phone",
        "lead_id": lead_id,
        "direction": "out",
        "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "key_points": "预算已批",
    }
    async with httpx.AsyncClient(base_url=stack.urls["interactions"]) as interactions:

        async def logged() -> bool:
            answer = await interactions.post("/v1/interactions", json=body, headers=bearer(token))
            assert answer.status_code in (201, 422), answer.text
            return answer.status_code == 201

        await eventually(logged, timeout=30, interval=0.3, message="the interactions service knows the lead")


async def test_a_leads_score_with_its_reasons_follow_ups_and_the_list_by_score(
    page: Any, stack: Stack, user: User
) -> None:
    marker = unique("score")
    admin = await stack.new_user(roles=["admin"])
    label = f"Region {marker}"
    await add_scoring_rule(
        stack,
        await stack.token_for(admin),
        {"field": "region", "op": "eq", "value": marker, "points": 35, "label": label},
    )
    token = await stack.token_for(user)
    hot = await new_lead(stack, token, company_name=f"杭州热线索 {marker}", region=marker, source="referral")
    cold = await new_lead(stack, token, company_name=f"宁波冷线索 {marker}", region=f"elsewhere-{marker}")
    await log_follow_up(stack, token, hot["id"])

    await sign_in(page, user)
    await page.wait_for_url("**/")
    await page.goto(f"/leads/{hot['id']}")

    async def followed_up() -> bool:
        await page.reload()
        return await page.locator("#followup-count").inner_text() == "1"

    await eventually(followed_up, timeout=30, interval=0.5, message="the lead counts its follow-up")
    await expect(page.locator("#last-followup time")).to_be_visible()
    await expect(page.locator("#score-rules")).to_contain_text(f"{label}: +35")
    score = int(await page.locator("#lead-score").inner_text())
    assert score >= 35
    await expect(page.locator("#score-no-model")).to_have_text("No model trained yet: the score is the rules' points.")
    await screenshot(page, "leads-score")

    # The list: a Score column, and ordered by it (this rep's leads are these two).
    await page.goto("/leads")
    await page.get_by_label("Order").select_option("-score")
    await page.get_by_role("button", name="Apply").click()
    rows = page.locator("#leads tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text(hot["company_name"])
    await expect(rows.nth(1)).to_contain_text(cold["company_name"])
    await expect(page.locator(f"#lead-{hot['id']} td.score")).to_have_text(str(score))
    await screenshot(page, "leads-by-score")
    await page.get_by_label("Order").select_option("score")
    await page.get_by_role("button", name="Apply").click()
    await expect(rows.nth(0)).to_contain_text(cold["company_name"])

    # In Chinese, the same section.
    zh = await stack.new_user(language="zh-CN")
    await page.context.clear_cookies()
    await sign_in(page, zh)
    await page.wait_for_url("**/")
    mine = await new_lead(stack, await stack.token_for(zh), company_name=f"苏州线索 {marker}", region=marker)
    await page.goto(f"/leads/{mine['id']}")
    await expect(page.locator("#h-score")).to_have_text("线索评分")
    await expect(page.locator("#followup-count")).to_have_text("0")
    await expect(page.locator("#last-followup")).to_have_text("尚未跟进")
    await expect(page.locator("#score-rules")).to_contain_text(f"{label}: +35")


async def plan_campaign(stack: Stack, token: str, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.urls["leads"], headers=bearer(token)) as leads:
        body = {
            "name": name,
            "channel": "exhibition",
            "budget": {"amount": "10000", "currency": "CNY"},
            "start_date": "2026-03-01",
            "end_date": "2026-12-31",
        }
        answer = await leads.post("/v1/campaigns", json=body)
        assert answer.status_code == 201, answer.text
        campaign: dict[str, Any] = answer.json()
        active = await leads.patch(
            f"/v1/campaigns/{campaign['id']}", json={"status": "active"}, headers={"If-Match": answer.headers["ETag"]}
        )
        assert active.status_code == 200, active.text
        cost = await leads.post(f"/v1/campaigns/{campaign['id']}/costs", json={"amount": "3000", "date": "2026-03-01"})
        assert cost.status_code in (200, 201), cost.text
    return campaign


async def qualify(stack: Stack, token: str, lead: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=stack.urls["leads"], headers=bearer(token)) as leads:
        version = lead["version"]
        for status in ("contacted", "qualified"):
            answer = await leads.patch(
                f"/v1/leads/{lead['id']}", json={"status": status}, headers={"If-Match": f'"{version}"'}
            )
            assert answer.status_code == 200, answer.text
            version = answer.json()["version"]


async def test_a_campaigns_figures_and_its_web_form_key_shown_once_rotated_and_off(page: Any, stack: Stack) -> None:
    marker = unique("camp")
    manager = await stack.new_user(roles=["manager"])
    token = await stack.token_for(manager)
    campaign = await plan_campaign(stack, token, f"2026 秋季展会 {marker}")
    first = await new_lead(stack, token, company_name=f"常州精工 {marker}", campaign_id=campaign["id"])
    await new_lead(stack, token, company_name=f"无锡机电 {marker}", campaign_id=campaign["id"])
    await qualify(stack, token, first)

    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.goto(f"/campaigns/{campaign['id']}")

    async def counted() -> bool:
        await page.reload()
        figures = page.locator("#fig-leads")
        return await figures.count() == 1 and await figures.inner_text() == "2"

    await eventually(counted, timeout=30, interval=0.5, message="the reports count the campaign's two leads")
    await expect(page.locator("#fig-qualified")).to_have_text("1 (50.0%)")
    await expect(page.locator("#fig-cost")).to_have_text("3000.00 CNY")
    await expect(page.locator("#fig-cpl")).to_have_text("1500.00 CNY")
    await expect(page.locator("#fig-roi")).to_have_text("-100.0%")

    # The web form: off; turned on, the key and the address shown this once.
    await expect(page.locator("#web-form-status")).to_have_text("Off.")
    await page.get_by_role("button", name="Turn the web form on").click()
    await expect(page.locator("#done")).to_have_text("Web form on with a new key.")
    key = await page.locator("#web-form-key-value").inner_text()
    url = await page.locator("#web-form-url").inner_text()
    assert key and url == f"{stack.urls['leads']}/v1/web-to-lead/{key}"
    await screenshot(page, "campaigns-web-form")
    async with httpx.AsyncClient() as website:
        form = {"company": f"镇江模具 {marker}", "phone": phone(), "name": "李工"}
        assert (await website.post(url, data=form)).status_code == 202

    # Read again: on, with the lead it made, and the key no longer shown.
    await page.goto(f"/campaigns/{campaign['id']}")
    await expect(page.locator("#web-form-key")).to_have_count(0)
    await expect(page.locator("#web-form-status")).to_contain_text("On since")
    await expect(page.locator("#web-form-counts")).to_contain_text("Leads made: 1")

    # Rotated: a new key, and the old one stops working.
    await page.get_by_role("button", name="Rotate the key").click()
    rotated = await page.locator("#web-form-key-value").inner_text()
    assert rotated and rotated != key
    async with httpx.AsyncClient() as website:
        old = await website.post(url, data={"company": f"旧密钥 {marker}", "phone": phone()})
        assert old.status_code == 404

    # Off.
    await page.get_by_role("button", name="Turn the web form off").click()
    await expect(page.locator("#done")).to_have_text("Web form off: its key no longer works.")
    await expect(page.locator("#web-form-status")).to_have_text("Off.")
    await expect(page.locator("#web-form-disable")).to_have_count(0)

    # A rep sees the figures and whether the form is on, but no button to change it.
    rep = await stack.new_user()
    await page.context.clear_cookies()
    await sign_in(page, rep)
    await page.wait_for_url("**/")
    await page.goto(f"/campaigns/{campaign['id']}")
    await expect(page.locator("#web-form-status")).to_have_text("Off.")
    await expect(page.locator("#web-form-enable")).to_have_count(0)
