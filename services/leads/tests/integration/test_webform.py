"""Web-to-lead against the real embedded store and broker, on a service of its own whose clock the
tests move (the rate limits' windows) and whose limits are small: keys (make, rotate, turn off),
the public post (form and JSON, no token), the honeypot, duplicates answered as a success, rate
limits per address and per key with Retry-After, unknown keys and closed campaigns, CORS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_leads.main import create_app
from crm_leads.settings import LeadsSettings
from crm_platform.clock import ManualClock
from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, collecting, running, service_settings
from crm_platform.testing.plans import KeepingProducer, deliver

# A window start: every test moves the clock to a fresh window of its own.
CLOCK = ManualClock(datetime(2026, 5, 1, 9, 0, tzinfo=UTC))
WINDOW = 60
PER_ADDRESS = 3
PER_KEY = 5
MANAGER = auth("webform-mgr", ["manager"], "/hq/mkt")
REP = auth("webform-rep", ["rep"], "/hq/mkt")


@pytest.fixture(scope="module")
async def app(backend: Backend) -> AsyncIterator[FastAPI]:
    settings = LeadsSettings(
        **service_settings(backend, "leads"),
        web_form_window_seconds=WINDOW,
        web_form_max_per_address=PER_ADDRESS,
        web_form_max_per_key=PER_KEY,
    )
    application = create_app(settings, CLOCK)
    async with running(application, "http://leads.test"):
        yield application


def client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (the peer address the rate limit counts)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://leads.test")


@pytest.fixture
async def staff(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_from(app, "10.9.0.1") as c:
        yield c


@pytest.fixture(autouse=True)
def fresh_window() -> None:
    CLOCK.advance(timedelta(seconds=WINDOW * 2))


def address() -> str:
    n = uuid.uuid4().int
    return f"198.51.{n % 250}.{n // 250 % 250 + 1}"


def company() -> str:
    return f"网站表单{uuid.uuid4().hex[:10]}有限公司"


def phone() -> str:
    return f"+86137{uuid.uuid4().int % 10**8:08d}"


async def active_campaign(staff: httpx.AsyncClient) -> str:
    plan = {
        "name": f"官网活动 {uuid.uuid4().hex[:6]}",
        "channel": "online_ads",
        "budget": {"amount": "5000.00", "currency": "CNY"},
        "start_date": "2026-05-01",
        "end_date": "2026-05-31",
    }
    r = await staff.post("/v1/campaigns", json=plan, headers=MANAGER)
    assert r.status_code == 201, r.text
    campaign_id: str = r.json()["id"]
    r = await staff.patch(
        f"/v1/campaigns/{campaign_id}", json={"status": "active"}, headers={**MANAGER, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    return campaign_id


async def form_key(staff: httpx.AsyncClient, campaign_id: str) -> str:
    r = await staff.post(f"/v1/campaigns/{campaign_id}/web-form", headers=MANAGER)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["enabled"] and body["url"] == f"/v1/web-to-lead/{body['key']}"
    key: str = body["key"]
    return key


async def leads_of(staff: httpx.AsyncClient, campaign_id: str) -> list[dict[str, Any]]:
    r = await staff.get("/v1/leads", params={"campaign_id": campaign_id}, headers=MANAGER)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_a_form_post_makes_a_pool_lead_of_the_campaign(app: FastAPI, staff: httpx.AsyncClient) -> None:
    campaign_id = await active_campaign(staff)
    key = await form_key(staff, campaign_id)
    bootstrap = app.state.kit.settings.kafka_bootstrap_servers
    name, mobile = company(), phone()
    async with client_from(app, address()) as public, collecting(bootstrap, [lev.TOPIC]) as events:
        form = {"company": name, "name": "陈女士", "phone": mobile, "message": "请报价", "website_url": ""}
        r = await public.post(f"/v1/web-to-lead/{key}", data=form, headers={"Origin": "https://www.example.cn"})
        assert r.status_code == 202 and r.json() == {"status": "received"}, r.text
        assert r.headers["access-control-allow-origin"] == "*"
        (lead,) = await leads_of(staff, campaign_id)
        (got,) = await events.wait_for(subject=lead["id"], type=lev.LEAD_CREATED.name)
        assert got.event["data"]["via"] == "web_form"
        # JSON works too.
        r = await public.post(f"/v1/web-to-lead/{key}", json={"company": company(), "email": "Buyer@Example.cn"})
        assert r.status_code == 202, r.text
    assert lead["company_name"] == name and lead["phones"] == [mobile] and lead["contact_name"] == "陈女士"
    assert lead["source"] == "web_form" and lead["campaign_id"] == campaign_id and lead["notes"] == "请报价"
    assert lead["in_pool"] and lead["owner_id"] is None and lead["department_path"] == "/hq/mkt"
    assert lead["created_by"] == f"web-form:{campaign_id}"
    # Any rep sees it in the lead pool and may claim it.
    r = await staff.post(f"/v1/leads/{lead['id']}/claim", headers=REP)
    assert r.status_code == 200, r.text
    status = (await staff.get(f"/v1/campaigns/{campaign_id}/web-form", headers=REP)).json()
    assert status["enabled"] and status["key"] is None and status["created"] == 2


async def test_the_honeypot_answers_as_a_success_and_stores_nothing(app: FastAPI, staff: httpx.AsyncClient) -> None:
    campaign_id = await active_campaign(staff)
    key = await form_key(staff, campaign_id)
    async with client_from(app, address()) as public:
        form = {"company": company(), "phone": phone(), "website_url": "http://spam.example"}
        r = await public.post(f"/v1/web-to-lead/{key}", data=form)
    assert r.status_code == 202 and r.json() == {"status": "received"}, r.text
    assert await leads_of(staff, campaign_id) == []
    status = (await staff.get(f"/v1/campaigns/{campaign_id}/web-form", headers=REP)).json()
    assert status["honeypot"] == 1 and status["created"] == 0
    metrics = (await staff.get("/metrics")).text
    assert 'crm_web_form_posts_total{outcome="honeypot"}' in metrics


async def test_a_duplicate_is_answered_as_a_success_and_counted_for_staff(
    app: FastAPI, staff: httpx.AsyncClient
) -> None:
    campaign_id = await active_campaign(staff)
    key = await form_key(staff, campaign_id)
    held_phone = phone()
    r = await staff.post("/v1/leads", json={"company_name": company(), "phones": [held_phone]}, headers=REP)
    assert r.status_code == 201, r.text
    # A customer learnt from crm.customers.v1 (handed to the consumer's handler as the broker would).
    now = datetime.now(UTC)
    customer_id, customer_name = str(uuid.uuid4()), company()
    snapshot = cev.CustomerSnapshot(
        customer_id=customer_id,
        kind="company",
        name=customer_name,
        owner_id="webform-cust-owner",
        created_at=now,
        updated_at=now,
    )
    feed = EventFeed(KeepingProducer())  # type: ignore[arg-type]
    assert await deliver(
        app, await feed.send(cev.CUSTOMER_CREATED, customer_id, cev.CustomerCreated(customer=snapshot), now)
    )
    async with client_from(app, address()) as public:
        for form in ({"company": company(), "phone": held_phone}, {"company": customer_name, "email": "a@b.cn"}):
            r = await public.post(f"/v1/web-to-lead/{key}", data=form)
            assert r.status_code == 202 and r.json() == {"status": "received"}, r.text  # nothing about the holder
    assert await leads_of(staff, campaign_id) == []
    status = (await staff.get(f"/v1/campaigns/{campaign_id}/web-form", headers=REP)).json()
    assert status["duplicates"] == 2 and status["created"] == 0


async def test_bad_fields_are_422_naming_the_field(app: FastAPI, staff: httpx.AsyncClient) -> None:
    key = await form_key(staff, await active_campaign(staff))
    async with client_from(app, address()) as public:
        r = await public.post(f"/v1/web-to-lead/{key}", data={"company": company(), "phone": "12"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone", r.text
        assert r.headers["access-control-allow-origin"] == "*"
        r = await public.post(f"/v1/web-to-lead/{key}", data={"company": company()})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone", r.text
        r = await public.post(f"/v1/web-to-lead/{key}", data={"phone": phone()})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "company", r.text


async def test_rate_limit_per_address_with_retry_after(app: FastAPI, staff: httpx.AsyncClient) -> None:
    key = await form_key(staff, await active_campaign(staff))
    async with client_from(app, address()) as public, client_from(app, address()) as neighbour:
        for _ in range(PER_ADDRESS):
            r = await public.post(f"/v1/web-to-lead/{key}", data={"company": company(), "phone": phone()})
            assert r.status_code == 202, r.text
        CLOCK.advance(timedelta(seconds=15))
        r = await public.post(f"/v1/web-to-lead/{key}", data={"company": company(), "phone": phone()})
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json", r.text
        assert int(r.headers["retry-after"]) == WINDOW - 15 and r.headers["access-control-allow-origin"] == "*"
        # Another address is not held back; the next window lets the first one in again.
        r = await neighbour.post(f"/v1/web-to-lead/{key}", data={"company": company(), "phone": phone()})
        assert r.status_code == 202, r.text
        CLOCK.advance(timedelta(seconds=WINDOW))
        r = await public.post(f"/v1/web-to-lead/{key}", data={"company": company(), "phone": phone()})
        assert r.status_code == 202, r.text


async def test_rate_limit_per_key(app: FastAPI, staff: httpx.AsyncClient) -> None:
    campaign_id = await active_campaign(staff)
    key, other = await form_key(staff, campaign_id), await form_key(staff, await active_campaign(staff))
    answers = []
    for _ in range(PER_KEY + 1):  # each post from an address of its own: only the key's limit counts
        async with client_from(app, address()) as public:
            r = await public.post(f"/v1/web-to-lead/{key}", data={"company": company(), "phone": phone()})
            answers.append(r.status_code)
    assert answers == [202] * PER_KEY + [429]
    async with client_from(app, address()) as public:
        r = await public.post(f"/v1/web-to-lead/{other}", data={"company": company(), "phone": phone()})
        assert r.status_code == 202, r.text  # another form's key has its own count
    assert len(await leads_of(staff, campaign_id)) == PER_KEY


async def test_unknown_rotated_disabled_keys_and_closed_campaigns_are_404(
    app: FastAPI, staff: httpx.AsyncClient
) -> None:
    campaign_id = await active_campaign(staff)
    old = await form_key(staff, campaign_id)
    new = await form_key(staff, campaign_id)  # rotated: the old key stops working
    form = {"company": company(), "phone": phone()}
    async with client_from(app, address()) as public:
        assert (await public.post(f"/v1/web-to-lead/{uuid.uuid4().hex}", data=form)).status_code == 404
        assert (await public.post(f"/v1/web-to-lead/{old}", data=form)).status_code == 404
        r = await staff.get(f"/v1/campaigns/{campaign_id}", headers=REP)
        version = r.headers["etag"]
        r = await staff.patch(
            f"/v1/campaigns/{campaign_id}", json={"status": "completed"}, headers={**MANAGER, "If-Match": version}
        )
        assert r.status_code == 200, r.text
        r = await public.post(f"/v1/web-to-lead/{new}", data=form)
        assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "*", r.text
    # A planned campaign takes no posts either; turning the form off closes it for good.
    plan = {
        "name": f"未开始 {uuid.uuid4().hex[:6]}",
        "channel": "online_ads",
        "budget": {"amount": "1.00", "currency": "CNY"},
        "start_date": "2026-06-01",
        "end_date": "2026-06-30",
    }
    planned = (await staff.post("/v1/campaigns", json=plan, headers=MANAGER)).json()["id"]
    planned_key = await form_key(staff, planned)
    live = await active_campaign(staff)
    live_key = await form_key(staff, live)
    assert (await staff.delete(f"/v1/campaigns/{live}/web-form", headers=MANAGER)).status_code == 204
    assert (await staff.delete(f"/v1/campaigns/{live}/web-form", headers=MANAGER)).status_code == 204  # off already
    async with client_from(app, address()) as public:
        assert (await public.post(f"/v1/web-to-lead/{planned_key}", data=form)).status_code == 404
        assert (await public.post(f"/v1/web-to-lead/{live_key}", data=form)).status_code == 404
    assert not (await staff.get(f"/v1/campaigns/{live}/web-form", headers=REP)).json()["enabled"]
    r = await staff.post(f"/v1/campaigns/{campaign_id}/web-form", headers=MANAGER)
    assert r.status_code == 409, r.text  # a completed campaign takes no new form
    r = await staff.post(f"/v1/campaigns/{live}/web-form", headers=REP)
    assert r.status_code == 403, r.text


async def test_key_changes_are_events_without_the_key(app: FastAPI, staff: httpx.AsyncClient) -> None:
    campaign_id = await active_campaign(staff)
    bootstrap = app.state.kit.settings.kafka_bootstrap_servers
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        keys = [await form_key(staff, campaign_id), await form_key(staff, campaign_id)]
        assert (await staff.delete(f"/v1/campaigns/{campaign_id}/web-form", headers=MANAGER)).status_code == 204
        got = await events.wait_for(3, subject=campaign_id, type=lev.CAMPAIGN_WEB_FORM_CHANGED.name)
    assert [g.event["data"]["action"] for g in got] == ["enabled", "rotated", "disabled"]
    assert [g.event["data"]["campaign"]["web_form_enabled"] for g in got] == [True, True, False]
    assert not any(k in g.value.decode() for g in got for k in keys)


async def test_cors_preflight_for_the_public_post_only(app: FastAPI, staff: httpx.AsyncClient) -> None:
    headers = {"Origin": "https://www.example.cn", "Access-Control-Request-Method": "POST"}
    r = await staff.options(f"/v1/web-to-lead/{uuid.uuid4().hex}", headers=headers)
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*", r.text
    assert "POST" in r.headers["access-control-allow-methods"]
    r = await staff.post("/v1/leads", json={"company_name": company()}, headers={**REP, "Origin": "https://x.example"})
    assert "access-control-allow-origin" not in r.headers
