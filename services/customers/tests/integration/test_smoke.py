from crm_platform.testing.fixtures import auth, unique


async def test_create_and_read(client, customer_events):
    name = unique("Acme")
    r = await client.post("/v1/customers", json={"kind": "company", "name": f"{name} 有限公司"}, headers=auth("rep-1"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["etag"] == '"1"'
    got = await client.get(f"/v1/customers/{body['id']}", headers=auth("rep-1"))
    assert got.status_code == 200
    events = await customer_events.wait_for(type="crm.customer.created", subject=body["id"])
    assert events[0].key == body["id"].encode()
