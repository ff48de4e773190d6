"""Optimistic concurrency (ETag / If-Match), update events and field-level history (查看历史)."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Any

from crm_platform.testing.fixtures import auth, unique

PROBLEM = "application/problem+json"


def new_mobile() -> str:
    return "139" + "".join(random.choices("0123456789", k=8))


class Rep:
    def __init__(self, roles: list[str] | None = None, dept: str | None = None) -> None:
        self.id = unique("rep")
        self.dept = dept or f"/{unique('d')}"
        self.headers = auth(self.id, roles, department_path=self.dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


async def create(client: Any, rep: Rep, **fields: Any) -> dict[str, Any]:
    payload = {"kind": "company", "name": unique("Hist"), **fields}
    r = await client.post("/v1/customers", json=payload, headers=rep.headers)
    assert r.status_code == 201, r.text
    return r.json()


def events_for(customer_events: Any, subject: str, type_: str) -> list[dict[str, Any]]:
    return [r.event for r in customer_events.matching(type=type_, subject=subject)]


async def test_etag_on_get_and_patch(client):
    rep = Rep()
    c = await create(client, rep)
    got = await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    r = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "B"}, headers=rep.match('"1"'))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"' and r.json()["version"] == 2 and r.json()["tier"] == "B"
    # Weak validators and "*" are accepted too.
    r = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "C"}, headers=rep.match('W/"2"'))
    assert r.status_code == 200 and r.headers["etag"] == '"3"'
    r = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "A"}, headers=rep.match("*"))
    assert r.status_code == 200 and r.headers["etag"] == '"4"'
    got = await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)
    assert got.headers["etag"] == '"4"' and got.json()["tier"] == "A"


async def test_patch_without_if_match_is_428(client, customers_db):
    rep = Rep()
    c = await create(client, rep)
    r = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "B"}, headers=rep.headers)
    assert r.status_code == 428, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert "If-Match" in r.json()["detail"]
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["version"] == 1 and stored["tier"] is None


async def test_garbage_if_match_is_422(client):
    rep = Rep()
    c = await create(client, rep)
    r = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "B"}, headers=rep.match("abc"))
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "If-Match", "reason": "not an ETag of this API", "location": "header"}]


async def test_stale_if_match_is_412_and_changes_nothing(client, customer_events, customers_db):
    rep = Rep()
    c = await create(client, rep, industry="retail")
    first = await client.patch(f"/v1/customers/{c['id']}", json={"industry": "finance"}, headers=rep.match('"1"'))
    assert first.status_code == 200
    stale = await client.patch(
        f"/v1/customers/{c['id']}", json={"industry": "mining", "tier": "A"}, headers=rep.match('"1"')
    )
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"].startswith(PROBLEM)
    assert stale.headers["etag"] == '"2"'
    assert stale.json()["current_version"] == 2
    got = await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)
    assert got.json()["industry"] == "finance" and got.json()["tier"] is None and got.headers["etag"] == '"2"'
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["version"] == 2 and stored["industry"] == "finance"
    # A later change on the same customer (same key, same partition) arrives after anything the
    # refused one could have published: exactly two updates, versions 2 and 3.
    marker = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "C"}, headers=rep.match('"2"'))
    assert marker.status_code == 200
    await customer_events.wait_for(type="crm.customer.updated", subject=c["id"], count=2)
    updates = events_for(customer_events, c["id"], "crm.customer.updated")
    assert [e["aggregateversion"] for e in updates] == [2, 3]
    assert all("mining" not in str(e["data"]["changes"]) for e in updates)


async def test_two_concurrent_patches_with_the_same_etag_one_wins(client, customers_db):
    rep = Rep()
    c = await create(client, rep)
    results = await asyncio.gather(
        *(
            client.patch(f"/v1/customers/{c['id']}", json={"industry": f"i{i}"}, headers=rep.match('"1"'))
            for i in range(4)
        )
    )
    assert sorted(r.status_code for r in results) == [200, 412, 412, 412]
    winner = next(r.json() for r in results if r.status_code == 200)
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["version"] == 2 and stored["industry"] == winner["industry"]


async def test_patch_that_changes_nothing_keeps_the_version_and_publishes_nothing(client, customer_events):
    rep = Rep()
    phone = new_mobile()
    c = await create(client, rep, tier="A", tags=["x", "y"], phones=[phone], address={"city": "上海"})
    same = await client.patch(
        f"/v1/customers/{c['id']}",
        # Same values, some written differently: they normalise to what is stored.
        json={
            "tier": "A",
            "tags": ["x", " y "],
            "phones": [f"+86 {phone}"],
            "name": f"  {c['name']} ",
            "address": {"city": "上海"},
        },
        headers=rep.match('"1"'),
    )
    assert same.status_code == 200, same.text
    assert same.headers["etag"] == '"1"' and same.json()["version"] == 1
    assert same.json()["updated_at"] == c["updated_at"]
    # The next real change is version 2 and the only update event.
    real = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "B"}, headers=rep.match('"1"'))
    assert real.headers["etag"] == '"2"'
    await customer_events.wait_for(type="crm.customer.updated", subject=c["id"])
    assert [e["aggregateversion"] for e in events_for(customer_events, c["id"], "crm.customer.updated")] == [2]


async def test_update_event_carries_the_changes(client, customer_events):
    rep = Rep()
    c = await create(client, rep, industry="retail", tags=["a"])
    r = await client.patch(
        f"/v1/customers/{c['id']}",
        json={"industry": "finance", "tags": ["a", "b"], "size": "101-500", "website": None},
        headers=rep.match('"1"'),
    )
    assert r.status_code == 200
    [record] = await customer_events.wait_for(type="crm.customer.updated", subject=c["id"])
    event = record.event
    assert record.key == c["id"].encode()
    assert event["aggregateversion"] == 2 and event["actor"] == rep.id
    changes = {ch["field"]: (ch["old"], ch["new"]) for ch in event["data"]["changes"]}
    # website was None and stays None: not a change.
    assert changes == {"industry": ("retail", "finance"), "tags": (["a"], ["a", "b"]), "size": (None, "101-500")}
    assert event["data"]["customer"]["industry"] == "finance"


async def test_clearing_the_name_is_refused(client):
    rep = Rep()
    c = await create(client, rep)
    r = await client.patch(f"/v1/customers/{c['id']}", json={"name": None}, headers=rep.match('"1"'))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "name"


async def test_history_lists_who_when_old_and_new_in_order(client, customer_events):
    owner = Rep(dept=f"/{unique('d')}/team")
    manager = Rep(["manager"], dept=owner.dept.rsplit("/", 1)[0])
    c = await create(client, owner, industry="retail")
    r1 = await client.patch(
        f"/v1/customers/{c['id']}", json={"industry": "finance", "tier": "A"}, headers=owner.match('"1"')
    )
    r2 = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "B"}, headers=manager.match('"2"'))
    r3 = await client.patch(f"/v1/customers/{c['id']}", json={"description": "大客户"}, headers=owner.match('"3"'))
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]

    # Shown at once (events still in the outbox count), and again once published.
    for _ in range(2):
        h = await client.get(f"/v1/customers/{c['id']}/history", headers=owner.headers)
        assert h.status_code == 200, h.text
        entries = h.json()
        assert [e["version"] for e in entries] == [1, 2, 3, 4]
        assert [e["type"] for e in entries] == ["crm.customer.created"] + ["crm.customer.updated"] * 3
        assert [e["actor"] for e in entries] == [owner.id, owner.id, manager.id, owner.id]
        times = [datetime.fromisoformat(e["at"]) for e in entries]
        assert times == sorted(times)
        assert {"field": "industry", "old": None, "new": "retail"} in entries[0]["changes"]
        assert sorted(entries[1]["changes"], key=lambda x: x["field"]) == [
            {"field": "industry", "old": "retail", "new": "finance"},
            {"field": "tier", "old": None, "new": "A"},
        ]
        assert entries[2]["changes"] == [{"field": "tier", "old": "A", "new": "B"}]
        assert entries[3]["changes"] == [{"field": "description", "old": None, "new": "大客户"}]
        await customer_events.wait_for(type="crm.customer.updated", subject=c["id"], count=3)

    async def all_published() -> bool:
        h = await client.get(f"/v1/customers/{c['id']}/history", headers=owner.headers)
        return all(e["published"] for e in h.json())

    from crm_platform.testing.fixtures import eventually

    await eventually(all_published, message="history entries published")
    # Someone who cannot see the customer cannot see its history either.
    assert (await client.get(f"/v1/customers/{c['id']}/history", headers=Rep().headers)).status_code == 404


async def test_contacts_add_change_remove_with_events_and_history(client, customer_events):
    rep = Rep()
    c = await create(client, rep, contacts=[{"name": "甲", "role": "decision_maker", "is_primary": True}])
    first_contact = c["contacts"][0]
    phone = new_mobile()

    added = await client.post(
        f"/v1/customers/{c['id']}/contacts",
        json={"name": "乙", "role": "handler", "phones": [phone], "is_primary": True},
        headers=rep.headers,
    )
    assert added.status_code == 201, added.text
    assert added.headers["etag"] == '"2"'
    contact = added.json()
    assert contact["phones"] == [f"+86{phone}"] and contact["is_primary"] is True
    got = (await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)).json()
    assert [x["is_primary"] for x in got["contacts"]] == [False, True]  # one primary only

    # Contact patch needs If-Match, and a stale one is refused.
    no_match = await client.patch(
        f"/v1/customers/{c['id']}/contacts/{contact['contact_id']}", json={"title": "CFO"}, headers=rep.headers
    )
    assert no_match.status_code == 428
    stale = await client.patch(
        f"/v1/customers/{c['id']}/contacts/{contact['contact_id']}", json={"title": "CFO"}, headers=rep.match('"1"')
    )
    assert stale.status_code == 412
    changed = await client.patch(
        f"/v1/customers/{c['id']}/contacts/{contact['contact_id']}",
        json={"title": "CFO", "role": "influencer"},
        headers=rep.match('"2"'),
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"3"' and changed.json()["title"] == "CFO"
    bad = await client.patch(
        f"/v1/customers/{c['id']}/contacts/{contact['contact_id']}", json={"role": "boss"}, headers=rep.match('"3"')
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "role"
    missing = await client.patch(
        f"/v1/customers/{c['id']}/contacts/{unique('nope')}", json={"title": "x"}, headers=rep.match('"3"')
    )
    assert missing.status_code == 404

    removed = await client.delete(
        f"/v1/customers/{c['id']}/contacts/{first_contact['contact_id']}", headers=rep.headers
    )
    assert removed.status_code == 200, removed.text
    assert removed.headers["etag"] == '"4"'
    assert [x["contact_id"] for x in removed.json()["contacts"]] == [contact["contact_id"]]

    [a] = await customer_events.wait_for(type="crm.customer.contact_added", subject=c["id"])
    assert a.event["aggregateversion"] == 2 and a.event["data"]["contact"]["phones"] == [f"+86{phone}"]
    [ch] = await customer_events.wait_for(type="crm.customer.contact_changed", subject=c["id"])
    assert ch.event["aggregateversion"] == 3
    assert sorted(ch.event["data"]["changes"], key=lambda x: x["field"]) == [
        {"field": "role", "old": "handler", "new": "influencer"},
        {"field": "title", "old": None, "new": "CFO"},
    ]
    [rm] = await customer_events.wait_for(type="crm.customer.contact_removed", subject=c["id"])
    assert rm.event["aggregateversion"] == 4 and rm.event["data"]["contact_id"] == first_contact["contact_id"]
    assert rm.event["data"]["customer"]["contact_count"] == 1

    entries = (await client.get(f"/v1/customers/{c['id']}/history", headers=rep.headers)).json()
    assert [e["type"].removeprefix("crm.customer.") for e in entries] == [
        "created",
        "contact_added",
        "contact_changed",
        "contact_removed",
    ]
    assert entries[1]["changes"][0]["field"] == "contacts" and entries[1]["changes"][0]["new"]["name"] == "乙"
    assert {"field": f"contacts[{contact['contact_id']}].title", "old": None, "new": "CFO"} in entries[2]["changes"]
    assert entries[3]["changes"] == [{"field": "contacts", "old": first_contact["contact_id"], "new": None}]

    # The new contact's phone now blocks another customer using it.
    dup = await client.post(
        "/v1/customers", json={"kind": "person", "name": unique("P"), "phones": [phone]}, headers=Rep().headers
    )
    assert dup.status_code == 409 and dup.json()["existing"][0]["customer_id"] == c["id"]
