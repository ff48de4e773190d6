from crm_platform.testing.fixtures import auth


async def test_default_pipeline_and_first_opportunity(client, team, customer_of, pipeline_events):
    r = await client.get("/v1/pipelines", headers=auth("anyone"))
    assert r.status_code == 200, r.text
    default = next(p for p in r.json() if p["is_default"])
    assert [s["stage_id"] for s in default["stages"]] == [
        "initial_contact",
        "needs_confirmed",
        "proposal",
        "negotiation",
        "won",
        "lost",
    ]
    customer = await customer_of(team.rep)
    r = await client.post(
        "/v1/opportunities",
        json={"customer_id": customer.id, "name": "ERP 项目", "amount": "125000.00"},
        headers=team.rep.headers,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["amount"] == "125000.00" and body["currency"] == "CNY" and body["probability"] == 10
    [event] = await pipeline_events.wait_for(type="crm.opportunity.created", subject=body["id"])
    assert event.key == body["id"].encode()
