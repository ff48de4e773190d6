"""Lead scoring over HTTP against the real embedded store and broker, in a leads service of its own
(a private database, so the history the model trains on is only this module's): the rules and
their 422s/403s/412s, history and event; scores stored on every write and re-scored after a rules
change; the model refused on too little history (409 with the counts), trained on generated
converted and disqualified leads, and the reasons of a score naming the features that matter."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_leads.main import create_app
from crm_leads.settings import LeadsSettings
from crm_platform.clock import SystemClock
from crm_platform.contracts import leads as lev
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, collecting, database, service_settings

PROBLEM = "application/problem+json"
REP = auth("score-rep", ["rep"], "/hq/score")
ADMIN_ID = f"score-admin-{uuid.uuid4().hex[:6]}"
ADMIN = auth(ADMIN_ID, ["admin"], "/hq")
RULES = "/v1/leads/scoring/rules"


@pytest.fixture(scope="module")
async def app(backend: Backend) -> AsyncIterator[FastAPI]:
    settings = LeadsSettings(**service_settings(backend, "leads"), scoring_rescore_interval_seconds=3600)
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://leads.test") as c:
        yield c


@pytest.fixture(scope="module")
async def db(app: FastAPI) -> AsyncIterator[Any]:
    settings = app.state.kit.settings
    async with database(settings.mongo_url, settings.mongo_database) as db_:
        yield db_


def body(**fields: Any) -> dict[str, Any]:
    return {"company_name": f"评分测试{uuid.uuid4().hex[:10]}有限公司", **fields}


async def create(client: httpx.AsyncClient, headers: dict[str, str] = REP, **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/leads", json=body(**fields), headers=headers)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def put_rules(client: httpx.AsyncClient, rules: list[dict[str, Any]]) -> httpx.Response:
    current = await client.get(RULES, headers=ADMIN)
    return await client.put(RULES, json={"rules": rules}, headers={**ADMIN, "If-Match": current.headers["etag"]})


REFERRAL = {"field": "source", "op": "in", "value": ["referral"], "points": 20, "label": "Referral"}
PHONE = {"field": "has_phone", "op": "eq", "value": True, "points": 15, "label": "Has a phone"}
WORKED = {"field": "followup_count", "op": "gte", "value": 3, "points": 30, "label": "Followed up 3+ times"}


async def test_rules_are_validated_versioned_and_published(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = await client.get(RULES, headers=REP)
    assert first.status_code == 200, first.text
    version = first.json()["version"]  # 0 when this test runs first in the module
    assert first.headers["etag"] == f'"{version}"'
    seen = {**ADMIN, "If-Match": first.headers["etag"]}

    r = await client.put(RULES, json={"rules": [REFERRAL]}, headers={**REP, "If-Match": first.headers["etag"]})
    assert r.status_code == 403 and r.json()["permission"] == "leads:scoring", r.text
    r = await client.put(RULES, json={"rules": [REFERRAL]}, headers=ADMIN)
    assert r.status_code == 428, r.text

    bad = [
        REFERRAL,
        {**REFERRAL, "op": "gte", "value": 3},
        {**WORKED, "value": "many"},
        {**REFERRAL, "field": "colour"},
        {**REFERRAL, "points": 1000},
    ]
    r = await client.put(RULES, json={"rules": bad}, headers=seen)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert {e["field"] for e in r.json()["errors"]} == {"rules[3].field", "rules[4].points"}
    r = await client.put(RULES, json={"rules": bad[:3]}, headers=seen)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["rules[1].op", "rules[2].value"], r.text
    assert (await client.get(RULES, headers=REP)).json()["version"] == version  # nothing half-written

    bootstrap = app.state.kit.settings.kafka_bootstrap_servers
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        r = await client.put(RULES, json={"rules": [{**REFERRAL, "points": 25}, PHONE]}, headers=seen)
        assert r.status_code == 200 and r.headers["etag"] == f'"{version + 1}"', r.text
        assert r.json()["updated_by"] == ADMIN_ID and len(r.json()["rules"]) == 2
        # Other copies of the service in this session publish under the same fixed key: wait for ours.
        ours = (await client.get(f"{RULES}/history", headers=REP)).json()[-1]["event_id"]
        (got,) = await events.wait_for(id=ours, type=lev.SCORING_RULES_CHANGED.name)
        assert got.key == lev.SCORING_RULES_ID.encode() and got.event["subject"] == lev.SCORING_RULES_ID
        assert [x["points"] for x in got.event["data"]["rules"]] == [25, 15]
    r = await client.put(RULES, json={"rules": [REFERRAL]}, headers=seen)
    assert r.status_code == 412, r.text
    history = (await client.get(f"{RULES}/history", headers=REP)).json()
    assert history[-1]["version"] == version + 1 and history[-1]["actor"] == ADMIN_ID
    assert history[-1]["changes"][0]["new"][0]["points"] == 25


async def test_a_lead_carries_its_score_and_is_rescored_after_a_rules_change(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    r = await put_rules(client, [REFERRAL, PHONE])
    assert r.status_code == 200, r.text
    await app.state.scoring.rescore_until_done()
    lead = await create(client, source="referral")
    assert lead["score"] == 20
    score = (await client.get(f"/v1/leads/{lead['id']}/score", headers=REP)).json()
    assert score["score"] == 20 and score["model"] is None and "computed_at" in score
    assert score["rules"]["reasons"] == [{"label": "Referral", "points": 20}]

    patched = await client.patch(
        f"/v1/leads/{lead['id']}",
        json={"phones": [f"+86139{uuid.uuid4().int % 10**8:08d}"], "status": "contacted"},
        headers={**REP, "If-Match": '"1"'},
    )
    assert patched.status_code == 200 and patched.json()["score"] == 35, patched.text
    plain = await create(client, source="web")
    assert plain["score"] == 0

    # Another rule set: the stored scores follow once the background re-score has passed.
    r = await put_rules(client, [{**REFERRAL, "points": 5}, {**PHONE, "points": 60}])
    assert r.status_code == 200, r.text
    await app.state.scoring.rescore_until_done()
    got = (await client.get(f"/v1/leads/{lead['id']}", headers=REP)).json()
    assert got["score"] == 65 and got["version"] == 2  # re-scored without a new version
    page = (await client.get("/v1/leads", params={"sort": "-score", "limit": 500}, headers=REP)).json()["items"]
    scores = [i["score"] for i in page]
    assert scores == sorted(scores, reverse=True) and page[0]["score"] == 65
    assert (await client.get(f"/v1/leads/{uuid.uuid4()}/score", headers=REP)).status_code == 404
    outsider = auth("score-rep-west", ["rep"], "/hq/west")
    assert (await client.get(f"/v1/leads/{lead['id']}/score", headers=outsider)).status_code == 404


def generated(template: dict[str, Any], n: int, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` converted and ``n`` disqualified leads in their stored shape: referrals that were followed
    up convert, purchased lists are disqualified (with a little noise)."""
    rnd = random.Random(seed)
    base = {k: v for k, v in template.items() if not k.startswith("outbox")}
    out = []
    for i in range(2 * n):
        converted = i % 2 == 0
        typical = rnd.random() < 0.85
        source = "referral" if converted == typical else "purchased_list"
        lead_id = f"{template['_id']}-gen-{i}"
        out.append(
            {
                **base,
                "_id": lead_id,
                "s": {**base["s"], "id": lead_id},
                "status": "converted" if converted else "disqualified",
                "source": source,
                "followup_count": rnd.randint(2, 6) if converted else rnd.randint(0, 2),
                "phones": [],
                "emails": [],
            }
        )
    return out


async def test_training_needs_enough_history_then_explains_scores(
    client: httpx.AsyncClient, app: FastAPI, db: Any
) -> None:
    assert (await client.get("/v1/leads/scoring/model", headers=REP)).status_code == 404
    assert (await client.post("/v1/leads/scoring/model/train", headers=REP)).status_code == 403
    template = await db["leads"].find_one({"_id": (await create(client, source="web"))["id"]})
    try:
        await train_and_explain(client, app, db, template)
    finally:
        # The other tests of the module list leads and score without a model, in any order.
        await db["leads"].delete_many({"_id": {"$regex": f"^{template['_id']}-"}})
        await db["lead_scoring"].delete_one({"_id": lev.SCORING_MODEL_ID})


async def train_and_explain(client: httpx.AsyncClient, app: FastAPI, db: Any, template: dict[str, Any]) -> None:
    await db["leads"].insert_many(generated(template, 10))
    r = await client.post("/v1/leads/scoring/model/train", headers=ADMIN)
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM), r.text
    problem = r.json()
    assert (problem["converted"], problem["disqualified"], problem["needed"]) == (10, 10, 30)
    assert "at least 30 of each" in problem["detail"]

    await db["leads"].insert_many(generated({**template, "_id": f"{template['_id']}-more"}, 30, seed=5))
    bootstrap = app.state.kit.settings.kafka_bootstrap_servers
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        r = await client.post("/v1/leads/scoring/model/train", headers=ADMIN)
        assert r.status_code == 200, r.text
        model = r.json()
        found = await events.wait_for(subject=lev.SCORING_MODEL_ID, type=lev.SCORING_MODEL_TRAINED.name, actor=ADMIN_ID)
        assert any(e.event["data"]["samples"] == model["samples"] for e in found)
    assert model["samples"] == {"converted": 40, "disqualified": 40} and model["trained_by"] == ADMIN_ID
    assert model["cv_auc"] > 0.8 and model["classes"] == ["disqualified", "converted"]
    coef = dict(zip(model["feature_names"], model["coefficients"], strict=True))
    assert coef["source=referral"] > 0 > coef["source=purchased_list"] and coef["followup_count"] > 0
    assert (await client.get("/v1/leads/scoring/model", headers=REP)).json() == model

    lead = await create(client, source="referral")
    score = (await client.get(f"/v1/leads/{lead['id']}/score", headers=REP)).json()
    expected = round((score["rules"]["score"] + 100 * score["model"]["probability"]) / 2)
    assert score["score"] == expected == lead["score"]  # stored on create, with the model
    # Follow-ups (written on the lead by the interactions' events): the model's strongest signal.
    await db["leads"].update_one({"_id": lead["id"]}, {"$set": {"followup_count": 5}})
    worked = (await client.get(f"/v1/leads/{lead['id']}/score", headers=REP)).json()["model"]
    assert worked["probability"] > 0.5 > score["model"]["probability"]
    reasons = {r["feature"]: r["contribution"] for r in worked["reasons"]}
    assert reasons["source=referral"] > 0 and reasons["followup_count"] > 0
    listed = await create(client, source="purchased_list")
    worse = (await client.get(f"/v1/leads/{listed['id']}/score", headers=REP)).json()["model"]
    assert worse["probability"] < 0.5 and worse["reasons"][0]["feature"] == "source=purchased_list"
    assert worse["reasons"][0]["contribution"] < 0


async def test_the_rescore_goes_page_by_page_from_its_stored_cursor(
    client: httpx.AsyncClient, app: FastAPI, db: Any
) -> None:
    scoring = app.state.scoring
    for _ in range(3):
        await create(client, region="华南")
    points = random.randint(1, 99)
    r = await put_rules(client, [{"field": "region", "op": "eq", "value": "华南", "points": points, "label": "South"}])
    assert r.status_code == 200, r.text
    size = (scoring.rescore_page, scoring.rescore_pages_per_tick)
    scoring.rescore_page, scoring.rescore_pages_per_tick = 1, 1
    try:
        assert await scoring.rescore_tick() is False  # one page of one lead, then the tick ends
        first = await db["lead_scoring"].find_one({"_id": "lead-rescore"})
        assert not first["done"] and first["after"] and first["lease_until_ms"] == 0
        assert await scoring.rescore_tick() is False
        second = await db["lead_scoring"].find_one({"_id": "lead-rescore"})
        assert second["after"] != first["after"]  # went on from the stored cursor
    finally:
        scoring.rescore_page, scoring.rescore_pages_per_tick = size
    await scoring.rescore_until_done()
    basis = (await scoring.store.scorer()).basis
    live = [d async for d in db["leads"].find({"deleted": False, "region": "华南"})]
    assert live and all(d["score_basis"] == basis and d["score"] == points == d["s"]["score"] for d in live)
