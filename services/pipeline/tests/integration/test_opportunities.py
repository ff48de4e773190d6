"""Creating, reading, changing and listing opportunities: validation, visibility, ETags, history."""

from __future__ import annotations

import asyncio

from crm_platform.testing.fixtures import unique


async def test_create_validates_every_field_and_reports_them_all(client, team, customer_of, expect_problem):
    customer = await customer_of(team.rep)
    r = await client.post(
        "/v1/opportunities",
        json={
            "customer_id": customer.id,
            "name": "x",
            "amount": "12.345",
            "quotation_amount": "1,000",
            "contact_ids": ["not-a-contact"],
            "probability": 120,
            "expected_close_date": "2026-02-30",
        },
        headers=team.rep.headers,
    )
    body = expect_problem(r, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"probability", "expected_close_date"} <= fields  # request-model errors come first
    r = await client.post(
        "/v1/opportunities",
        json={
            "customer_id": customer.id,
            "name": "x",
            "amount": "12.345",
            "quotation_amount": "1,000",
            "contact_ids": ["not-a-contact"],
            "currency": "XYZ",
        },
        headers=team.rep.headers,
    )
    body = expect_problem(r, 422)
    reasons = {e["field"]: e["reason"] for e in body["errors"]}
    assert set(reasons) == {"currency", "amount", "quotation_amount", "contact_ids[0]"}
    assert "ISO 4217" in reasons["currency"] and "not a contact" in reasons["contact_ids[0]"]
    r = await client.post(
        "/v1/opportunities", json={"customer_id": customer.id, "name": "x", "amount": 125000}, headers=team.rep.headers
    )
    assert expect_problem(r, 422)["errors"][0]["field"] == "amount"  # money is a decimal string, never a float
    r = await client.post(
        "/v1/opportunities", json={"customer_id": customer.id, "name": "x", "stage_id": "won"}, headers=team.rep.headers
    )
    assert expect_problem(r, 422)["errors"][0]["field"] == "stage_id"
    r = await client.post(
        "/v1/opportunities",
        json={"customer_id": customer.id, "name": "x", "pipeline_id": "nope"},
        headers=team.rep.headers,
    )
    assert expect_problem(r, 422)["errors"][0]["field"] == "pipeline_id"


async def test_customer_must_be_known_active_and_visible(client, team, customer_of, feed, arrives, expect_problem):
    async def create(user, customer_id):
        return await client.post(
            "/v1/opportunities", json={"customer_id": customer_id, "name": "x"}, headers=user.headers
        )

    assert "no customer" in expect_problem(await create(team.rep, "no-such-customer"), 422)["errors"][0]["reason"]
    theirs = await customer_of(team.rep2)
    assert expect_problem(await create(team.rep, theirs.id), 422)["errors"][0]["field"] == "customer_id"
    assert (await create(team.manager, theirs.id)).status_code == 201  # the manager sees the department's customers
    pool = await feed.created(owner_id=None, department_path=None, in_pool=True)
    await arrives(pool)
    assert "claim it first" in expect_problem(await create(team.rep, pool.id), 422)["errors"][0]["reason"]
    gone = await customer_of(team.rep)
    await feed.deleted(gone)
    await arrives(gone, status="deleted")
    assert "recycle bin" in expect_problem(await create(team.rep, gone.id), 422)["errors"][0]["reason"]


async def test_amounts_products_and_defaults(client, team, customer_of, pipeline_events):
    customer = await customer_of(team.rep)
    r = await client.post(
        "/v1/opportunities",
        json={
            "customer_id": customer.id,
            "name": "  年度框架协议  ",
            "contact_ids": customer.contact_ids[:1],
            "products": [
                {"name": "许可证", "quantity": 3, "unit_price": "19999.99"},
                {"name": "实施", "quantity": "2.5", "unit_price": "8000"},
            ],
            "expected_close_date": "2026-12-15",
            "source_campaign": "2026 春季展会",
            "notes": "客户关注价格",
        },
        headers=team.rep.headers,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/opportunities/{body['id']}"
    assert body["name"] == "年度框架协议"
    assert body["amount"] == "79999.97"  # 3 × 19999.99 + 2.5 × 8000: the products add up when no amount is given
    assert [p["line_total"] for p in body["products"]] == ["59999.97", "20000.00"]
    assert body["products"][1]["quantity"] == "2.5"
    assert body["probability"] == 10 and body["probability_overridden"] is False
    assert body["weighted_amount"] == "8000.00"
    assert body["stage"]["stage_id"] == "initial_contact" and body["stage"]["name"] == "初步接触"
    assert body["owner_id"] == team.rep.id and body["department_path"] == team.rep.dept
    assert body["next_stage"]["stage_id"] == "needs_confirmed" and body["next_stage"]["missing"] == []
    assert [h["kind"] for h in body["stage_history"]] == ["created"]
    [event] = await pipeline_events.wait_for(type="crm.opportunity.created", subject=body["id"])
    snapshot = event.event["data"]["opportunity"]
    assert event.event["aggregateversion"] == 1 and event.event["source"] == "/crm/pipeline"
    for field in (
        "amount",
        "currency",
        "probability",
        "stage_id",
        "status",
        "owner_id",
        "department_path",
        "customer_id",
        "expected_close_date",
    ):
        assert snapshot[field] == body[field] if field != "stage_id" else snapshot["stage_id"] == "initial_contact"
    assert snapshot["weighted_amount"] == "8000.00" and snapshot["stage_name"] == "初步接触"


async def test_managers_create_for_their_subtree_only(client, team, customer_of, expect_problem):
    customer = await customer_of(team.rep)
    body = {"customer_id": customer.id, "name": "x", "owner_id": team.rep.id, "department_path": team.rep.dept}
    r = await client.post("/v1/opportunities", json=body, headers=team.manager.headers)
    assert r.status_code == 201, r.text
    assert r.json()["owner_id"] == team.rep.id and r.json()["department_id"] == "sales"
    expect_problem(
        await client.post(
            "/v1/opportunities", json={**body, "department_path": "/elsewhere"}, headers=team.manager.headers
        ),
        403,
    )
    expect_problem(
        await client.post("/v1/opportunities", json={**body, "owner_id": team.rep2.id}, headers=team.rep.headers), 403
    )


async def test_visibility_owner_managers_admins(client, team, new_opportunity, expect_problem):
    opp = await new_opportunity(team.rep)
    url = f"/v1/opportunities/{opp['id']}"
    for user in (team.rep, team.manager, team.admin):
        r = await client.get(url, headers=user.headers)
        assert r.status_code == 200 and r.headers["etag"] == '"1"'
    expect_problem(await client.get(url, headers=team.rep2.headers), 404)
    expect_problem(await client.get(url, headers=team.outsider.headers), 404)
    expect_problem(await client.get(url), 401)
    expect_problem(await client.get(url, headers={"Authorization": "Bearer nonsense"}), 401)
    expect_problem(await client.patch(url, json={"name": "y"}, headers={**team.rep2.headers, "If-Match": '"1"'}), 404)


async def test_patch_needs_if_match_and_records_every_change(
    client, team, new_opportunity, pipeline_events, expect_problem
):
    opp = await new_opportunity(team.rep, amount="1000.00")
    url = f"/v1/opportunities/{opp['id']}"
    expect_problem(await client.patch(url, json={"name": "y"}, headers=team.rep.headers), 428)
    expect_problem(await client.patch(url, json={"name": "y"}, headers=team.rep.match('"7"')), 412)
    r = await client.patch(
        url,
        json={"amount": "2500.50", "expected_close_date": "2026-11-30", "probability": 35, "notes": "预算已批"},
        headers=team.rep.match('"1"'),
    )
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    body = r.json()
    assert body["amount"] == "2500.50" and body["probability"] == 35 and body["probability_overridden"]
    assert body["weighted_amount"] == "875.18"  # 2500.50 × 35 %, rounded half up
    [event] = await pipeline_events.wait_for(type="crm.opportunity.updated", subject=opp["id"])
    changes = {c["field"]: (c["old"], c["new"]) for c in event.event["data"]["changes"]}
    assert changes["amount"] == ("1000.00", "2500.50") and changes["probability"] == (10, 35)
    assert changes["expected_close_date"] == (None, "2026-11-30") and changes["notes"] == (None, "预算已批")
    same = await client.patch(url, json={"notes": "预算已批"}, headers=team.rep.match('"2"'))
    assert same.status_code == 200 and same.headers["etag"] == '"2"'  # nothing changed: no version, no event
    expect_problem(
        await client.patch(url, json={"currency": "JPY"}, headers=team.rep.match('"2"')), 422
    )  # 2500.50 has no yen form
    usd = await client.patch(url, json={"currency": "usd"}, headers=team.rep.match('"2"'))
    assert usd.json()["currency"] == "USD" and usd.json()["amount"] == "2500.50"
    history = (await client.get(f"{url}/history", headers=team.manager.headers)).json()
    assert [h["version"] for h in history] == [1, 2, 3]
    assert (
        history[1]["actor"] == team.rep.id
        and {"field": "amount", "old": "1000.00", "new": "2500.50"} in history[1]["changes"]
    )
    assert history[2]["changes"] == [{"field": "currency", "old": "CNY", "new": "USD"}]


async def test_probability_override_is_kept_across_moves_until_reset(client, team, new_opportunity):
    opp = await new_opportunity(team.rep, probability=25)
    url = f"/v1/opportunities/{opp['id']}"
    assert opp["probability"] == 25 and opp["stage_probability"] == 10
    moved = (await client.post(f"{url}/stage", json={"stage_id": "needs_confirmed"}, headers=team.rep.headers)).json()
    assert moved["probability"] == 25 and moved["stage_probability"] == 20
    reset = await client.patch(url, json={"probability": None}, headers=team.rep.match(f'"{moved["version"]}"'))
    assert reset.json()["probability"] == 20 and not reset.json()["probability_overridden"]
    later = (await client.post(f"{url}/stage", json={"stage_id": "initial_contact"}, headers=team.rep.headers)).json()
    assert later["probability"] == 10  # no override: follows the stage


async def test_concurrent_patches_with_the_same_etag_one_wins(client, team, new_opportunity):
    opp = await new_opportunity(team.rep)
    url = f"/v1/opportunities/{opp['id']}"
    results = await asyncio.gather(
        *(client.patch(url, json={"notes": f"n{i}"}, headers=team.rep.match('"1"')) for i in range(5))
    )
    assert sorted(r.status_code for r in results) == [200, 412, 412, 412, 412]


async def test_lists_filter_sort_and_page(client, team, customer_of, new_opportunity, expect_problem):
    customer = await customer_of(team.rep)
    tag = unique("L")
    amounts = ["500.00", "1500.00", "2500.00", "3500.00", "4500.00"]
    for i, amount in enumerate(amounts):
        await new_opportunity(
            team.rep, customer, name=f"{tag}-{i}", amount=amount, expected_close_date=f"2026-1{i % 3}-01"
        )
    other = await new_opportunity(team.rep2, name=f"{tag}-other", amount="999.00")
    base = {"q": tag}
    mine = (await client.get("/v1/opportunities", params=base, headers=team.rep.headers)).json()
    assert {o["name"] for o in mine["items"]} == {f"{tag}-{i}" for i in range(5)}  # not rep2's
    everyone = (
        await client.get("/v1/opportunities", params={**base, "include_total": True}, headers=team.manager.headers)
    ).json()
    assert everyone["total"] == 6
    r = await client.get(
        "/v1/opportunities",
        params={**base, "amount_min": "1500", "amount_max": "3500.00", "sort": "-amount"},
        headers=team.rep.headers,
    )
    assert [o["amount"] for o in r.json()["items"]] == ["3500.00", "2500.00", "1500.00"]
    r = await client.get(
        "/v1/opportunities",
        params={**base, "expected_close_from": "2026-11-01", "expected_close_to": "2026-11-01"},
        headers=team.rep.headers,
    )
    assert sorted(o["name"] for o in r.json()["items"]) == [f"{tag}-1", f"{tag}-4"]
    r = await client.get(
        "/v1/opportunities",
        params={**base, "customer_id": customer.id, "department": team.root},
        headers=team.manager.headers,
    )
    assert len(r.json()["items"]) == 5
    r = await client.get("/v1/opportunities", params={**base, "owner_id": team.rep2.id}, headers=team.manager.headers)
    assert [o["id"] for o in r.json()["items"]] == [other["id"]]
    seen: list[str] = []
    cursor = None
    while True:
        params = {**base, "sort": "expected_close_date,-amount", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/opportunities", params=params, headers=team.rep.headers)).json()
        seen += [o["amount"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["3500.00", "500.00", "4500.00", "1500.00", "2500.00"]
    expect_problem(await client.get("/v1/opportunities", params={"sort": "colour"}, headers=team.rep.headers), 422)
    expect_problem(await client.get("/v1/opportunities", params={"sort": "a,b,c,d,e"}, headers=team.rep.headers), 422)
    expect_problem(await client.get("/v1/opportunities", params={"cursor": "garbage"}, headers=team.rep.headers), 422)
    expect_problem(await client.get("/v1/opportunities", params={"amount_min": "lots"}, headers=team.rep.headers), 422)
    expect_problem(await client.get("/v1/opportunities", params={"status": "maybe"}, headers=team.rep.headers), 422)


async def test_documents_attach_and_detach(client, team, new_opportunity, expect_problem):
    opp = await new_opportunity(team.rep)
    url = f"/v1/opportunities/{opp['id']}"
    r = await client.post(
        f"{url}/documents",
        json={"kind": "requirements", "name": "需求说明书 v1", "url": "https://docs.example.com/r1"},
        headers=team.rep.headers,
    )
    assert r.status_code == 201 and r.headers["etag"] == '"2"'
    document = r.json()
    expect_problem(
        await client.post(
            f"{url}/documents", json={"kind": "Bad Kind", "name": "x", "url": "ftp://x"}, headers=team.rep.headers
        ),
        422,
    )
    got = (await client.get(url, headers=team.rep.headers)).json()
    assert [d["kind"] for d in got["documents"]] == ["requirements"]
    r = await client.delete(f"{url}/documents/{document['document_id']}", headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["documents"] == []
    expect_problem(await client.delete(f"{url}/documents/{document['document_id']}", headers=team.rep.headers), 404)


async def test_unknown_routes_and_bad_json_are_problems(client, team, expect_problem):
    expect_problem(await client.get("/v1/nothing-here", headers=team.rep.headers), 404)
    r = await client.post(
        "/v1/opportunities", content=b"{not json", headers={**team.rep.headers, "Content-Type": "application/json"}
    )
    assert expect_problem(r, 422)["errors"][0]["field"] == "body"


async def test_an_amount_from_products_follows_them_until_an_amount_is_given(client, team, new_opportunity):
    opp = await new_opportunity(team.rep, products=[{"name": "A", "quantity": 2, "unit_price": "100.00"}])
    url = f"/v1/opportunities/{opp['id']}"
    assert opp["amount"] == "200.00"
    r = await client.patch(
        url, json={"products": [{"name": "A", "quantity": 3, "unit_price": "100.00"}]}, headers=team.rep.match('"1"')
    )
    assert r.json()["amount"] == "300.00"
    r = await client.patch(
        url, json={"amount": "250.00"}, headers=team.rep.match('"2"')
    )  # a discount: the rep's figure wins
    r = await client.patch(
        url, json={"products": [{"name": "A", "quantity": 4, "unit_price": "100.00"}]}, headers=team.rep.match('"3"')
    )
    assert r.json()["amount"] == "250.00" and r.json()["products"][0]["line_total"] == "400.00"
