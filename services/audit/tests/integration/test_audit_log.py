"""The audit log from the other services' events, through the real broker and store.

Each auditable event makes exactly one entry (who, when, from where, what); a repeated
delivery makes none; business events make none; search filters and pages newest first;
the CSV export has the same filters and is itself audited; the retention purge deletes
what is older than the retention and nothing else; only administrators read any of it.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import customers as cev
from crm_platform.contracts import directory as dev
from crm_platform.contracts import notifications as nev
from crm_platform.events import EventEnvelope, EventType, to_kafka
from crm_platform.testing.event_feed import EventFeed, customer
from crm_platform.testing.fixtures import auth, eventually, unique
from crm_platform.testing.roles import role_event

ADMIN = {"Authorization": auth("audit-reader", ["admin"])["Authorization"]}
NOW = datetime.now(UTC).replace(microsecond=0)


async def send(
    feed: EventFeed,
    event_type: EventType[Any],
    subject: str,
    data: Any,
    *,
    actor: str | None,
    address: str | None = "203.0.113.7",
    at: datetime = NOW,
) -> EventEnvelope:
    """An event as its service publishes it from a request: with the client's address."""
    feed.versions[subject] += 1
    envelope = event_type.build(
        source="/crm/" + event_type.topic.split(".")[1],
        subject=subject,
        data=data,
        aggregate_version=feed.versions[subject],
        time=at,
        actor=actor,
    ).model_copy(update={"clientaddress": address})
    await feed.resend(envelope)
    return envelope


async def entries(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/audit", params={"limit": 500, **params}, headers=ADMIN)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def user_snapshot(user_id: str, name: str, roles: list[str]) -> dev.UserSnapshot:
    return dev.UserSnapshot(
        user_id=user_id,
        email=f"{user_id}@example.com",
        name=name,
        roles=roles,  # type: ignore[arg-type]
        department_id="hq",
        department_path="/hq",
        created_at=NOW,
        updated_at=NOW,
    )


def webhook(subscription_id: str, owner: str) -> nev.WebhookSubscriptionSnapshot:
    return nev.WebhookSubscriptionSnapshot(
        subscription_id=subscription_id,
        url="https://hooks.example.com/crm",
        event_types=["crm.customer.*"],
        enabled=True,
        owner_id=owner,
        created_at=NOW,
        updated_at=NOW,
    )


async def test_each_auditable_event_makes_one_entry_saying_who_when_where_what(
    feed: EventFeed, client: httpx.AsyncClient, stored: Any
) -> None:
    admin = unique("admin")
    # The directory tells the audit log who the admin is (the name on every entry of theirs).
    created = await send(
        feed, dev.USER_CREATED, admin, dev.UserCreated(user=user_snapshot(admin, "王管理", ["admin"])), actor="boot"
    )
    await stored(created.id)
    survivor, duplicate, purged, user, imported = (unique(p) for p in ("keep", "dup", "gone", "user", "imp"))
    rep = user_snapshot(user, "李雷", ["rep"])
    manager = rep.model_copy(update={"roles": ["rep", "manager"]})
    sent = {
        "customer.merged": await send(
            feed,
            cev.MERGED,
            survivor,
            cev.Merged(customer=customer(survivor, "rep-1", "/hq", NOW), merged_customer_id=duplicate),
            actor=admin,
        ),
        "customer.purged": await send(feed, cev.PURGED, purged, cev.Purged(customer_id=purged), actor=admin),
        "customer.imported": await send(
            feed,
            cev.CUSTOMERS_IMPORTED,
            imported,
            cev.CustomersImported(import_id=imported, total_rows=3, valid_rows=2, imported=2, errors=1, duplicates=0),
            actor=admin,
        ),
        "customer.exported": await send(
            feed,
            cev.CUSTOMERS_EXPORTED,
            unique("export"),
            cev.CustomersExported(export_id="x", filter={"tier": "A"}, sort="name", rows=42),
            actor=admin,
        ),
        "user.roles_changed": await send(
            feed,
            dev.USER_UPDATED,
            user,
            dev.UserUpdated(
                user=manager, changes=[dev.FieldChange(field="roles", old=["rep"], new=["rep", "manager"])]
            ),
            actor=admin,
        ),
        "user.password_changed": await send(
            feed, dev.USER_PASSWORD_CHANGED, user, dev.UserPasswordChanged(user=manager, by="admin"), actor=admin
        ),
        "webhook.subscription_created": await send(
            feed,
            nev.SUBSCRIPTION_CREATED,
            unique("wh"),
            nev.SubscriptionCreated(subscription=webhook(unique("wh"), admin)),
            actor=admin,
        ),
        "auth.signed_in": await send(
            feed,
            dev.SIGNED_IN,
            admin,
            dev.SignedIn(user_id=admin, email=f"{admin}@example.com", client_address="203.0.113.7"),
            actor=admin,
        ),
    }
    for action, envelope in sent.items():
        entry = await stored(envelope.id)
        assert entry["action"] == action, entry
    for action, envelope in sent.items():
        [item] = [e for e in await entries(client, target_id=envelope.subject) if e["entry_id"] == envelope.id]
        assert item["action"] == action
        assert (item["actor_id"], item["actor_name"]) == (admin, "王管理"), item
        assert item["client_address"] == "203.0.113.7"
        assert datetime.fromisoformat(item["at"]) == envelope.time
        assert item["target_id"] == envelope.subject
        assert item["event_type"] == envelope.type
    by_action = {e["action"]: e for e in await entries(client, actor=admin)}
    assert set(by_action) == set(sent)  # the admin's own user.created was by "boot"
    assert by_action["customer.merged"]["details"]["merged_customer_id"] == duplicate
    assert by_action["customer.merged"]["target_type"] == "customer"
    assert by_action["customer.exported"]["details"] == {"filter": {"tier": "A"}, "rows": 42}
    assert by_action["customer.imported"]["details"]["imported"] == 2
    assert by_action["user.roles_changed"]["details"]["changes"] == [
        {"field": "roles", "old": ["rep"], "new": ["rep", "manager"]}
    ]
    assert by_action["webhook.subscription_created"]["details"]["url"] == "https://hooks.example.com/crm"


async def test_a_failed_sign_in_names_no_user_and_has_no_actor(
    feed: EventFeed, client: httpx.AsyncClient, stored: Any
) -> None:
    attempt = uuid.uuid4().hex
    data = dev.SignInFailed(email="nobody@example.com", reason="invalid_credentials", client_address="198.51.100.9")
    envelope = await send(feed, dev.SIGN_IN_FAILED, attempt, data, actor=None, address="198.51.100.9")
    await stored(envelope.id)
    [item] = await entries(client, target_id=attempt)
    assert item["action"] == "auth.sign_in_failed"
    assert item["actor_id"] is None and item["actor_name"] is None
    assert item["client_address"] == "198.51.100.9"
    assert item["details"] == {"email": "nobody@example.com", "reason": "invalid_credentials"}


async def test_role_events_of_the_directory_are_kept_generically(
    producer: AIOKafkaProducer, client: httpx.AsyncClient, stored: Any
) -> None:
    """crm.role.* (administrator-defined roles, another branch) is audited without a rule of its own."""
    role_id = unique("role")
    # A whole definition, as the directory publishes it: every service's role consumer reads this
    # topic in a full run (a partial one would go through their retries to their dead-letter topics).
    envelope = role_event(role_id, 1, permissions=["customers:view"]).model_copy(
        update={"actor": "admin-roles", "clientaddress": "203.0.113.8"}
    )
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(dev.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
    await stored(envelope.id)
    [item] = await entries(client, target_id=role_id)
    assert (item["action"], item["target_type"], item["actor_id"]) == ("role.created", "role", "admin-roles")
    assert item["details"]["role"]["names"]["en"] == f"Role {role_id}"


async def test_a_repeated_event_and_business_events_make_no_entry(
    feed: EventFeed, client: httpx.AsyncClient, stored: Any, audit_app: FastAPI
) -> None:
    cid = unique("cust")
    snap = customer(cid, "rep-1", "/hq", NOW)
    # One key, one partition, in order: once the last is stored, the others were handled.
    updated = await send(feed, cev.CUSTOMER_UPDATED, cid, cev.CustomerUpdated(customer=snap, changes=[]), actor="rep-1")
    by_hand = await send(feed, cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap), actor="rep-1")
    one_row = await send(
        feed, cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap, via="import"), actor="rep-1"
    )
    moved = await send(
        feed,
        dev.USER_UPDATED,
        cid,
        dev.UserUpdated(user=user_snapshot(cid, "韩梅梅", ["rep"]), changes=[], cause="department_moved:east"),
        actor="admin",
    )
    merged = await send(
        feed, cev.MERGED, cid, cev.Merged(customer=snap, merged_customer_id=unique("dup")), actor="admin"
    )
    await feed.resend(merged)  # a repeated delivery
    purged = await send(
        feed, cev.PURGED, cid, cev.Purged(customer_id=cid), actor="admin", at=NOW + timedelta(seconds=1)
    )
    await stored(purged.id)
    repo = audit_app.state.repo
    for envelope in (updated, by_hand, one_row, moved):
        assert await repo.get(envelope.id) is None, envelope.type
    assert [e["action"] for e in await entries(client, target_id=cid)] == ["customer.purged", "customer.merged"]


async def test_search_filters_and_pages_newest_first(feed: EventFeed, client: httpx.AsyncClient, stored: Any) -> None:
    actor = unique("pager")
    sent: list[EventEnvelope] = []
    for i in range(7):
        cid = unique("p")
        sent.append(
            await send(
                feed, cev.PURGED, cid, cev.Purged(customer_id=cid), actor=actor, at=NOW - timedelta(minutes=10 - i)
            )
        )
    other = await send(feed, cev.PURGED, "x-" + actor, cev.Purged(customer_id="x"), actor=unique("other"))
    elsewhere = await send(
        feed, cev.PURGED, "y-" + actor, cev.Purged(customer_id="y"), actor=actor, address="198.51.100.77"
    )
    for envelope in [*sent, other, elsewhere]:
        await stored(envelope.id)
    assert [e["entry_id"] for e in await entries(client, actor=actor, address="198.51.100.77")] == [elsewhere.id]
    newest_first = [e.id for e in reversed(sent)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {
            "actor": actor,
            "address": "203.0.113.7",
            "limit": 3,
            **({"cursor": cursor} if cursor else {}),
        }
        r = await client.get("/v1/audit", params=params, headers=ADMIN)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [e["entry_id"] for e in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (newest_first, 3)

    window = await entries(
        client,
        actor=actor,
        **{"from": (NOW - timedelta(minutes=8)).isoformat(), "to": (NOW - timedelta(minutes=5)).isoformat()},
    )
    assert [e["entry_id"] for e in window] == [sent[4].id, sent[3].id, sent[2].id]
    assert [e["entry_id"] for e in await entries(client, actor=actor, action="customer.merged")] == []
    assert [e["entry_id"] for e in await entries(client, target_type="customer", target_id=sent[0].subject)] == [
        sent[0].id
    ]


async def test_bad_search_parameters_are_refused_naming_the_parameter(client: httpx.AsyncClient) -> None:
    cases = [
        ({"from": "2026-11-20T08:00:00"}, "from"),
        ({"from": "2026-11-20T08:00:00Z", "to": "2026-11-20T07:00:00Z"}, "to"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"sort": "at"}, "sort"),
    ]
    for params, field in cases:
        for path in ("/v1/audit", "/v1/audit/export.csv"):
            if path.endswith(".csv") and field in ("cursor", "limit"):
                continue
            r = await client.get(path, params=params, headers=ADMIN)
            assert r.status_code == 422, (path, params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert field in [e["field"] for e in r.json()["errors"]], r.json()


async def test_the_csv_export_has_the_search_filters_and_is_audited_itself(
    feed: EventFeed, client: httpx.AsyncClient, stored: Any, audit_app: FastAPI
) -> None:
    actor = unique("exp")
    sent = []
    for i in range(3):
        cid = unique("e")
        sent.append(
            await send(feed, cev.PURGED, cid, cev.Purged(customer_id=cid), actor=actor, at=NOW - timedelta(seconds=i))
        )
    for envelope in sent:
        await stored(envelope.id)
    exporter = unique("auditor")
    r = await client.get("/v1/audit/export.csv", params={"actor": actor}, headers=auth(exporter, ["admin"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    text = r.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["entry_id"] for row in rows] == [e.id for e in sent]
    assert {row["action"] for row in rows} == {"customer.purged"}
    assert rows[0]["client_address"] == "203.0.113.7"

    [own] = await entries(client, actor=exporter)
    assert own["action"] == "audit.exported"
    assert own["details"] == {"filter": {"actor_id": actor}, "rows": 3}
    assert own["client_address"] == "127.0.0.1"  # the test client's address, as the service saw it

    # More than the limit (20 in these tests): refused, nothing leaves and nothing is recorded.
    crowd = unique("crowd")
    last = None
    for _ in range(21):
        cid = unique("c")
        last = await send(feed, cev.PURGED, cid, cev.Purged(customer_id=cid), actor=crowd)
    assert last is not None
    await stored(last.id)
    await eventually_count(client, crowd, 21)
    too_many = await client.get("/v1/audit/export.csv", params={"actor": crowd}, headers=auth(exporter, ["admin"]))
    assert too_many.status_code == 422, too_many.text
    assert [e["action"] for e in await entries(client, actor=exporter)] == ["audit.exported"]


async def eventually_count(client: httpx.AsyncClient, actor: str, n: int) -> None:
    async def enough() -> bool:
        return len(await entries(client, actor=actor)) >= n

    await eventually(enough, timeout=30, message=f"{n} entries of {actor}")


async def test_the_retention_purge_deletes_what_is_older_than_the_retention(
    feed: EventFeed, client: httpx.AsyncClient, stored: Any, audit_app: FastAPI, audit_clock: ManualClock
) -> None:
    actor = unique("old")
    now = audit_clock.now()
    ages = {"older": 400, "just_older": 366, "younger": 364, "recent": 1}
    sent = {}
    for name, days in ages.items():
        cid = unique(name)
        sent[name] = await send(
            feed, cev.PURGED, cid, cev.Purged(customer_id=cid), actor=actor, at=now - timedelta(days=days)
        )
    for envelope in sent.values():
        await stored(envelope.id)
    audit = audit_app.state.audit
    deleted = await audit.purge(retention_days=365, batch_size=1)  # batches of one: the loop is exercised
    assert deleted == 2
    left = {e["entry_id"] for e in await entries(client, actor=actor)}
    assert left == {sent["younger"].id, sent["recent"].id}
    assert await audit.purge(retention_days=365, batch_size=1) == 0  # a second replica's pass: nothing


async def test_only_administrators_read_the_audit_log(client: httpx.AsyncClient) -> None:
    for role in ("manager", "rep", "integrator"):
        for path in ("/v1/audit", "/v1/audit/export.csv"):
            r = await client.get(path, headers=auth(unique(role), [role]))
            assert r.status_code == 403, (role, path, r.text)
            assert r.json()["permission"] == "audit:view"
    assert (await client.get("/v1/audit")).status_code == 401


async def test_custom_field_definitions_are_audited_from_every_owning_services_topic(
    producer: AIOKafkaProducer, client: httpx.AsyncClient, stored: Any
) -> None:
    """Administrators' custom field changes are entries: a customers' field defined (customers
    topic), an opportunities' field changed on the pipeline's topic and an interactions' field
    archived on the interactions' topic, each with the module, key, type and what changed."""
    from crm_platform.contracts import custom_fields as fev
    from crm_platform.contracts import interactions as iev
    from crm_platform.contracts import pipeline as pev

    key = f"k{uuid.uuid4().hex[:8]}"
    sent = []
    for module, event_type, topic, data_of in (
        ("customers", fev.FIELD_DEFINED, cev.TOPIC, lambda d: fev.FieldDefined(field=d)),
        (
            "opportunities",
            fev.FIELD_CHANGED,
            pev.TOPIC,
            lambda d: fev.FieldChanged(field=d, changes=[{"field": "required", "old": False, "new": True}]),
        ),
        ("interactions", fev.FIELD_ARCHIVED, iev.TOPIC, lambda d: fev.FieldArchived(field=d)),
    ):
        definition = fev.FieldDefinitionData(
            field_id=f"{module}.{key}",
            module=module,
            key=key,
            type="choice",
            labels={"zh-CN": "级别", "en": "Level"},
            status="active",
            created_at=NOW,
            updated_at=NOW,
        )
        envelope = event_type.build(
            source="/crm/x",
            subject=f"{module}.{key}",
            data=data_of(definition),
            aggregate_version=1,
            time=NOW,
            actor="admin-fields",
        ).model_copy(update={"clientaddress": "203.0.113.9"})
        k, value, headers = to_kafka(envelope.model_dump(mode="json"))
        await producer.send_and_wait(topic, value, key=k, headers=[(h, v.encode()) for h, v in headers.items()])
        sent.append(envelope)
    for envelope in sent:
        await stored(envelope.id)
    found = {}
    for module in ("customers", "opportunities", "interactions"):
        [found[module]] = await entries(client, target_id=f"{module}.{key}")
    defined = found["customers"]
    assert (defined["action"], defined["target_type"]) == ("custom_field.defined", "custom_field")
    assert defined["client_address"] == "203.0.113.9"
    assert defined["details"]["module"] == "customers" and defined["details"]["type"] == "choice"
    changed = found["opportunities"]
    assert changed["action"] == "custom_field.changed"
    assert changed["details"]["changes"] == [{"field": "required", "old": False, "new": True}]
    assert found["interactions"]["action"] == "custom_field.archived"
