"""Contracts over HTTP against the real embedded store and broker: drafting one directly, from a won
opportunity (its read copy fed by crm.pipeline.v1) or from an accepted quotation, 422s naming each
field (and no number taken), 20 concurrent drafts numbered without gaps, PATCH only while draft with
If-Match, the approval bands (own contract and missing permission: 403; two levels above the major
amount), signing, execution, termination, and who sees and lists what.

Customers and most opportunities reach the service through its own consumer handlers (``deliver``);
one opportunity comes over Kafka, as in production.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.contracts import pipeline as pev
from crm_platform.contracts import sales as sev
from crm_platform.events import EventEnvelope
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, collecting, eventually, unique
from crm_platform.testing.plans import KeepingProducer, deliver
from crm_sales.domain.contracts import parse_number

PROBLEM = "application/problem+json"


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


class Team:
    def __init__(self) -> None:
        root = f"/{unique('c')}"
        self.rep = User(f"{root}/sales")
        self.rep2 = User(f"/{unique('elsewhere')}")
        self.manager = User(root, ["manager"], "mgr")
        self.manager2 = User(root, ["manager"], "mgr")
        self.admin = User("/", ["admin"], "admin")


@pytest.fixture
def team() -> Team:
    return Team()


async def customer_of(app: FastAPI, user: User) -> str:
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    customer = await feed.created(owner_id=user.id, department_path=user.dept, name=f"合同客户 {uuid.uuid4().hex[:8]}")
    assert await deliver(app, feed.published[-1]) >= 1
    return customer.id


def opportunity_event(
    customer_id: str, user: User, status: str = "won", amount: str | None = "250000.00", version: int = 1
) -> EventEnvelope:
    now = datetime.now(UTC)
    opp_id = str(uuid.uuid4())
    snapshot = pev.OpportunitySnapshot(
        opportunity_id=opp_id,
        name=f"商机 {opp_id[:6]}",
        customer_id=customer_id,
        amount=amount,
        currency="CNY",
        probability=100 if status == "won" else 50,
        pipeline_id="p1",
        stage_id="p1-won" if status == "won" else "p1-open",
        stage_name=status,
        stage_kind="won" if status == "won" else "open",
        stage_entered_at=now,
        status=status,  # type: ignore[arg-type]
        owner_id=user.id,
        department_path=user.dept,
        created_at=now,
        updated_at=now,
    )
    return pev.OPPORTUNITY_CREATED.build(
        source="/crm/pipeline",
        subject=opp_id,
        data=pev.OpportunityCreated(opportunity=snapshot),
        aggregate_version=version,
        time=now,
        actor=user.id,
    )


def direct(customer_id: str, amount: str = "120000", **fields: Any) -> dict[str, Any]:
    return {
        "title": f"服务合同 {uuid.uuid4().hex[:6]}",
        "customer_id": customer_id,
        "amount": amount,
        "currency": "CNY",
        **fields,
    }


async def draft(client: httpx.AsyncClient, user: User, payload: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/contracts", json=payload, headers=user.headers)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/contracts/{r.json()['id']}"
    got: dict[str, Any] = r.json()
    return got


def field_of(r: httpx.Response) -> str:
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
    name: str = r.json()["errors"][0]["field"]
    return name


async def act(
    client: httpx.AsyncClient, user: User, contract: dict[str, Any], action: str, body: Any = None
) -> httpx.Response:
    return await client.post(f"/v1/contracts/{contract['id']}/{action}", json=body or {}, headers=user.headers)


async def test_draft_a_contract_directly_with_its_number_parties_and_event(
    client: httpx.AsyncClient, sales_app: FastAPI, team: Team
) -> None:
    customer = await customer_of(sales_app, team.rep)
    payload = direct(
        customer,
        "120000.5",
        customer_signatory=" 张总 ",
        start_date="2026-01-01",
        end_date="2026-12-31",
        notes=" 三年维保 ",
    )
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        made = await draft(client, team.rep, payload)
        (got,) = await events.wait_for(subject=made["id"], type=sev.CONTRACT_CREATED.name)
    year = datetime.now().year
    assert re.fullmatch(rf"C-{year}-\d{{6}}", made["number"]), made["number"]
    assert made["status"] == "draft" and made["owner_id"] == team.rep.id and made["amount"] == "120000.50"
    assert made["customer_name"].startswith("合同客户") and made["customer_signatory"] == "张总"
    assert made["our_entity"] == sales_app.state.kit.settings.sales_organisation_name
    assert made["notes"] == "三年维保" and made["department_path"] == team.rep.dept
    snap = got.event["data"]["contract"]
    assert snap["number"] == made["number"] and snap["amount"] == "120000.50" and snap["version"] == 1
    assert snap["status"] == "draft" and snap["start_date"] == "2026-01-01" and got.event["aggregateversion"] == 1
    r = await client.get(f"/v1/contracts/{made['id']}", headers=team.rep.headers)
    assert r.status_code == 200 and r.json() == made


async def test_a_contract_from_a_won_opportunity_takes_its_customer_amount_and_currency(
    client: httpx.AsyncClient, sales_app: FastAPI, producer: AIOKafkaProducer, team: Team
) -> None:
    customer = await customer_of(sales_app, team.rep)
    # Over Kafka, as the pipeline publishes it: the read copy catches up.
    won = opportunity_event(customer, team.rep, amount="250000.00")
    await EventFeed(producer).resend(won)
    await eventually(
        lambda: sales_app.state.kit.db["opportunities"].find_one({"_id": won.subject}),
        timeout=30,
        message="the opportunity in the read copy",
    )
    made = await draft(client, team.rep, {"title": "云平台合同", "opportunity_id": won.subject})
    assert (made["customer_id"], made["amount"], made["currency"]) == (customer, "250000.00", "CNY")
    assert made["opportunity_id"] == won.subject
    # An open one is refused, naming the field; so is an unknown or invisible one.
    open_one = opportunity_event(customer, team.rep, status="open")
    assert await deliver(sales_app, open_one) >= 1
    r = await client.post(
        "/v1/contracts", json={"title": "x", "opportunity_id": open_one.subject}, headers=team.rep.headers
    )
    assert field_of(r) == "opportunity_id" and "open" in r.json()["errors"][0]["reason"]
    r = await client.post(
        "/v1/contracts", json={"title": "x", "opportunity_id": won.subject}, headers=team.rep2.headers
    )
    assert field_of(r) == "opportunity_id"
    # A won opportunity without an amount needs one given.
    bare = opportunity_event(customer, team.rep, amount=None)
    assert await deliver(sales_app, bare) >= 1
    r = await client.post(
        "/v1/contracts", json={"title": "x", "opportunity_id": bare.subject}, headers=team.rep.headers
    )
    assert field_of(r) == "amount"


async def test_a_contract_from_an_accepted_quotation_takes_its_total(
    client: httpx.AsyncClient, sales_app: FastAPI, team: Team
) -> None:
    customer = await customer_of(sales_app, team.rep)
    body = {"sku": f"c-{uuid.uuid4().hex[:10]}", "name": "实施服务", "unit": "套"}
    r = await client.post("/v1/products", json=body, headers=team.admin.headers)
    assert r.status_code == 201, r.text
    line = {"product_id": r.json()["id"], "quantity": "3", "unit_price": "1000.10"}
    until = (date.today() + timedelta(days=30)).isoformat()
    r = await client.post(
        "/v1/quotations",
        json={"customer_id": customer, "currency": "CNY", "valid_until": until, "lines": [line]},
        headers=team.rep.headers,
    )
    assert r.status_code == 201, r.text
    quotation = r.json()
    r = await client.post(
        "/v1/contracts", json={"title": "x", "quotation_id": quotation["id"]}, headers=team.rep.headers
    )
    assert field_of(r) == "quotation_id" and "draft" in r.json()["errors"][0]["reason"]
    for action in ("send", "accept"):
        r = await client.post(f"/v1/quotations/{quotation['id']}/{action}", json={}, headers=team.rep.headers)
        assert r.status_code == 200, r.text
    made = await draft(client, team.rep, {"title": "实施合同", "quotation_id": quotation["id"]})
    assert (made["customer_id"], made["amount"], made["currency"]) == (customer, "3000.30", "CNY")
    assert made["quotation_id"] == quotation["id"]


async def test_bad_drafts_are_422_naming_the_field_and_take_no_number(
    client: httpx.AsyncClient, sales_app: FastAPI, team: Team
) -> None:
    customer = await customer_of(sales_app, team.rep)
    before = await draft(client, team.rep, direct(customer))
    cases: list[tuple[dict[str, Any], str]] = [
        (direct(customer, "0"), "amount"),
        (direct(customer, "-5"), "amount"),
        (direct(customer, "10.001"), "amount"),
        (direct(customer, currency="XYZ"), "currency"),
        (direct(customer, start_date="2026-05-02", end_date="2026-05-01"), "end_date"),
        (direct(str(uuid.uuid4())), "customer_id"),
        ({"title": "x", "amount": "10", "currency": "CNY"}, "customer_id"),
        ({**direct(customer), "title": ""}, "title"),
        ({**direct(customer), "amount": None}, "amount"),
    ]
    for payload, field in cases:
        r = await client.post("/v1/contracts", json=payload, headers=team.rep.headers)
        assert field_of(r) == field, (field, r.text)
    after = await draft(client, team.rep, direct(customer))
    assert parse_number(after["number"])[1] == parse_number(before["number"])[1] + 1


async def test_concurrent_drafts_get_consecutive_numbers(
    client: httpx.AsyncClient, sales_app: FastAPI, team: Team
) -> None:
    customer = await customer_of(sales_app, team.rep)
    made = await asyncio.gather(*(draft(client, team.rep, direct(customer)) for _ in range(20)))
    seqs = sorted(parse_number(m["number"])[1] for m in made)
    assert seqs == list(range(seqs[0], seqs[0] + 20))


async def test_patch_only_a_draft_with_if_match(client: httpx.AsyncClient, sales_app: FastAPI, team: Team) -> None:
    customer = await customer_of(sales_app, team.rep)
    made = await draft(client, team.rep, direct(customer))
    url = f"/v1/contracts/{made['id']}"
    r = await client.patch(url, json={"amount": "5000"}, headers=team.rep.headers)
    assert r.status_code == 428, r.text
    r = await client.patch(url, json={"amount": "5000", "end_date": "2027-01-01"}, headers=team.rep.match('"1"'))
    assert r.status_code == 200 and r.json()["amount"] == "5000.00" and r.headers["etag"] == '"2"', r.text
    r = await client.patch(url, json={"title": "新"}, headers=team.rep.match('"1"'))
    assert r.status_code == 412, r.text
    r = await client.patch(url, json={"start_date": "2027-02-01"}, headers=team.rep.match('"2"'))
    assert field_of(r) == "end_date"
    r = await client.patch(url, json={"amount": None}, headers=team.rep.match('"2"'))
    assert field_of(r) == "amount"
    assert (await act(client, team.rep, made, "submit")).status_code == 200
    r = await client.patch(url, json={"title": "新"}, headers=team.rep.match('"3"'))
    assert r.status_code == 409 and r.json()["current_status"] == "under_approval", r.text


async def test_approval_signing_and_execution_under_the_lower_band(
    client: httpx.AsyncClient, sales_app: FastAPI, team: Team
) -> None:
    customer = await customer_of(sales_app, team.rep)
    made = await draft(client, team.rep, direct(customer, "80000"))
    assert (await act(client, team.manager, made, "approve")).status_code == 409  # a draft: submit first
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await act(client, team.rep, made, "submit")
        assert r.status_code == 200 and r.json()["status"] == "under_approval", r.text
        assert [lv["permission"] for lv in r.json()["approval"]["levels"]] == ["contracts:approve"]
        r = await act(client, team.rep, made, "approve")
        assert r.status_code == 403, r.text  # a rep holds no contracts:approve
        r = await act(client, team.rep, made, "sign", {"signed_on": date.today().isoformat()})
        assert r.status_code == 409 and r.json()["reason"] == "approval-pending", r.text
        r = await act(client, team.manager, made, "reject", {})
        assert field_of(r) == "comment"
        r = await act(client, team.manager, made, "reject", {"comment": "付款条件再谈"})
        assert r.status_code == 200 and r.json()["status"] == "draft" and r.json()["approval"] is None, r.text
        assert r.json()["rejection"]["comment"] == "付款条件再谈"
        assert (await act(client, team.rep, made, "submit")).status_code == 200
        r = await act(client, team.manager, made, "approve", {"comment": "同意"})
        assert r.status_code == 200 and r.json()["approval"]["complete"] is True, r.text
        assert r.json()["approval"]["levels"][0]["approved_by"] == team.manager.id
        tomorrow = (date.today() + timedelta(days=2)).isoformat()  # past Shanghai's date too (the business day)
        r = await act(client, team.rep, made, "sign", {"signed_on": tomorrow, "signed_document": "doc-1"})
        assert field_of(r) == "signed_on"
        r = await act(client, team.rep, made, "sign", {"signed_on": date.today().isoformat()})
        assert field_of(r) == "signed_document"
        r = await act(
            client,
            team.rep,
            made,
            "sign",
            {"signed_on": date.today().isoformat(), "signed_document": "https://docs.example/c.pdf"},
        )
        assert r.status_code == 200 and r.json()["status"] == "signed", r.text
        assert r.json()["signed_document"] == "https://docs.example/c.pdf"
        assert (await act(client, team.rep, made, "complete")).status_code == 409
        assert (await act(client, team.rep, made, "start")).json()["status"] == "executing"
        r = await act(client, team.rep, made, "complete")
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        assert (await act(client, team.rep, made, "terminate", {"reason": "x"})).status_code == 409
        types = [
            sev.CONTRACT_SUBMITTED,
            sev.CONTRACT_REJECTED,
            sev.CONTRACT_APPROVED,
            sev.CONTRACT_SIGNED,
            sev.CONTRACT_STARTED,
            sev.CONTRACT_COMPLETED,
        ]
        for event_type in types:
            await events.wait_for(subject=made["id"], type=event_type.name)
        (signed,) = await events.wait_for(subject=made["id"], type=sev.CONTRACT_SIGNED.name)
    assert signed.event["data"]["contract"]["signed_on"] == date.today().isoformat()


async def test_above_the_major_amount_a_second_level_needs_approve_major_and_another_person(
    client: httpx.AsyncClient, sales_app: FastAPI, team: Team
) -> None:
    customer = await customer_of(sales_app, team.manager)
    made = await draft(client, team.manager, direct(customer, "1500000"))
    r = await act(client, team.manager, made, "submit")
    levels = r.json()["approval"]["levels"]
    assert [lv["permission"] for lv in levels] == ["contracts:approve", "contracts:approve_major"], r.text
    r = await act(client, team.manager, made, "approve")
    assert r.status_code == 403 and "own" in r.json()["detail"], r.text  # one's own contract
    r = await act(client, team.manager2, made, "approve")
    assert r.status_code == 200 and r.json()["approval"]["complete"] is False, r.text
    r = await act(client, team.manager2, made, "approve")
    assert r.status_code == 403 and "contracts:approve_major" in r.json()["detail"], r.text
    admin = team.admin
    r = await act(client, admin, made, "approve")
    assert r.status_code == 200 and r.json()["approval"]["complete"] is True, r.text
    assert [lv["approved_by"] for lv in r.json()["approval"]["levels"]] == [team.manager2.id, admin.id]
    r = await act(client, team.manager, made, "sign", {"signed_on": date.today().isoformat(), "signed_document": "D-1"})
    assert r.status_code == 200, r.text
    r = await act(client, team.manager, made, "terminate", {"reason": "  "})
    assert field_of(r) == "reason"
    r = await act(client, team.manager, made, "terminate", {"reason": "客户破产"})
    assert r.status_code == 200 and r.json()["termination"]["reason"] == "客户破产", r.text


async def test_who_sees_and_lists_what(client: httpx.AsyncClient, sales_app: FastAPI, team: Team) -> None:
    customer = await customer_of(sales_app, team.rep)
    mine = []
    for _ in range(3):  # a few ms apart: the list sorts on the creation time in milliseconds
        mine.append(await draft(client, team.rep, direct(customer)))
        await asyncio.sleep(0.005)
    other_customer = await customer_of(sales_app, team.rep2)
    theirs = await draft(client, team.rep2, direct(other_customer))
    assert (await client.get(f"/v1/contracts/{theirs['id']}", headers=team.rep.headers)).status_code == 404
    assert (await client.get(f"/v1/contracts/{mine[0]['id']}", headers=team.manager.headers)).status_code == 200
    assert (await client.get(f"/v1/contracts/{theirs['id']}", headers=team.manager.headers)).status_code == 404
    assert (await client.get(f"/v1/contracts/{theirs['id']}", headers=team.admin.headers)).status_code == 200
    assert (await act(client, team.rep, mine[0], "submit")).status_code == 200
    r = await client.get("/v1/contracts", params={"customer_id": customer, "limit": 2}, headers=team.rep.headers)
    assert r.status_code == 200, r.text
    first = r.json()
    assert [c["id"] for c in first["items"]] == [mine[2]["id"], mine[1]["id"]] and first["next_cursor"]
    r = await client.get(
        "/v1/contracts",
        params={"customer_id": customer, "limit": 2, "cursor": first["next_cursor"]},
        headers=team.rep.headers,
    )
    assert [c["id"] for c in r.json()["items"]] == [mine[0]["id"]] and r.json()["next_cursor"] is None
    r = await client.get(
        "/v1/contracts", params={"customer_id": customer, "status": "under_approval"}, headers=team.manager.headers
    )
    assert [c["id"] for c in r.json()["items"]] == [mine[0]["id"]]
    r = await client.get(
        "/v1/contracts", params={"owner_id": team.rep.id, "sort": "created_at"}, headers=team.manager.headers
    )
    assert [c["id"] for c in r.json()["items"]] == [m["id"] for m in mine]
    r = await client.get("/v1/contracts", params={"owner_id": team.rep2.id}, headers=team.rep.headers)
    assert r.json()["items"] == []
    r = await client.get("/v1/contracts", params={"status": "nope"}, headers=team.rep.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"


async def test_a_customer_merge_moves_the_contracts_to_the_survivor_once(
    client: httpx.AsyncClient, sales_app: FastAPI, team: Team
) -> None:
    feed = CustomerFeed(KeepingProducer())  # type: ignore[arg-type]
    survivor = await feed.created(owner_id=team.rep.id, department_path=team.rep.dept, name=f"存续 {unique('c')}")
    duplicate = await feed.created(owner_id=team.rep.id, department_path=team.rep.dept)
    for envelope in feed.published:
        assert await deliver(sales_app, envelope) >= 1
    moved = await draft(client, team.rep, direct(duplicate.id))
    stays = await draft(client, team.rep, direct(survivor.id))
    envelopes = await feed.merged(survivor, duplicate)
    for _ in range(2):  # delivered twice (a redelivery): moved once
        for envelope in envelopes:
            await deliver(sales_app, envelope)
    r = await client.get(f"/v1/contracts/{moved['id']}", headers=team.rep.headers)
    assert (r.json()["customer_id"], r.json()["customer_name"], r.json()["version"]) == (
        survivor.id,
        survivor.snapshot.name,
        2,
    )
    assert (await client.get(f"/v1/contracts/{stays['id']}", headers=team.rep.headers)).json()["version"] == 1
