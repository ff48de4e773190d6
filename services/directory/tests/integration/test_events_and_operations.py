"""The event stream as other services use it (read copies by version), and the operations endpoints."""

from __future__ import annotations

import uuid

from pymongo import AsyncMongoClient

from crm_platform.events import EventEnvelope
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.testing.fixtures import auth, unique

EVENT_TYPES = {
    "crm.user.created",
    "crm.user.updated",
    "crm.user.deactivated",
    "crm.user.reactivated",
    "crm.user.password_changed",
    "crm.department.created",
    "crm.department.renamed",
    "crm.department.moved",
    "crm.department.manager_changed",
    "crm.department.deleted",
    "crm.role.created",
    "crm.role.updated",
    "crm.role.deleted",
}


async def test_a_read_copy_built_from_the_events_matches_the_directory(api, client, directory_events, backend):
    east = await api.department("East")
    west = await api.department("West")
    user = await api.user(department=east["id"], language="en")
    await client.patch(f"/v1/users/{user['id']}", json={"name": "Renamed"}, headers={**api.admin, "If-Match": '"1"'})
    await client.post(f"/v1/departments/{east['id']}/move", json={"parent_id": west["id"]}, headers=api.admin)
    records = await directory_events.wait_for(2, type="crm.user.updated", subject=user["id"])
    mongo: AsyncMongoClient = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    db = mongo[f"readcopy_{uuid.uuid4().hex[:8]}"]
    try:
        copy = DirectoryReadModel(db["users"], db["departments"])
        await copy.ensure_indexes()
        envelopes = [
            EventEnvelope.model_validate(r.event)
            for r in directory_events.records
            if r.key in (user["id"].encode(), east["id"].encode())
        ]
        assert {e.type for e in envelopes} >= {"crm.user.created", "crm.department.created", "crm.department.moved"}
        # Delivered newest first, then again in order: stale and repeated events change nothing.
        for envelope in [*reversed(envelopes), *envelopes]:
            await copy.store(envelope)
        kept = await copy.user(user["id"])
        now = (await client.get(f"/v1/users/{user['id']}", headers=api.admin)).json()
        assert kept is not None
        assert (kept["name"], kept["email"], kept["language"]) == ("Renamed", user["email"], "en")
        assert kept["department_path"] == now["department_path"] == f"{api.root_path}/{west['id']}/{east['id']}"
        assert kept["source_version"] == now["version"] == records[-1].event["aggregateversion"]
        assert (await copy.department(east["id"]))["path"] == now["department_path"]
    finally:
        await mongo.close()


async def test_every_event_type_is_in_the_catalogue(client):
    spec = (await client.get("/asyncapi.json")).json()
    text = str(spec)
    assert all(name in text for name in EVENT_TYPES), [n for n in EVENT_TYPES if n not in text]
    assert "crm.directory.v1" in text


async def test_health_readiness_and_metrics(client):
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "directory"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]["outbox_pending"]) == {"users", "departments", "sign_in_events", "roles"}
    assert (await client.get("/metrics")).status_code == 200


async def test_unknown_routes_and_bad_tokens_are_problems(client):
    r = await client.get("/v1/users", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = await client.get("/v1/nothing-here", headers=auth(unique("u")))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
