"""Custom fields of opportunities (/v1/fields/opportunities): values on create and patch, their
events, and stages that require them (a stage can require ``custom.budget``).

No field defined here is required or has a default: the session's service is shared with every
other test of the pipeline.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from crm_platform.testing.fixtures import EventCollector, unique


def key() -> str:
    return f"f{uuid.uuid4().hex[:8]}"


async def define(client: httpx.AsyncClient, admin: Any, **body: Any) -> dict[str, Any]:
    labels = {"zh-CN": body["key"], "en": body["key"]}
    r = await client.post("/v1/fields/opportunities", json={"labels": labels, **body}, headers=admin.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def pipeline_requiring(client: httpx.AsyncClient, admin: Any, *fields: str) -> httpx.Response:
    return await client.post(
        "/v1/pipelines",
        json={
            "name": unique("定制字段"),
            "stages": [
                {"stage_id": "lead", "name": "线索", "probability": 10},
                {"stage_id": "bid", "name": "投标", "probability": 50, "requirements": {"fields": list(fields)}},
                {"stage_id": "signed", "name": "签约", "probability": 100, "kind": "won"},
                {"stage_id": "lost", "name": "输单", "probability": 0, "kind": "lost"},
            ],
        },
        headers=admin.headers,
    )


async def test_stages_require_custom_fields(
    client: httpx.AsyncClient, team: Any, customer_of: Any, pipeline_events: EventCollector, expect_problem: Any
) -> None:
    budget, maker = key(), key()
    await define(client, team.admin, key=budget, type="money")
    await define(client, team.admin, key=maker, type="user")
    # Only active custom fields of opportunities can be required; the 422 names the requirement.
    body = expect_problem(await pipeline_requiring(client, team.admin, "amount", "custom.nope"), 422)
    assert body["errors"][0]["field"] == "stages[1].requirements.fields[1]"
    r = await pipeline_requiring(client, team.admin, "amount", f"custom.{budget}", f"custom.{maker}")
    assert r.status_code == 201, r.text
    pipeline = r.json()
    customer = await customer_of(team.rep)
    r = await client.post(
        "/v1/opportunities",
        json={"customer_id": customer.id, "name": "投标项目", "pipeline_id": pipeline["id"], "amount": "1000"},
        headers=team.rep.headers,
    )
    assert r.status_code == 201, r.text
    opp = r.json()
    url = f"/v1/opportunities/{opp['id']}"
    # The existing 422 lists every missing requirement, custom fields among them.
    body = expect_problem(await client.post(f"{url}/stage", json={"stage_id": "bid"}, headers=team.rep.headers), 422)
    assert {(m["kind"], m["item"]) for m in body["missing"]} == {
        ("field", f"custom.{budget}"),
        ("field", f"custom.{maker}"),
    }
    assert {e["field"] for e in body["errors"]} == {f"custom.{budget}", f"custom.{maker}"}
    r = await client.patch(
        url,
        json={"custom": {budget: {"amount": "500000", "currency": "CNY"}, maker: "contact-wang"}},
        headers={**team.rep.headers, "If-Match": f'"{opp["version"]}"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["custom"] == {budget: {"amount": "500000.00", "currency": "CNY"}, maker: "contact-wang"}
    updated = await pipeline_events.wait_for(type="crm.opportunity.updated", subject=opp["id"])
    assert updated[-1].event["data"]["opportunity"]["custom"][maker] == "contact-wang"
    r = await client.post(f"{url}/stage", json={"stage_id": "bid"}, headers=team.rep.headers)
    assert r.status_code == 200, r.text
    assert r.json()["stage"]["stage_id"] == "bid"


async def test_values_are_validated_on_create_and_patch(
    client: httpx.AsyncClient, team: Any, customer_of: Any, expect_problem: Any, pipeline_events: EventCollector
) -> None:
    size = key()
    await define(client, team.admin, key=size, type="number", validation={"min": 1, "max": 100})
    customer = await customer_of(team.rep)
    body = {"customer_id": customer.id, "name": "项目", "custom": {size: 500, "nope": 1}}
    problem = expect_problem(await client.post("/v1/opportunities", json=body, headers=team.rep.headers), 422)
    assert {e["field"] for e in problem["errors"]} == {f"custom.{size}", "custom.nope"}
    r = await client.post("/v1/opportunities", json={**body, "custom": {size: 50}}, headers=team.rep.headers)
    assert r.status_code == 201, r.text
    opp = r.json()
    assert opp["custom"] == {size: 50}
    r = await client.patch(
        f"/v1/opportunities/{opp['id']}",
        json={"custom": {size: 0}},
        headers={**team.rep.headers, "If-Match": f'"{opp["version"]}"'},
    )
    assert expect_problem(r, 422)["errors"][0]["field"] == f"custom.{size}"
    # A type lists cannot filter on cannot be flagged filterable, naming the flag.
    r = await client.post(
        "/v1/fields/opportunities",
        json={
            "key": key(),
            "type": "multi_choice",
            "options": [{"key": "x", "labels": {"zh-CN": "x", "en": "x"}}],
            "labels": {"zh-CN": "x", "en": "x"},
            "filterable": True,
        },
        headers=team.admin.headers,
    )
    assert expect_problem(r, 422)["errors"][0]["field"] == "filterable"
    # Definitions are published on the pipeline's own topic.
    r = await client.get(f"/v1/fields/opportunities/{size}/history", headers=team.rep.headers)
    assert [e["type"] for e in r.json()] == ["crm.custom_field.defined"]
    defined = await pipeline_events.wait_for(type="crm.custom_field.defined", subject=f"opportunities.{size}")
    assert defined[0].topic == "crm.pipeline.v1" and defined[0].event["data"]["field"]["type"] == "number"


async def test_lists_filter_on_filterable_fields_through_their_indexes(
    client: httpx.AsyncClient, pipeline_app: Any, team: Any, customer_of: Any, new_opportunity: Any, expect_problem: Any
) -> None:
    """``custom.<key>=<value>`` (and a number's range) on ``GET /v1/opportunities`` for a field
    flagged filterable; its indexes exist exactly while it is flagged and active."""
    level, vip, size, due = key(), key(), key(), key()
    options = [{"key": k, "labels": {"zh-CN": k, "en": k}} for k in ("high", "low")]
    await define(client, team.admin, key=level, type="choice", options=options, filterable=True)
    await define(client, team.admin, key=vip, type="boolean")
    await define(client, team.admin, key=size, type="number", filterable=True)
    await define(client, team.admin, key=due, type="date")
    collection = pipeline_app.state.pipeline.opportunities.repo.opportunities

    async def indexed(k: str) -> list[list[str]]:
        return [list(ix["key"]) async for ix in await collection.list_indexes() if f"custom.{k}" in ix["key"]]

    # The value alone, and behind each of the three visibility prefixes with the default sort.
    assert len(await indexed(level)) == 4 and not await indexed(vip)
    customer = await customer_of(team.rep)
    made = [
        await new_opportunity(team.rep, customer, custom={level: lv, size: n, due: f"2026-12-{n:02d}"})
        for lv, n in (("high", 1), ("high", 5), ("low", 9))
    ]
    await new_opportunity(team.rep, customer)  # no values: matches no filter
    ids = [o["id"] for o in made]

    async def listed(**params: str) -> list[str]:
        r = await client.get(
            "/v1/opportunities", params={"customer_id": customer.id, **params}, headers=team.rep.headers
        )
        assert r.status_code == 200, r.text
        return sorted(o["id"] for o in r.json()["items"])

    assert await listed(**{f"custom.{level}": "high"}) == sorted(ids[:2])
    assert await listed(**{f"custom.{level}": "high", f"custom.{size}": "2..9"}) == [ids[1]]
    assert await listed(**{f"custom.{size}": "..1"}) == [ids[0]]
    # Another rep's list does not show the rep's opportunities, whatever the filter.
    r = await client.get("/v1/opportunities", params={f"custom.{level}": "high"}, headers=team.rep2.headers)
    assert r.status_code == 200 and not {o["id"] for o in r.json()["items"]} & set(ids), r.text
    # Not filterable, unknown, a value the field cannot hold, twice: 422 naming custom.<key>.
    for params, reason in (
        ([(f"custom.{vip}", "true")], "not filterable"),
        ([(f"custom.{due}", "2026-12-05")], "not filterable"),  # a date not flagged
        ([("custom.nope", "x")], "no such custom field"),
        ([(f"custom.{level}", "medium")], "not an option"),
        ([(f"custom.{size}", "..")], "give at least one end"),
        ([(f"custom.{level}", "high"), (f"custom.{level}", "low")], "give one value"),
    ):
        r = await client.get("/v1/opportunities", params=params, headers=team.rep.headers)
        error = expect_problem(r, 422)["errors"][0]
        assert error["field"] == params[0][0] and reason in error["reason"] and error["location"] == "query"
    # Flag cleared: the indexes go and the filter is refused; archived: the same.
    r = await client.patch(
        f"/v1/fields/opportunities/{level}",
        json={"filterable": False},
        headers={**team.admin.headers, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert not await indexed(level)
    r = await client.get("/v1/opportunities", params={f"custom.{level}": "high"}, headers=team.rep.headers)
    assert expect_problem(r, 422)["errors"][0]["field"] == f"custom.{level}"
    r = await client.delete(f"/v1/fields/opportunities/{size}", headers=team.admin.headers)
    assert r.status_code in (200, 204), r.text
    assert not await indexed(size)
    r = await client.get("/v1/opportunities", params={f"custom.{size}": "1"}, headers=team.rep.headers)
    assert expect_problem(r, 422)["errors"][0]["field"] == f"custom.{size}"


async def test_lists_filter_on_date_and_money_fields_through_their_copies(
    client: httpx.AsyncClient, pipeline_app: Any, team: Any, customer_of: Any, new_opportunity: Any, expect_problem: Any
) -> None:
    """``custom.<key>=2026-01-01..2026-03-31`` on a date and ``custom.<key>=1000..5000 CNY`` on money:
    flagging them filterable backfills their copies (``s.cfq_<key>``: the integer day, an amount
    key that orders within its currency) on the opportunities stored before, every later write
    keeps them, the ranges and single values match on them (both ends included, either open), and
    clearing the flag drops the indexes."""
    due, budget = key(), key()
    await define(client, team.admin, key=due, type="date")
    await define(client, team.admin, key=budget, type="money")
    customer = await customer_of(team.rep)
    made = [
        await new_opportunity(team.rep, customer, custom={due: day, budget: {"amount": amount, "currency": cur}})
        for day, amount, cur in (
            ("2026-01-01", "1000", "CNY"),
            ("2026-03-31", "5000.00", "CNY"),
            ("2026-04-01", "3000", "USD"),
        )
    ]
    await new_opportunity(team.rep, customer)  # no values: matches no filter
    ids = [o["id"] for o in made]
    collection = pipeline_app.state.pipeline.opportunities.repo.opportunities

    async def indexed(k: str) -> list[list[str]]:
        return [list(ix["key"]) async for ix in await collection.list_indexes() if f"s.cfq_{k}" in ix["key"]]

    # Flagged after the values were stored: the copies are backfilled before the PATCH answers.
    for field in (due, budget):
        r = await client.patch(
            f"/v1/fields/opportunities/{field}",
            json={"filterable": True},
            headers={**team.admin.headers, "If-Match": '"1"'},
        )
        assert r.status_code == 200, r.text
        assert len(await indexed(field)) == 4  # behind each visibility prefix, and alone
    stored = await collection.find_one({"_id": ids[1]})
    assert stored["s"][f"cfq_{due}"] == 20260331 and stored["s"][f"cfq_{budget}"].startswith("CNY:")

    async def listed(**params: str) -> list[str]:
        r = await client.get(
            "/v1/opportunities", params={"customer_id": customer.id, **params}, headers=team.rep.headers
        )
        assert r.status_code == 200, r.text
        return sorted(o["id"] for o in r.json()["items"])

    assert await listed(**{f"custom.{due}": "2026-01-01..2026-03-31"}) == sorted(ids[:2])
    assert await listed(**{f"custom.{due}": "2026-02-01.."}) == sorted(ids[1:])
    assert await listed(**{f"custom.{due}": "..2026-01-01"}) == [ids[0]]
    assert await listed(**{f"custom.{due}": "2026-04-01"}) == [ids[2]]
    assert await listed(**{f"custom.{budget}": "1000..5000 CNY"}) == sorted(ids[:2])
    assert await listed(**{f"custom.{budget}": "1000.01.. CNY"}) == [ids[1]]
    assert await listed(**{f"custom.{budget}": "..5000 usd"}) == [ids[2]]  # within its currency only
    assert await listed(**{f"custom.{budget}": "1000 CNY"}) == [ids[0]]
    assert await listed(**{f"custom.{due}": "2026-01-01..2026-12-31", f"custom.{budget}": "..2000 CNY"}) == [ids[0]]

    # Every later write keeps the copies: a changed value, a cleared one, a new opportunity.
    r = await client.patch(
        f"/v1/opportunities/{ids[0]}",
        json={"custom": {due: "2026-06-15", budget: None}},
        headers={**team.rep.headers, "If-Match": f'"{made[0]["version"]}"'},
    )
    assert r.status_code == 200, r.text
    later = await new_opportunity(
        team.rep, customer, custom={due: "2026-03-01", budget: {"amount": "2000", "currency": "CNY"}}
    )
    r = await client.post(
        f"/v1/opportunities/{ids[1]}/stage", json={"stage_id": "needs_confirmed"}, headers=team.rep.headers
    )
    assert r.status_code == 200, r.text
    assert await listed(**{f"custom.{due}": "2026-01-01..2026-03-31"}) == sorted([ids[1], later["id"]])
    assert await listed(**{f"custom.{due}": "2026-06-15"}) == [ids[0]]
    assert await listed(**{f"custom.{budget}": "1000..5000 CNY"}) == sorted([ids[1], later["id"]])

    # A value the field cannot hold, a money filter without its currency or in one the field
    # refuses: 422 naming custom.<key>.
    for params, reason in (
        ({f"custom.{due}": "2026-13-01"}, "not an ISO date"),
        ({f"custom.{due}": "2026-01-01..soon"}, "not an ISO date"),
        ({f"custom.{budget}": "1000..5000"}, "amount and a currency"),
        ({f"custom.{budget}": "lots CNY"}, "amount"),
    ):
        r = await client.get("/v1/opportunities", params=params, headers=team.rep.headers)
        error = expect_problem(r, 422)["errors"][0]
        assert error["field"] == next(iter(params)) and reason in error["reason"], error

    # Flag cleared: the indexes go and the filter is refused.
    for field in (due, budget):
        r = await client.patch(
            f"/v1/fields/opportunities/{field}",
            json={"filterable": False},
            headers={**team.admin.headers, "If-Match": '"2"'},
        )
        assert r.status_code == 200, r.text
        assert not await indexed(field)
    r = await client.get("/v1/opportunities", params={f"custom.{due}": "2026-04-01"}, headers=team.rep.headers)
    assert expect_problem(r, 422)["errors"][0]["field"] == f"custom.{due}"
