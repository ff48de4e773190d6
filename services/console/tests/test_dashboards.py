"""Dashboards journeys: a manager sees the five charts drawn from the reporting service's figures
(seeded through the customers and pipeline APIs), filters them, downloads a chart's CSV; the
activity chart counts interactions logged through the interactions API, per rep and channel; a
rep is refused."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import expect

from crm_console.testing import Stack, User, console_as, screenshot, sign_in
from crm_platform.testing.fixtures import eventually, unique


async def seed(stack: Stack, rep: User, manager: User) -> None:
    """Two customers of the rep (an industry and a tier each), an open opportunity on one, and the
    rep's target for this month; then wait until the reporting service counts them."""
    rep_headers = {"Authorization": f"Bearer {await stack.token_for(rep)}"}
    manager_headers = {"Authorization": f"Bearer {await stack.token_for(manager)}"}
    ids = []
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=rep_headers) as customers:
        for industry, tier in (("制造业", "A"), ("零售", "B")):
            body = {"kind": "company", "name": f"看板客户 {unique('c')}", "industry": industry, "tier": tier}
            created = await customers.post("/v1/customers", json=body)
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    async with httpx.AsyncClient(base_url=stack.urls["pipeline"]) as pipeline:
        body = {
            "customer_id": ids[0],
            "name": f"看板商机 {unique('o')}",
            "amount": "120000",
            "expected_close_date": datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat(),
        }

        async def opportunity() -> bool:  # the pipeline learns of the customer through its events
            answer = await pipeline.post("/v1/opportunities", json=body, headers=rep_headers)
            assert answer.status_code in (201, 404, 422), answer.text
            return answer.status_code == 201

        await eventually(opportunity, timeout=30, interval=0.3, message="opportunity created")
        target = await pipeline.put(
            f"/v1/targets/rep/{rep.id}/{month}", json={"amount": "500000"}, headers=manager_headers
        )
        assert target.status_code == 200, target.text
    async with httpx.AsyncClient(base_url=stack.urls["reporting"], headers=manager_headers) as reporting:

        async def counted() -> bool:
            distribution = (await reporting.get("/v1/reports/distribution", params={"field": "industry"})).json()
            funnel = (await reporting.get("/v1/reports/funnel")).json()
            forecast = (await reporting.get("/v1/reports/forecast")).json()
            return (
                any(r["value"] == "零售" for r in distribution.get("rows", []))
                and any(r["current_count"] for r in funnel.get("rows", []))
                and any(r["scope_id"] == rep.id and r["target"] for r in forecast.get("reps", []))
            )

        await eventually(counted, timeout=45, interval=0.5, message="reporting counted the seeded data")


async def series_length(page: Any, report: str) -> int:
    length: int = await page.evaluate(
        """(id) => {
            const chart = echarts.getInstanceByDom(document.getElementById(id));
            const series = chart.getOption().series;
            return series.length ? series[0].data.length : 0;
        }""",
        f"chart-{report}",
    )
    return length


async def test_a_manager_reads_the_team_dashboards_filters_them_and_downloads_a_csv(page: Any, stack: Stack) -> None:
    manager = await stack.new_user(roles=["manager"])
    rep = await stack.new_user(name=f"看板销售 {unique('r')}")
    await seed(stack, rep, manager)

    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Dashboards").click()
    await expect(page.get_by_role("heading", name="Team dashboards")).to_be_visible()
    for report in ("funnel", "forecast", "distribution"):
        await expect(page.locator(f"#chart-{report} canvas")).to_be_visible()
        assert await series_length(page, report) > 0, report
    reps_on_forecast = await page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('chart-forecast')).getOption().xAxis[0].data"
    )
    assert rep.name in reps_on_forecast
    industries = await page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('chart-distribution'))"
        ".getOption().series[0].data.map((d) => d.name)"
    )
    assert {"制造业", "零售"} <= set(industries)
    await screenshot(page, "dashboards-overview")

    # Another profile field and the department from the directory's tree.
    await page.get_by_label("Customers by").select_option(label="Value tier")
    await page.get_by_label("Department").select_option(label="总部")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(lambda url: "field=tier" in url and "department=%2Fhq" in url)
    tiers = await page.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('chart-distribution'))"
        ".getOption().series[0].data.map((d) => d.name)"
    )
    assert {"A", "B"} <= set(tiers)

    async with page.expect_download() as info:
        await page.locator("#csv-distribution").click()
    download = await info.value
    content = (await download.path()).read_bytes().decode("utf-8-sig")  # the service adds a BOM for Excel
    assert content.splitlines()[0] == "value,count,share" and "\nA," in content, content

    # On a phone the charts stack and fit the screen (ECharts resizes with the window).
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator("#chart-funnel canvas")).to_be_visible()
    # ECharts resizes on the window's resize event, a moment later: wait for the page to fit.
    await page.wait_for_function("() => document.documentElement.scrollWidth <= 390", timeout=10_000)
    await screenshot(page, "dashboards-phone")


async def test_a_rep_cannot_open_the_managers_dashboards(signed_in_page: Any) -> None:
    page = signed_in_page
    await expect(page.get_by_role("link", name="Dashboards")).to_have_count(0)
    response = await page.goto("/dashboards")
    assert response.status == 403
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    csv = await page.goto("/dashboards/funnel.csv")
    assert csv.status == 403


async def test_a_department_outside_the_managers_subtree_is_refused_on_each_chart(page: Any, stack: Stack) -> None:
    """A branch manager who picks the head office: each chart says why it is empty, the page stays."""
    branch = unique("branch")
    email = f"{unique('m')}@example.com"
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        made = await directory.post("/v1/departments", json={"id": branch, "name": f"分部 {branch}", "parent_id": "hq"})
        assert made.status_code == 201, made.text
        body = {
            "email": email,
            "name": f"分部经理 {branch}",
            "roles": ["manager"],
            "department_id": branch,
            "password": "a long enough passphrase",
            "language": "en",
        }
        created = await directory.post("/v1/users", json=body)
        assert created.status_code == 201, created.text
    await sign_in(page, User(id=created.json()["id"], email=email, name=body["name"]))
    await page.wait_for_url("**/")
    response = await page.goto("/dashboards?department=%2Fhq")
    assert response.status == 200
    await expect(page.get_by_role("alert").first).to_contain_text(
        "you may only see your own department and the departments below it"
    )
    await expect(page.locator("#h-funnel")).to_be_visible()


async def log_interactions(stack: Stack, rep: User, bodies: list[dict[str, Any]]) -> None:
    """A customer of the rep and the interactions logged on it (once the interactions service knows it)."""
    headers = {"Authorization": f"Bearer {await stack.token_for(rep)}"}
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=headers) as customers:
        created = await customers.post("/v1/customers", json={"kind": "company", "name": f"跟进客户 {unique('c')}"})
        assert created.status_code == 201, created.text
    customer_id = created.json()["id"]
    now = datetime.now(ZoneInfo("Asia/Shanghai")).isoformat()
    async with httpx.AsyncClient(base_url=stack.urls["interactions"], headers=headers) as interactions:
        for body in bodies:
            sent = {"customer_id": customer_id, "occurred_at": now, **body}

            async def logged(sent: dict[str, Any] = sent) -> bool:
                answer = await interactions.post("/v1/interactions", json=sent)
                assert answer.status_code in (201, 422), answer.text  # 422: the customer is not known yet
                return answer.status_code == 201

            await eventually(logged, timeout=30, interval=0.3, message="interaction logged")


async def test_the_activity_chart_shows_each_reps_logged_interactions_per_channel(page: Any, stack: Stack) -> None:
    manager = await stack.new_user(roles=["manager"])
    caller = await stack.new_user(name=f"电话销售 {unique('r')}")
    visitor = await stack.new_user(name=f"外勤销售 {unique('r')}")
    phone = {"channel": "phone", "direction": "out", "summary": "介绍产品"}
    await log_interactions(stack, caller, [phone, phone, {"channel": "note", "content": "客户要报价单"}])
    await log_interactions(stack, visitor, [{"channel": "visit", "location": "上海", "summary": "现场演示"}])
    manager_headers = {"Authorization": f"Bearer {await stack.token_for(manager)}"}
    expected = {(caller.name, "phone"): 2, (caller.name, "note"): 1, (visitor.name, "visit"): 1}

    async def counted() -> bool:
        async with httpx.AsyncClient(base_url=stack.urls["reporting"], headers=manager_headers) as reporting:
            report = (await reporting.get("/v1/reports/activity")).json()
        got: dict[tuple[str, str], int] = {}
        for row in report.get("interactions", []):
            key = (row["rep_name"], row["channel"])
            got[key] = got.get(key, 0) + row["count"]
        return all(got.get(key) == count for key, count in expected.items())

    await eventually(counted, timeout=45, interval=0.5, message="reporting counted the interactions")

    await sign_in(page, manager)
    await page.wait_for_url("**/")
    await page.goto("/dashboards")
    await expect(page.locator("#chart-activity canvas")).to_be_visible()
    option = await page.evaluate(
        """() => {
            const option = echarts.getInstanceByDom(document.getElementById('chart-activity')).getOption();
            const series = option.series.map((s) => ({name: s.name, stack: s.stack, data: s.data}));
            return {reps: option.xAxis[0].data, series: series};
        }"""
    )
    reps: list[str] = option["reps"]
    per_channel = {s["name"]: s["data"] for s in option["series"]}
    assert {s["stack"] for s in option["series"]} == {"channels"}  # one bar per rep, stacked by channel
    assert {"Phone", "Note", "Visit"} <= set(per_channel), per_channel
    caller_at, visitor_at = reps.index(caller.name), reps.index(visitor.name)
    assert per_channel["Phone"][caller_at] == 2
    assert per_channel["Note"][caller_at] == 1
    assert per_channel["Visit"][caller_at] == 0
    assert per_channel["Visit"][visitor_at] == 1
    assert per_channel["Phone"][visitor_at] == 0
    assert sum(data[caller_at] for data in per_channel.values()) == 3
    assert sum(data[visitor_at] for data in per_channel.values()) == 1


async def test_the_forecast_chart_is_in_the_currency_picked(stack: Stack) -> None:
    """An opportunity in USD counts in the forecast chart when USD is picked, not in the default
    currency's (two currencies are never added up); an unknown code is said on the two charts in
    a currency while the others draw; the CSV follows the pick."""
    rep, manager = await stack.new_user(), await stack.new_user(roles=["manager"])
    rep_headers = {"Authorization": f"Bearer {await stack.token_for(rep)}"}
    async with httpx.AsyncClient(base_url=stack.urls["customers"], headers=rep_headers) as customers:
        made = await customers.post("/v1/customers", json={"kind": "company", "name": f"外贸客户 {unique('c')}"})
        assert made.status_code == 201, made.text
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    body = {
        "customer_id": made.json()["id"],
        "name": f"出口订单 {unique('o')}",
        "amount": "70000",
        "currency": "USD",
        "expected_close_date": today,
    }
    async with httpx.AsyncClient(base_url=stack.urls["pipeline"], headers=rep_headers) as pipeline:

        async def opportunity() -> bool:  # the pipeline learns of the customer through its events
            answer = await pipeline.post("/v1/opportunities", json=body)
            assert answer.status_code in (201, 404, 422), answer.text
            return answer.status_code == 201

        await eventually(opportunity, timeout=30, interval=0.3, message="opportunity created")

    def weighted(page: str) -> float | None:
        """The rep's weighted pipeline on the forecast chart (None: not on it, or no chart drawn)."""
        option = re.search(r'<script type="application/json" id="option-forecast">(.*?)</script>', page, re.S)
        if option is None:
            assert 'id="empty-forecast"' in page, page
            return None
        data = json.loads(html.unescape(option.group(1)))
        names = data["xAxis"]["data"] if data["series"] else []
        at = [i for i, name in enumerate(names) if name in (rep.name, rep.id)]
        return float(data["series"][2]["data"][at[0]]) if at else None

    async with console_as(stack, manager) as (client, _csrf):

        async def in_usd() -> str | None:
            page = (await client.get("/dashboards", params={"currency": "USD"})).text
            return page if weighted(page) else None

        page = await eventually(in_usd, timeout=45, interval=0.5, message="the USD opportunity in the forecast")
        assert re.search(r'<option value="USD"\s+selected>USD</option>', page), "the pick is kept"
        assert not weighted((await client.get("/dashboards")).text)  # not in the default currency
        refused = await client.get("/dashboards", params={"currency": "XYZ"})
        assert refused.status_code == 200 and refused.text.count("unknown currency") == 2, refused.text
        assert 'id="option-distribution"' in refused.text
        csv = await client.get("/dashboards/forecast.csv", params={"currency": "USD"})
        assert csv.status_code == 200 and rep.id in csv.text, csv.text
