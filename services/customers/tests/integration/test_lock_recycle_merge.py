"""Lock / unlock (锁定), the recycle bin (回收站: delete, restore, purge) and merging duplicates."""

from __future__ import annotations

import random
from typing import Any

from crm_platform.testing.fixtures import auth, unique

PROBLEM = "application/problem+json"


def new_mobile() -> str:
    return "139" + "".join(random.choices("0123456789", k=8))


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


class Team:
    """A department with a rep and its manager, plus an admin."""

    def __init__(self) -> None:
        self.root = f"/{unique('t')}"
        self.rep = User(f"{self.root}/sales")
        self.manager = User(self.root, ["manager"], "mgr")
        self.admin = User("/", ["admin"], "admin")


async def create(client: Any, user: User, **fields: Any) -> dict[str, Any]:
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": unique("Lock"), **fields}, headers=user.headers
    )
    assert r.status_code == 201, r.text
    return r.json()


def types_for(customer_events: Any, subject: str) -> list[str]:
    return [r.event["type"] for r in customer_events.matching(subject=subject)]


# --- lock ------------------------------------------------------------------------------------------


async def test_locked_customer_rejects_edits_with_who_locked_it(client, customer_events, customers_db):
    team = Team()
    c = await create(client, team.rep, contacts=[{"name": "甲"}])
    contact_id = c["contacts"][0]["contact_id"]

    locked = await client.post(
        f"/v1/customers/{c['id']}/lock", json={"reason": "合同审核中"}, headers=team.manager.headers
    )
    assert locked.status_code == 200, locked.text
    assert locked.json()["locked"]["by"] == team.manager.id and locked.json()["locked"]["reason"] == "合同审核中"
    assert locked.headers["etag"] == '"2"'
    [event] = await customer_events.wait_for(type="crm.customer.locked", subject=c["id"])
    assert event.event["data"]["reason"] == "合同审核中" and event.event["data"]["customer"]["locked"] is True

    attempts = {
        "patch": await client.patch(f"/v1/customers/{c['id']}", json={"tier": "A"}, headers=team.rep.match('"2"')),
        "add contact": await client.post(
            f"/v1/customers/{c['id']}/contacts", json={"name": "乙"}, headers=team.rep.headers
        ),
        "patch contact": await client.patch(
            f"/v1/customers/{c['id']}/contacts/{contact_id}", json={"title": "x"}, headers=team.rep.match('"2"')
        ),
        "delete contact": await client.delete(
            f"/v1/customers/{c['id']}/contacts/{contact_id}", headers=team.rep.headers
        ),
        "release": await client.post(
            f"/v1/customers/{c['id']}/release", json={"reason": "x"}, headers=team.rep.headers
        ),
        "delete (manager)": await client.delete(f"/v1/customers/{c['id']}", headers=team.manager.headers),
    }
    for what, r in attempts.items():
        assert r.status_code == 423, (what, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        body = r.json()
        assert body["locked_by"] == team.manager.id, what
        assert team.manager.id in body["detail"] and "合同审核中" in body["detail"]
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["version"] == 2 and stored["tier"] is None and len(stored["contacts"]) == 1

    # Reading still works; the rep cannot unlock a lock their manager set.
    assert (await client.get(f"/v1/customers/{c['id']}", headers=team.rep.headers)).status_code == 200
    by_rep = await client.post(f"/v1/customers/{c['id']}/unlock", headers=team.rep.headers)
    assert by_rep.status_code == 403

    unlocked = await client.post(f"/v1/customers/{c['id']}/unlock", headers=team.manager.headers)
    assert unlocked.status_code == 200 and unlocked.json()["locked"] is None
    assert unlocked.headers["etag"] == '"3"'
    again = await client.post(f"/v1/customers/{c['id']}/unlock", headers=team.manager.headers)
    assert again.status_code == 200 and again.headers["etag"] == '"3"'  # already unlocked: nothing to do
    r = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "A"}, headers=team.rep.match('"3"'))
    assert r.status_code == 200
    await customer_events.wait_for(type="crm.customer.updated", subject=c["id"])
    assert types_for(customer_events, c["id"]) == [
        "crm.customer.created",
        "crm.customer.locked",
        "crm.customer.unlocked",
        "crm.customer.updated",
    ]
    history = (await client.get(f"/v1/customers/{c['id']}/history", headers=team.rep.headers)).json()
    assert [e["changes"] for e in history[1:3]] == [
        [{"field": "locked", "old": False, "new": True}],
        [{"field": "locked", "old": True, "new": False}],
    ]


async def test_rep_locks_and_unlocks_their_own(client):
    team = Team()
    c = await create(client, team.rep)
    assert (await client.post(f"/v1/customers/{c['id']}/lock", headers=team.rep.headers)).status_code == 200
    other_rep = User(team.rep.dept)
    assert (await client.post(f"/v1/customers/{c['id']}/unlock", headers=other_rep.headers)).status_code == 404
    r = await client.post(f"/v1/customers/{c['id']}/unlock", headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["locked"] is None


# --- recycle bin -----------------------------------------------------------------------------------


async def test_delete_restore_and_purge(client, customer_events, customers_db):
    team = Team()
    other_manager = User(f"/{unique('t')}", ["manager"], "mgr")
    c = await create(client, team.rep)

    by_rep = await client.delete(f"/v1/customers/{c['id']}", headers=team.rep.headers)
    assert by_rep.status_code == 403 and by_rep.headers["content-type"].startswith(PROBLEM)
    by_stranger = await client.delete(f"/v1/customers/{c['id']}", headers=other_manager.headers)
    assert by_stranger.status_code == 404

    deleted = await client.delete(
        f"/v1/customers/{c['id']}", params={"reason": "客户注销"}, headers=team.manager.headers
    )
    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert (
        body["status"] == "deleted"
        and body["deleted"]["by"] == team.manager.id
        and body["deleted"]["reason"] == "客户注销"
    )
    [event] = await customer_events.wait_for(type="crm.customer.deleted", subject=c["id"])
    assert event.event["data"]["reason"] == "客户注销"

    # The rep no longer finds it; the manager does, in the recycle bin and not in the list.
    assert (await client.get(f"/v1/customers/{c['id']}", headers=team.rep.headers)).status_code == 404
    assert c["id"] not in {
        x["id"]
        for x in (await client.get("/v1/customers", params={"q": c["name"]}, headers=team.rep.headers)).json()["items"]
    }
    assert c["id"] not in {
        x["id"]
        for x in (await client.get("/v1/customers", params={"q": c["name"]}, headers=team.manager.headers)).json()[
            "items"
        ]
    }
    binned = await client.get("/v1/recycle-bin", params={"q": c["name"]}, headers=team.manager.headers)
    assert binned.status_code == 200
    assert [x["id"] for x in binned.json()["items"]] == [c["id"]]
    assert (await client.get("/v1/recycle-bin", headers=team.rep.headers)).status_code == 403
    foreign_bin = await client.get("/v1/recycle-bin", params={"q": c["name"]}, headers=other_manager.headers)
    assert foreign_bin.json()["items"] == []
    assert (await client.get(f"/v1/customers/{c['id']}", headers=team.manager.headers)).json()["status"] == "deleted"
    # A deleted customer cannot be edited or deleted twice.
    edit = await client.patch(f"/v1/customers/{c['id']}", json={"tier": "A"}, headers=team.manager.match('"2"'))
    assert edit.status_code == 409
    assert (await client.delete(f"/v1/customers/{c['id']}", headers=team.manager.headers)).status_code == 409

    restored = await client.post(f"/v1/customers/{c['id']}/restore", headers=team.manager.headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "active" and restored.json()["deleted"] is None
    await customer_events.wait_for(type="crm.customer.restored", subject=c["id"])
    assert (await client.get(f"/v1/customers/{c['id']}", headers=team.rep.headers)).status_code == 200
    assert (await client.post(f"/v1/customers/{c['id']}/restore", headers=team.manager.headers)).status_code == 409

    # Purge: only from the bin, only by an admin.
    not_deleted = await client.delete(f"/v1/recycle-bin/{c['id']}", headers=team.admin.headers)
    assert not_deleted.status_code == 409
    assert (await client.delete(f"/v1/customers/{c['id']}", headers=team.manager.headers)).status_code == 200
    by_manager = await client.delete(f"/v1/recycle-bin/{c['id']}", headers=team.manager.headers)
    assert by_manager.status_code == 403 and by_manager.headers["content-type"].startswith(PROBLEM)
    purged = await client.delete(f"/v1/recycle-bin/{c['id']}", headers=team.admin.headers)
    assert purged.status_code == 204
    [event] = await customer_events.wait_for(type="crm.customer.purged", subject=c["id"])
    assert event.event["data"] == {"customer_id": c["id"]} and event.event["actor"] == team.admin.id

    for user in (team.rep, team.manager, team.admin):
        r = await client.get(f"/v1/customers/{c['id']}", headers=user.headers)
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert (await client.get(f"/v1/customers/{c['id']}/history", headers=team.admin.headers)).status_code == 404
    assert (await client.delete(f"/v1/recycle-bin/{c['id']}", headers=team.admin.headers)).status_code == 404
    # Only a tombstone is left: no name, no contacts, no match keys.
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["status"] == "purged" and "name" not in stored and "match_phones" not in stored
    assert types_for(customer_events, c["id"])[-1] == "crm.customer.purged"


async def test_purged_customers_name_is_free_again(client):
    team = Team()
    name = unique("Purged") + " Ltd"
    c = await create(client, team.rep, name=name)
    assert (await client.delete(f"/v1/customers/{c['id']}", headers=team.manager.headers)).status_code == 200
    assert (
        await client.post(
            "/v1/customers", json={"kind": "company", "name": name}, headers=User(f"/{unique('t')}").headers
        )
    ).status_code == 409
    assert (await client.delete(f"/v1/recycle-bin/{c['id']}", headers=team.admin.headers)).status_code == 204
    await create(client, User(f"/{unique('t')}"), name=name)


async def test_restore_is_refused_when_someone_entered_the_customer_meanwhile(client):
    team = Team()
    name = unique("Comeback") + " Ltd"
    c = await create(client, team.rep, name=name)
    assert (await client.delete(f"/v1/customers/{c['id']}", headers=team.manager.headers)).status_code == 200
    # The bin still blocks creating it again...
    assert (
        await client.post("/v1/customers", json={"kind": "company", "name": name}, headers=team.rep.headers)
    ).status_code == 409
    # ... but a rename onto its name (a patch) is checked against active and deleted customers alike.
    other = await create(client, team.rep)
    r = await client.patch(f"/v1/customers/{other['id']}", json={"name": name}, headers=team.rep.match('"1"'))
    assert r.status_code == 409


# --- merge -----------------------------------------------------------------------------------------


async def test_merge_moves_contacts_and_tags_and_frees_the_duplicate(client, customer_events, customers_db):
    team = Team()
    survivor_phone, duplicate_phone = new_mobile(), new_mobile()
    survivor = await create(
        client,
        team.rep,
        name=unique("Survivor") + " 有限公司",
        tags=["vip"],
        phones=[survivor_phone],
        contacts=[{"name": "甲", "is_primary": True}],
    )
    duplicate = await create(
        client,
        User(f"{team.root}/other"),
        name=unique("Dup") + " Co., Ltd.",
        tags=["vip", "price"],
        industry="retail",
        phones=[duplicate_phone],
        contacts=[{"name": "乙", "role": "handler", "is_primary": True}, {"name": "丙"}],
    )

    by_rep = await client.post(
        f"/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=team.rep.headers
    )
    assert by_rep.status_code == 403
    into_self = await client.post(
        f"/v1/customers/{survivor['id']}/merge", json={"duplicate_id": survivor["id"]}, headers=team.manager.headers
    )
    assert into_self.status_code == 422

    r = await client.post(
        f"/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=team.manager.headers
    )
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["id"] == survivor["id"] and merged["version"] == 2
    assert [c["name"] for c in merged["contacts"]] == ["甲", "乙", "丙"]
    assert [c["is_primary"] for c in merged["contacts"]] == [True, False, False]  # the survivor keeps its primary
    assert merged["tags"] == ["vip", "price"]
    assert merged["industry"] == "retail"  # an empty field is filled from the duplicate
    assert set(merged["phones"]) == {f"+86{survivor_phone}", f"+86{duplicate_phone}"}
    assert merged["merged_from"] == [duplicate["id"]]
    assert merged["owner_id"] == team.rep.id

    gone = await client.get(f"/v1/customers/{duplicate['id']}", headers=team.manager.headers)
    assert gone.status_code == 200
    assert gone.json()["status"] == "merged" and gone.json()["merged_into"] == survivor["id"]
    stored = await customers_db["customers"].find_one({"_id": duplicate["id"]})
    assert "unique_name" not in stored  # its unique key is released

    [away] = await customer_events.wait_for(type="crm.customer.merged_away", subject=duplicate["id"])
    assert away.event["data"]["survivor_id"] == survivor["id"]
    assert away.event["data"]["customer"]["status"] == "merged"
    [into] = await customer_events.wait_for(type="crm.customer.merged", subject=survivor["id"])
    assert into.event["data"]["merged_customer_id"] == duplicate["id"]
    assert set(into.event["data"]["moved_contact_ids"]) == {c["contact_id"] for c in duplicate["contacts"]}
    assert into.event["data"]["customer"]["contact_count"] == 3

    # A merged customer is no longer listed, and cannot be edited.
    listed = await client.get("/v1/customers", params={"q": duplicate["name"]}, headers=team.manager.headers)
    assert duplicate["id"] not in {x["id"] for x in listed.json()["items"]}
    edit = await client.patch(f"/v1/customers/{duplicate['id']}", json={"tier": "A"}, headers=team.manager.match('"2"'))
    assert edit.status_code == 409 and edit.json()["merged_into"] == survivor["id"]

    # The duplicate's name and phone now belong to the survivor: creating "the duplicate" again is
    # refused, naming the survivor and its owner (first entered owns), not the merged record.
    for payload in (
        {"kind": "company", "name": duplicate["name"]},
        {"kind": "company", "name": unique("Fresh"), "phones": [duplicate_phone]},
    ):
        again = await client.post("/v1/customers", json=payload, headers=User(f"/{unique('t')}").headers)
        assert again.status_code == 409, again.text
        existing = again.json()["existing"]
        assert [m["customer_id"] for m in existing] == [survivor["id"]], existing
        assert existing[0]["owner_id"] == team.rep.id
    check = await client.post(
        "/v1/customers/duplicate-check", json={"kind": "company", "name": duplicate["name"]}, headers=team.rep.headers
    )
    assert [m["customer_id"] for m in check.json()["exact"]] == [survivor["id"]]

    # Merging again is a no-op: 200, same version, nothing published.
    again = await client.post(
        f"/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=team.manager.headers
    )
    assert again.status_code == 200 and again.json()["version"] == 2 and again.headers["etag"] == '"2"'
    marker = await client.patch(
        f"/v1/customers/{survivor['id']}", json={"tier": "A"}, headers=team.manager.match('"2"')
    )
    assert marker.status_code == 200
    await customer_events.wait_for(type="crm.customer.updated", subject=survivor["id"])
    assert types_for(customer_events, survivor["id"]) == [
        "crm.customer.created",
        "crm.customer.merged",
        "crm.customer.updated",
    ]
    assert types_for(customer_events, duplicate["id"]) == ["crm.customer.created", "crm.customer.merged_away"]

    # The survivor's history records the merge.
    history = (await client.get(f"/v1/customers/{survivor['id']}/history", headers=team.rep.headers)).json()
    assert any(e["type"] == "crm.customer.merged" and duplicate["id"] in e["summary"] for e in history)


async def test_merge_refusals(client):
    team = Team()
    company = await create(client, team.rep)
    person_r = await client.post(
        "/v1/customers", json={"kind": "person", "name": unique("P")}, headers=team.rep.headers
    )
    person = person_r.json()
    r = await client.post(
        f"/v1/customers/{company['id']}/merge", json={"duplicate_id": person["id"]}, headers=team.manager.headers
    )
    assert r.status_code == 422
    invisible = await create(client, User(f"/{unique('t')}"))
    r = await client.post(
        f"/v1/customers/{company['id']}/merge", json={"duplicate_id": invisible["id"]}, headers=team.manager.headers
    )
    assert r.status_code == 404
    # A locked duplicate cannot disappear.
    dup = await create(client, team.rep)
    assert (await client.post(f"/v1/customers/{dup['id']}/lock", headers=team.manager.headers)).status_code == 200
    r = await client.post(
        f"/v1/customers/{company['id']}/merge", json={"duplicate_id": dup["id"]}, headers=team.manager.headers
    )
    assert r.status_code == 423
    # A duplicate merged elsewhere cannot be merged again.
    third = await create(client, team.rep)
    assert (await client.post(f"/v1/customers/{dup['id']}/unlock", headers=team.manager.headers)).status_code == 200
    assert (
        await client.post(
            f"/v1/customers/{third['id']}/merge", json={"duplicate_id": dup["id"]}, headers=team.manager.headers
        )
    ).status_code == 200
    r = await client.post(
        f"/v1/customers/{company['id']}/merge", json={"duplicate_id": dup["id"]}, headers=team.manager.headers
    )
    assert r.status_code == 409 and third["id"] in r.json()["detail"]
    # A stale If-Match on the survivor is 412, and nothing is merged.
    dup2 = await create(client, team.rep)
    r = await client.post(
        f"/v1/customers/{company['id']}/merge", json={"duplicate_id": dup2["id"]}, headers=team.manager.match('"7"')
    )
    assert r.status_code == 412 and r.headers["etag"] == '"1"'
    assert (await client.get(f"/v1/customers/{dup2['id']}", headers=team.rep.headers)).json()["status"] == "active"
