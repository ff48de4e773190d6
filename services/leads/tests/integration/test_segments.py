"""A campaign's target segment: set with the campaign (create and PATCH, ETag rules as for the
other fields), its 422s naming ``segment.<field>``, the change in ``crm.campaign.updated`` and the
snapshot, and ``GET /v1/campaigns/{id}/segment``, whose ``customers_query`` is taken as it is by
the customers service's list (an in-process customers app on the session's store and broker):
it lists exactly the tagged customers the segment describes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI

from crm_customers.main import create_app as customers_app
from crm_customers.settings import CustomersSettings
from crm_platform.contracts import leads as lev
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, collecting, running, service_settings

MANAGER = auth("seg-mgr", ["manager"], "/hq/east")
REP = auth("seg-rep", ["rep"], "/hq/east/t1")
SALES = auth("seg-sales", ["rep"], "/hq/east")


def plan(**fields: Any) -> dict[str, Any]:
    return {
        "name": f"秋季客户答谢会 {uuid.uuid4().hex[:6]}",
        "channel": "event",
        "budget": {"amount": "50000.00", "currency": "CNY"},
        "start_date": "2026-10-01",
        "end_date": "2026-10-02",
        **fields,
    }


@pytest.fixture(scope="module")
async def customers(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = customers_app(CustomersSettings(**service_settings(backend, "customers")))
    async with running(app, "http://customers.test") as client:
        yield client


async def test_a_segment_is_set_changed_and_cleared_with_its_events(
    client: httpx.AsyncClient, leads_app: FastAPI
) -> None:
    segment = {"tags_all": [" VIP ", "华东"], "tags_any": ["展会", "展会"], "tier": "A", "industry": "制造业"}
    r = await client.post("/v1/campaigns", json=plan(segment=segment), headers=MANAGER)
    assert r.status_code == 201, r.text
    campaign = r.json()
    stored = {"tags_all": ["VIP", "华东"], "tags_any": ["展会"], "tier": "A", "industry": "制造业"}
    assert {k: v for k, v in campaign["segment"].items() if v is not None} == stored

    r = await client.get(f"/v1/campaigns/{campaign['id']}/segment", headers=REP)
    assert r.status_code == 200, r.text
    assert parse_qsl(r.json()["customers_query"]) == [
        ("tags_all", "VIP,华东"),
        ("tags_any", "展会"),
        ("industry", "制造业"),
        ("tier", "A"),
    ]

    async with collecting(leads_app.state.kit.settings.kafka_bootstrap_servers, [lev.TOPIC]) as events:
        # ETag rules as for every field: 428 without If-Match, 412 when stale.
        r = await client.patch(f"/v1/campaigns/{campaign['id']}", json={"segment": {"tier": "B"}}, headers=MANAGER)
        assert r.status_code == 428
        stale = {**MANAGER, "If-Match": '"7"'}
        r = await client.patch(f"/v1/campaigns/{campaign['id']}", json={"segment": {"tier": "B"}}, headers=stale)
        assert r.status_code == 412
        r = await client.patch(
            f"/v1/campaigns/{campaign['id']}",
            json={"segment": {"tags_any": ["老客户"], "lifecycle_stage": "dormant"}},
            headers={**MANAGER, "If-Match": '"1"'},
        )
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == '"2"'
        (got,) = await events.wait_for(subject=campaign["id"], type=lev.CAMPAIGN_UPDATED.name)
    (change,) = got.event["data"]["changes"]
    assert change["field"] == "segment" and change["old"] == stored
    assert change["new"] == {"tags_all": [], "tags_any": ["老客户"], "lifecycle_stage": "dormant"}
    assert got.event["data"]["campaign"]["segment"]["lifecycle_stage"] == "dormant"

    # The same segment again changes nothing (no version, no event); null removes it.
    same = {"segment": {"tags_any": ["老客户"], "lifecycle_stage": "dormant"}}
    r = await client.patch(f"/v1/campaigns/{campaign['id']}", json=same, headers={**MANAGER, "If-Match": '"2"'})
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    r = await client.patch(
        f"/v1/campaigns/{campaign['id']}", json={"segment": None}, headers={**MANAGER, "If-Match": '"2"'}
    )
    assert r.status_code == 200 and r.json()["segment"] is None
    r = await client.get(f"/v1/campaigns/{campaign['id']}/segment", headers=REP)
    assert r.json() == {"campaign_id": campaign["id"], "segment": None, "customers_query": None}


async def test_bad_segments_are_422_naming_the_field_and_change_nothing(client: httpx.AsyncClient) -> None:
    bad = {"tier": "Z", "tags_all": ["a,b"], "tags_any": [""], "lifecycle_stage": "gone", "colour": "red", "city": " "}
    r = await client.post("/v1/campaigns", json=plan(segment=bad), headers=MANAGER)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    fields = {e["field"] for e in r.json()["errors"]}
    assert {
        "segment.tier",
        "segment.tags_all[0]",
        "segment.tags_any[0]",
        "segment.lifecycle_stage",
        "segment.colour",
        "segment.city",
    } <= fields, fields
    r = await client.post("/v1/campaigns", json=plan(segment={}), headers=MANAGER)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["segment"]

    r = await client.post("/v1/campaigns", json=plan(), headers=MANAGER)
    campaign = r.json()
    assert campaign["segment"] is None
    r = await client.patch(
        f"/v1/campaigns/{campaign['id']}",
        json={"segment": {"size": "huge"}},
        headers={**MANAGER, "If-Match": '"1"'},
    )
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["segment.size"]
    r = await client.get(f"/v1/campaigns/{campaign['id']}", headers=MANAGER)
    assert r.headers["etag"] == '"1"' and r.json()["segment"] is None
    # Reading a segment is campaigns:view; setting one is campaigns:manage.
    r = await client.patch(
        f"/v1/campaigns/{campaign['id']}", json={"segment": {"tier": "A"}}, headers={**REP, "If-Match": '"1"'}
    )
    assert r.status_code == 403


async def test_the_customers_query_lists_exactly_the_segments_customers(
    client: httpx.AsyncClient, customers: httpx.AsyncClient
) -> None:
    marker = uuid.uuid4().hex[:8]
    vip, east, show, web = f"VIP-{marker}", f"华东-{marker}", f"展会-{marker}", f"官网-{marker}"

    async def customer(name: str, tags: list[str], tier: str, headers: dict[str, str] = SALES) -> str:
        body = {"kind": "company", "name": f"{name} {marker} 有限公司", "tags": tags, "tier": tier}
        body["industry"] = "制造业"
        r = await customers.post("/v1/customers", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    wanted = {
        await customer("嘉定精密", [vip, east, show], "A"),
        await customer("松江模具", [vip, east, web], "A"),
    }
    await customer("闵行电子", [vip, east, show], "B")  # tier B
    await customer("青浦纺织", [vip, show], "A")  # not 华东
    await customer("奉贤包装", [vip, east], "A")  # neither 展会 nor 官网
    hidden = await customer("宝山钢构", [vip, east, show], "A", headers=auth("seg-other", ["rep"], "/hq/west"))

    segment = {"tags_all": [vip, east], "tags_any": [show, web], "tier": "A", "industry": "制造业", "kind": "company"}
    r = await client.post("/v1/campaigns", json=plan(segment=segment), headers=MANAGER)
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/campaigns/{r.json()['id']}/segment", headers=REP)
    query = r.json()["customers_query"]

    async def listed(headers: dict[str, str]) -> set[str]:
        found: set[str] = set()
        cursor: str | None = None
        while True:
            page = await customers.get(
                f"/v1/customers?{query}" + (f"&cursor={cursor}" if cursor else ""), headers=headers
            )
            assert page.status_code == 200, page.text
            found |= {c["id"] for c in page.json()["items"]}
            cursor = page.json().get("next_cursor")
            if not cursor:
                return found

    # Each viewer sees the segment's customers their own visibility reaches.
    assert await listed(SALES) == wanted
    assert await listed(auth("seg-admin", ["admin"], "/hq")) == wanted | {hidden}
