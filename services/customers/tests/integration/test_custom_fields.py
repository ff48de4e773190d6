"""Custom fields of customers: definitions (/v1/fields/customers), values on create and patch,
their events, list filters with their index (with tag filters too), archiving.

The service runs in its own database here: definitions apply to every write of a database, and a
required field would refuse the creates of every other test sharing the session's service.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crm_customers.main import create_app
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import EventCollector, auth, collecting, running, unique
from crm_platform.testing.roles import role_event

from ..conftest import isolated_settings

ADMIN = auth("admin-fields", ["admin"], department_path="/hq")
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def events(backend: Backend) -> AsyncIterator[EventCollector]:
    async with collecting(backend.kafka_bootstrap, ["crm.customers.v1"]) as collector:
        yield collector


@pytest.fixture(scope="module")
async def app_and_client(backend: Backend, events: EventCollector) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = isolated_settings(backend, "fields")
    app = create_app(settings)
    async with running(app, "http://customers.test") as client:
        yield app, client


@pytest.fixture
def client(app_and_client: tuple[Any, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


def labels(en: str) -> dict[str, str]:
    return {"zh-CN": f"{en}（中文）", "en": en}


CHOICES = [
    {"key": "high", "labels": {"zh-CN": "高", "en": "High"}},
    {"key": "low", "labels": {"zh-CN": "低", "en": "Low"}},
]


async def define(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/fields/customers", json={"labels": labels(body["key"]), **body}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == '"1"'
    assert r.headers["Location"] == f"/v1/fields/customers/{body['key']}"
    return dict(r.json())


async def create(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> httpx.Response:
    body = {"kind": "company", "name": f"宁波{uuid.uuid4().hex[:8]}实业有限公司", **extra}
    return await client.post("/v1/customers", json=body, headers=headers)


def key() -> str:
    return f"f{uuid.uuid4().hex[:8]}"


async def test_administrators_define_fields_everyone_reads_them(client: httpx.AsyncClient) -> None:
    k = key()
    field = await define(
        client, key=k, type="choice", options=CHOICES, help={"zh-CN": "帮助", "en": "Help"}, filterable=True
    )
    assert field["id"] == f"customers.{k}" and field["status"] == "active" and field["version"] == 1
    rep = auth(unique("rep"))
    r = await client.get("/v1/fields/customers", headers=rep)
    assert r.status_code == 200
    assert k in [f["key"] for f in r.json()]
    r = await client.get(f"/v1/fields/customers/{k}", headers=rep)
    assert r.status_code == 200 and r.json()["options"][0]["labels"] == {"zh-CN": "高", "en": "High"}
    # Changing definitions needs fields:manage (administrators).
    r = await client.post(
        "/v1/fields/customers", json={"key": key(), "type": "text", "labels": labels("x")}, headers=rep
    )
    assert r.status_code == 403 and r.json()["permission"] == "fields:manage"
    # The same key again, a built-in field's name, a bad rule: refused, naming what is wrong.
    r = await client.post("/v1/fields/customers", json={"key": k, "type": "text", "labels": labels("x")}, headers=ADMIN)
    assert r.status_code == 409
    r = await client.post(
        "/v1/fields/customers", json={"key": "tier", "type": "text", "labels": labels("x")}, headers=ADMIN
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "key"
    r = await client.post(
        "/v1/fields/customers",
        json={"key": key(), "type": "text", "labels": labels("x"), "validation": {"decimals": 2}},
        headers=ADMIN,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "validation.decimals"


async def test_values_are_validated_defaulted_and_published(client: httpx.AsyncClient, events: EventCollector) -> None:
    budget, level, note = key(), key(), key()
    await define(client, key=budget, type="money", required=True)
    await define(client, key=level, type="choice", options=CHOICES, default="low")
    await define(client, key=note, type="text", validation={"max_length": 5})
    rep = auth(unique("rep"), department_path="/hq/east")

    # Required missing, an unknown key, a bad value: one 422 naming each, and nothing stored.
    name = f"温州{uuid.uuid4().hex[:8]}有限公司"
    r = await client.post(
        "/v1/customers",
        json={"kind": "company", "name": name, "custom": {"nope": 1, note: "too long"}},
        headers=rep,
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    fields = {e["field"]: e for e in r.json()["errors"]}
    assert set(fields) == {f"custom.{budget}", "custom.nope", f"custom.{note}"}
    assert fields[f"custom.{budget}"]["code"] == "missing"
    assert fields[f"custom.{note}"]["code"] == "string_too_long"
    r = await client.get("/v1/customers", params={"q": name}, headers=rep)
    assert r.json()["items"] == []

    r = await create(client, rep, custom={budget: {"amount": "150000", "currency": "CNY"}})
    assert r.status_code == 201, r.text
    customer = r.json()
    assert customer["custom"] == {budget: {"amount": "150000.00", "currency": "CNY"}, level: "low"}
    created = await events.wait_for(type="crm.customer.created", subject=customer["id"])
    assert created[0].event["data"]["customer"]["custom"] == customer["custom"]

    # A patch changes only what it sends; a required field cannot be cleared.
    url = f"/v1/customers/{customer['id']}"
    r = await client.patch(url, json={"custom": {budget: None}}, headers={**rep, "If-Match": '"1"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == f"custom.{budget}"
    r = await client.patch(url, json={"custom": {level: "high", note: "注意"}}, headers={**rep, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["custom"] == {budget: {"amount": "150000.00", "currency": "CNY"}, level: "high", note: "注意"}
    assert r.headers["ETag"] == '"2"'
    updated = await events.wait_for(type="crm.customer.updated", subject=customer["id"])
    changes = {c["field"]: c for c in updated[0].event["data"]["changes"]}
    assert changes[f"custom.{level}"] == {"field": f"custom.{level}", "old": "low", "new": "high"}
    r = await client.get(f"{url}/history", headers=rep)
    assert any(c["field"] == f"custom.{level}" for entry in r.json() for c in entry["changes"])
    # The module's definitions are shared by this file's tests: no required field is left behind.
    r = await client.delete(f"/v1/fields/customers/{budget}", headers=ADMIN)
    assert r.status_code == 200


async def test_definition_changes_are_versioned_events_with_history(
    client: httpx.AsyncClient, events: EventCollector
) -> None:
    k = key()
    await define(client, key=k, type="choice", options=CHOICES)
    url = f"/v1/fields/customers/{k}"
    r = await client.patch(url, json={"required": True}, headers=ADMIN)
    assert r.status_code == 428
    # Options are never dropped or re-keyed (stored values use them); they may be deactivated.
    r = await client.patch(url, json={"options": CHOICES[:1]}, headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "options"
    r = await client.patch(
        url, json={"options": [CHOICES[0], {**CHOICES[1], "active": False}]}, headers={**ADMIN, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.headers["ETag"] == '"2"'
    r = await client.patch(url, json={"position": 3}, headers={**ADMIN, "If-Match": '"1"'})
    assert r.status_code == 412
    r = await client.delete(url, headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "archived"
    subject = f"customers.{k}"
    for type_, version in (("defined", 1), ("changed", 2), ("archived", 3)):
        found = await events.wait_for(type=f"crm.custom_field.{type_}", subject=subject)
        assert found[0].event["aggregateversion"] == version
        assert found[0].event["data"]["field"]["field_id"] == subject
    r = await client.get(f"{url}/history", headers=ADMIN)
    assert [e["type"] for e in r.json()] == [f"crm.custom_field.{t}" for t in ("defined", "changed", "archived")]
    # Archived: out of the list (unless asked), no longer changeable.
    r = await client.get("/v1/fields/customers", headers=ADMIN)
    assert k not in [f["key"] for f in r.json()]
    r = await client.get("/v1/fields/customers", params={"include_archived": "true"}, headers=ADMIN)
    assert k in [f["key"] for f in r.json()]
    r = await client.patch(url, json={"position": 3}, headers={**ADMIN, "If-Match": '"3"'})
    assert r.status_code == 409


async def test_archived_fields_keep_their_values_and_take_no_new_ones(client: httpx.AsyncClient) -> None:
    k = key()
    await define(client, key=k, type="number", validation={"min": 0})
    rep = auth(unique("rep"))
    r = await create(client, rep, custom={k: 5})
    assert r.status_code == 201, r.text
    customer = r.json()
    r = await client.delete(f"/v1/fields/customers/{k}", headers=ADMIN)
    assert r.status_code == 200
    r = await client.get(f"/v1/customers/{customer['id']}", headers=rep)
    assert r.json()["custom"][k] == 5
    r = await client.patch(
        f"/v1/customers/{customer['id']}", json={"custom": {k: 6}}, headers={**rep, "If-Match": '"1"'}
    )
    assert r.status_code == 422 and "archived" in r.json()["errors"][0]["reason"]
    # Other changes still pass: the stored value stays as it is.
    r = await client.patch(
        f"/v1/customers/{customer['id']}", json={"industry": "制造"}, headers={**rep, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.json()["custom"][k] == 5


async def test_lists_filter_on_filterable_fields_through_their_index(
    app_and_client: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = app_and_client
    level, vip = key(), key()
    await define(client, key=level, type="choice", options=CHOICES, filterable=True)
    await define(client, key=vip, type="boolean")
    collection = app.state.customers.repo.collection
    indexed = [list(ix["key"]) async for ix in await collection.list_indexes()]
    # The value alone, and behind each of the four visibility prefixes with the default sort.
    assert len([fields for fields in indexed if f"custom.{level}" in fields]) == 5, indexed
    assert not [fields for fields in indexed if f"custom.{vip}" in fields]
    rep = auth(unique("rep"))
    high = [(await create(client, rep, custom={level: "high"})).json()["id"] for _ in range(2)]
    await create(client, rep, custom={level: "low"})
    await create(client, rep)
    r = await client.get("/v1/customers", params={f"custom.{level}": "high"}, headers=rep)
    assert r.status_code == 200, r.text
    assert sorted(c["id"] for c in r.json()["items"]) == sorted(high)
    # A field that is not filterable, an unknown one, a value the field cannot hold: 422 naming it.
    for params, reason in (
        ({f"custom.{vip}": "true"}, "not filterable"),
        ({"custom.nope": "x"}, "no such custom field"),
        ({f"custom.{level}": "medium"}, "not an option"),
    ):
        r = await client.get("/v1/customers", params=params, headers=rep)
        assert r.status_code == 422, r.text
        error = r.json()["errors"][0]
        assert error["field"] == next(iter(params)) and reason in error["reason"] and error["location"] == "query"
    # A number field takes a range (both ends included, either left open).
    size = key()
    await define(client, key=size, type="number", filterable=True)
    sized = {n: (await create(client, rep, custom={size: n})).json()["id"] for n in (1, 5, 9)}
    r = await client.get("/v1/customers", params={f"custom.{size}": "2..9"}, headers=rep)
    assert sorted(c["id"] for c in r.json()["items"]) == sorted([sized[5], sized[9]])
    r = await client.get("/v1/customers", params={f"custom.{size}": "..1"}, headers=rep)
    assert [c["id"] for c in r.json()["items"]] == [sized[1]]
    # The export takes the same filter.
    r = await client.get("/v1/customers/export.csv", params={f"custom.{level}": "high"}, headers=rep)
    assert r.status_code == 200 and len(r.text.strip().splitlines()) == 3  # header + 2
    # Not filterable any more: the index goes, and the filter is refused.
    r = await client.patch(
        f"/v1/fields/customers/{level}", json={"filterable": False}, headers={**ADMIN, "If-Match": '"1"'}
    )
    assert r.status_code == 200
    indexed = [list(ix["key"]) async for ix in await collection.list_indexes()]
    assert not [fields for fields in indexed if f"custom.{level}" in fields], indexed
    r = await client.get("/v1/customers", params={f"custom.{level}": "high"}, headers=rep)
    assert r.status_code == 422


async def test_date_and_money_fields_filter_through_copies_backfilled_when_flagged(
    app_and_client: tuple[Any, httpx.AsyncClient], events: EventCollector
) -> None:
    """Values stored before a date or money field became filterable are found once it is: the
    flag backfills each customer's copy (``s.cfq_<key>``) and indexes it; later writes keep it,
    and a changed or cleared value moves or leaves the filter's matches. Money ranges stay within
    the currency asked for. The export record keeps the filter as asked."""
    app, client = app_and_client
    renewal, budget = key(), key()
    await define(client, key=renewal, type="date")
    await define(client, key=budget, type="money", validation={"currencies": ["CNY", "USD"]})
    rep_id = unique("rep")
    rep = auth(rep_id)

    async def made(**custom: Any) -> str:
        r = await create(client, rep, custom=custom)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    jan = await made(**{renewal: "2026-01-15", budget: {"amount": "800", "currency": "CNY"}})
    mar = await made(**{renewal: "2026-03-01", budget: {"amount": "5000.50", "currency": "CNY"}})
    dec = await made(**{renewal: "2026-12-31", budget: {"amount": "5000.50", "currency": "USD"}})
    none = await made()
    # Not filterable yet: refused, naming the field.
    r = await client.get("/v1/customers", params={f"custom.{renewal}": "2026-01-01.."}, headers=rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == f"custom.{renewal}", r.text

    for field in (renewal, budget):
        r = await client.patch(
            f"/v1/fields/customers/{field}", json={"filterable": True}, headers={**ADMIN, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
    collection = app.state.customers.repo.collection
    stored = await collection.find_one({"_id": jan})
    assert stored is not None
    assert stored["s"][f"cfq_{renewal}"] == 20260115 and stored["s"][f"cfq_{budget}"].startswith("CNY:")
    indexed = [list(ix["key"]) async for ix in await collection.list_indexes()]
    assert len([f for f in indexed if f"s.cfq_{renewal}" in f]) == 5, indexed

    async def ids(text: str, field: str = renewal) -> list[str]:
        r = await client.get("/v1/customers", params={f"custom.{field}": text, "limit": 100}, headers=rep)
        assert r.status_code == 200, r.text
        return sorted(c["id"] for c in r.json()["items"])

    assert await ids("2026-01-01..2026-03-01") == sorted([jan, mar])  # both ends included
    assert await ids("2026-03-02..") == [dec]
    assert await ids("..2026-01-15") == [jan]
    assert await ids("2026-12-31") == [dec]
    assert await ids("1000..5000.50 CNY", budget) == [mar]
    assert await ids("..10000 CNY", budget) == sorted([jan, mar])
    assert await ids("5000.5 usd", budget) == [dec]
    assert none not in await ids("..2099-12-31")
    for text, reason in (("2026-02-30", "not an ISO date"), ("2026-01-01...", "not an ISO date")):
        r = await client.get("/v1/customers", params={f"custom.{renewal}": text}, headers=rep)
        assert r.status_code == 422 and reason in r.json()["errors"][0]["reason"], r.text
    r = await client.get("/v1/customers", params={f"custom.{budget}": "1000..5000"}, headers=rep)
    assert r.status_code == 422 and "currency" in r.json()["errors"][0]["reason"], r.text

    # Later writes keep the copies: a moved date, a cleared one, a new customer.
    got = await client.get(f"/v1/customers/{jan}", headers=rep)
    r = await client.patch(
        f"/v1/customers/{jan}",
        json={"custom": {renewal: "2026-12-01"}},
        headers={**rep, "If-Match": got.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    got = await client.get(f"/v1/customers/{mar}", headers=rep)
    r = await client.patch(
        f"/v1/customers/{mar}", json={"custom": {renewal: None}}, headers={**rep, "If-Match": got.headers["ETag"]}
    )
    assert r.status_code == 200, r.text
    late = await made(**{renewal: "2026-12-15"})
    assert await ids("2026-12-01..") == sorted([jan, dec, late])
    assert await ids("..2026-06-30") == []

    # The export takes the filter, and its record keeps it as asked (not as the store matched it).
    r = await client.get("/v1/customers/export.csv", params={f"custom.{renewal}": "2026-12-01.."}, headers=rep)
    assert r.status_code == 200 and len(r.text.strip().splitlines()) == 4, r.text  # header + 3
    exported = await events.wait_for(type="crm.customer_export.created", actor=rep_id)
    assert exported[-1].event["data"]["filter"][f"custom.{renewal}"] == "2026-12-01.."


async def test_tag_lists_filter_on_custom_fields(
    app_and_client: tuple[Any, httpx.AsyncClient],
) -> None:
    """A tag filter (``tags_any``, ``tags_all``) with ``custom.<key>=`` filters gives exactly the
    customers under the tag that match: equality on a choice, ranges on a number, a date and a
    money. Tag lists page on the tag memberships: the flags index them too, and a date's or
    money's copies, backfilled when the flag is set, reach the memberships of customers stored
    before it. A changed value moves the customer in or out of the tag list's matches."""
    app, client = app_and_client
    level, size, renewal, budget = key(), key(), key(), key()
    await define(client, key=level, type="choice", options=CHOICES, filterable=True)
    await define(client, key=size, type="number", filterable=True)
    await define(client, key=renewal, type="date")
    await define(client, key=budget, type="money", validation={"currencies": ["CNY", "USD"]})
    rep = auth(unique("rep"))
    tag, other = unique("tag"), unique("other")

    async def made(tags: list[str], **custom: Any) -> str:
        r = await create(client, rep, tags=tags, custom=custom)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def money(amount: str, currency: str = "CNY") -> dict[str, str]:
        return {"amount": amount, "currency": currency}

    a = await made([tag, other], **{level: "high", size: 1, renewal: "2026-01-15", budget: money("800")})
    b = await made([tag], **{level: "high", size: 5, renewal: "2026-03-01", budget: money("5000.50")})
    c = await made([tag, other], **{level: "low", size: 9, renewal: "2026-12-31", budget: money("5000.50", "USD")})
    d = await made([tag])
    # The same values without the tag: never in a tag list.
    await made([other], **{level: "high", size: 5, renewal: "2026-03-01", budget: money("5000.50")})
    await made([], **{level: "high", size: 5, renewal: "2026-03-01", budget: money("5000.50")})

    for field in (renewal, budget):  # stored before the flag: the backfill writes the copies
        r = await client.patch(
            f"/v1/fields/customers/{field}", json={"filterable": True}, headers={**ADMIN, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
    memberships = app.state.customers.repo.tags.collection
    stored = await memberships.find_one({"_id": f"{a}:{tag}"})
    assert stored is not None and stored["s"][f"cfq_{renewal}"] == 20260115, stored  # by the backfill
    assert stored["custom"][level] == "high"
    indexed = [list(ix["key"]) async for ix in await memberships.list_indexes()]
    for path in (f"custom.{level}", f"custom.{size}", f"s.cfq_{renewal}", f"s.cfq_{budget}"):
        # Behind the tag and each of the 3 visibility prefixes, and alone.
        assert len([fields for fields in indexed if path in fields]) == 4, (path, indexed)

    async def ids(field: str, text: str, tags: dict[str, str] | None = None) -> list[str]:
        params = {f"custom.{field}": text, "limit": 100, **(tags or {"tags_any": tag})}
        r = await client.get("/v1/customers", params=params, headers=rep)
        assert r.status_code == 200, r.text
        return sorted(c["id"] for c in r.json()["items"])

    assert await ids(level, "high") == sorted([a, b])
    assert await ids(level, "high", {"tags_all": f"{tag},{other}"}) == [a]
    assert await ids(level, "low", {"tags_any": f"{tag},{unique('x')}"}) == [c]
    assert await ids(size, "2..9") == sorted([b, c])
    assert await ids(size, "..1") == [a]
    assert await ids(renewal, "2026-01-01..2026-03-01") == sorted([a, b])
    assert await ids(renewal, "2026-03-02..", {"tags_all": f"{other},{tag}"}) == [c]
    assert await ids(budget, "1000..5000.50 CNY") == [b]
    assert await ids(budget, "..10000 CNY") == sorted([a, b])
    assert await ids(budget, "5000.5 usd") == [c]
    assert d not in await ids(renewal, "..2099-12-31")
    # Two custom filters and a built-in one together, paged by cursor.
    r = await client.get(
        "/v1/customers",
        params={"tags_any": tag, f"custom.{level}": "high", f"custom.{size}": "..5", "kind": "company", "limit": 1},
        headers=rep,
    )
    assert r.status_code == 200 and r.json()["next_cursor"], r.text
    first = r.json()["items"][0]["id"]
    r = await client.get(
        "/v1/customers",
        params={
            "tags_any": tag,
            f"custom.{level}": "high",
            f"custom.{size}": "..5",
            "kind": "company",
            "limit": 1,
            "cursor": r.json()["next_cursor"],
        },
        headers=rep,
    )
    assert sorted([first, r.json()["items"][0]["id"]]) == sorted([a, b]) and not r.json()["next_cursor"], r.text

    # A changed value moves the customer in the tag list's matches (its memberships resynced).
    got = await client.get(f"/v1/customers/{b}", headers=rep)
    r = await client.patch(
        f"/v1/customers/{b}",
        json={"custom": {level: "low", renewal: "2026-12-01"}},
        headers={**rep, "If-Match": got.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    assert await ids(level, "high") == [a]
    assert await ids(level, "low") == sorted([b, c])
    assert await ids(renewal, "2026-12-01..") == sorted([b, c])

    # A membership whose copied value is stale (a write cut short before its resync) is dropped
    # from the page and resynced: the list shows what the customer says.
    await memberships.update_one({"_id": f"{c}:{tag}"}, {"$set": {f"custom.{level}": "high"}})
    assert await ids(level, "high") == [a]
    fixed = await memberships.find_one({"_id": f"{c}:{tag}"})
    assert fixed is not None and fixed["custom"][level] == "low", fixed
    # A rebuild (the first start after an upgrade) writes memberships with the values and copies.
    await memberships.delete_one({"_id": f"{a}:{tag}"})
    assert await ids(level, "high") == []
    repo = app.state.customers.repo
    assert await repo.tags.rebuild(repo.collection, unique("test")) > 0
    rebuilt = await memberships.find_one({"_id": f"{a}:{tag}"})
    assert rebuilt is not None and rebuilt["custom"][level] == "high", rebuilt
    assert rebuilt["s"][f"cfq_{renewal}"] == 20260115, rebuilt
    assert await ids(level, "high") == [a]
    assert await ids(renewal, "..2026-01-31") == [a]

    # The export takes the same filters.
    r = await client.get("/v1/customers/export.csv", params={"tags_any": tag, f"custom.{level}": "low"}, headers=rep)
    assert r.status_code == 200 and len(r.text.strip().splitlines()) == 3, r.text  # header + 2

    # Not filterable any more: the memberships' indexes go too, and the filter is refused.
    current = await client.get(f"/v1/fields/customers/{level}", headers=ADMIN)
    r = await client.patch(
        f"/v1/fields/customers/{level}",
        json={"filterable": False},
        headers={**ADMIN, "If-Match": current.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    indexed = [list(ix["key"]) async for ix in await memberships.list_indexes()]
    assert not [fields for fields in indexed if f"custom.{level}" in fields], indexed
    r = await client.get("/v1/customers", params={"tags_any": tag, f"custom.{level}": "high"}, headers=rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == f"custom.{level}", r.text


async def test_csv_import_and_export_have_a_column_per_field(client: httpx.AsyncClient) -> None:
    seg, score = key(), key()
    await define(client, key=seg, type="choice", options=CHOICES)
    await define(client, key=score, type="number", default=1, validation={"max": 10})
    rep = auth(unique("rep"))
    tag = unique("csv")
    rows = [
        f"name,tags,custom.{seg},custom.{score}",
        f"宁波{uuid.uuid4().hex[:6]}有限公司,{tag},high,7",
        f"宁波{uuid.uuid4().hex[:6]}有限公司,{tag},,",  # no values: the default applies
        f"宁波{uuid.uuid4().hex[:6]}有限公司,{tag},medium,11",  # two bad cells
    ]
    payload = ("\n".join(rows) + "\n").encode()
    headers = {**rep, "Content-Type": "text/csv"}
    r = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=payload, headers=headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["valid_rows"] == 2
    assert sorted((e["line"], e["field"]) for e in report["errors"]) == sorted(
        [(4, f"custom.{score}"), (4, f"custom.{seg}")]
    )
    r = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=payload, headers=headers)
    assert r.status_code == 200 and r.json()["imported"] == 2, r.text
    r = await client.get("/v1/customers", params={"tags_any": tag}, headers=rep)
    assert sorted((c["custom"].get(seg, ""), c["custom"][score]) for c in r.json()["items"]) == [("", 1), ("high", 7)]
    # An unknown custom column is refused whole, naming the header.
    bad = f"name,custom.nope\n宁波{uuid.uuid4().hex[:6]}有限公司,x\n".encode()
    r = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=bad, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header"
    # The export has a column per active field, headed custom.<key>, values as the import takes them.
    r = await client.get("/v1/customers/export.csv", params={"tags_any": tag}, headers=rep)
    assert r.status_code == 200
    lines = r.text.lstrip("\ufeff").strip().splitlines()
    header = lines[0].split(",")
    assert f"custom.{seg}" in header and f"custom.{score}" in header
    cells = sorted(
        (row.split(",")[header.index(f"custom.{seg}")], row.split(",")[header.index(f"custom.{score}")])
        for row in lines[1:]
    )
    assert cells == [("", "1"), ("high", "7")]


async def test_contacts_have_custom_fields_of_their_own(client: httpx.AsyncClient, events: EventCollector) -> None:
    level, wx = key(), key()
    for body in ({"key": level, "type": "choice", "options": CHOICES, "required": True}, {"key": wx, "type": "text"}):
        r = await client.post("/v1/fields/contacts", json={"labels": labels(body["key"]), **body}, headers=ADMIN)
        assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/fields/contacts",
        json={"key": key(), "type": "boolean", "labels": labels("x"), "filterable": True},
        headers=ADMIN,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "filterable"
    rep = auth(unique("rep"))
    # A customer's contacts are validated with it: every error names the contact.
    r = await create(client, rep, contacts=[{"name": "张三"}, {"name": "李四", "custom": {level: "x"}}])
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {f"contacts[0].custom.{level}", f"contacts[1].custom.{level}"}
    r = await create(client, rep, contacts=[{"name": "张三", "custom": {level: "high"}}])
    assert r.status_code == 201, r.text
    customer = r.json()
    assert customer["contacts"][0]["custom"] == {level: "high"}
    created = await events.wait_for(type="crm.customer.created", subject=customer["id"])
    assert created[0].event["data"]["contacts"][0]["custom"] == {level: "high"}
    url = f"/v1/customers/{customer['id']}/contacts"
    r = await client.post(url, json={"name": "王五"}, headers=rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == f"custom.{level}"
    r = await client.post(url, json={"name": "王五", "custom": {level: "low", wx: "wang5"}}, headers=rep)
    assert r.status_code == 201, r.text
    contact = r.json()
    assert contact["custom"] == {level: "low", wx: "wang5"}
    r = await client.patch(
        f"{url}/{contact['contact_id']}", json={"custom": {wx: None}}, headers={**rep, "If-Match": r.headers["ETag"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["custom"] == {level: "low"}
    changed = await events.wait_for(type="crm.customer.contact_changed", subject=customer["id"])
    assert changed[0].event["data"]["changes"] == [{"field": f"custom.{wx}", "old": "wang5", "new": None}]
    r = await client.delete(f"/v1/fields/contacts/{level}", headers=ADMIN)  # no required field left behind
    assert r.status_code == 200


async def test_csv_columns_for_the_contacts_custom_fields(client: httpx.AsyncClient) -> None:
    """``contact.custom.<key>`` columns: the row's contact's values on import, checked in the dry
    run as the API checks them (each bad cell a row error naming its column); the primary
    contact's values on export."""
    level, wx, score = key(), key(), key()
    for body in (
        {"key": level, "type": "choice", "options": CHOICES},
        {"key": wx, "type": "text"},
        {"key": score, "type": "number", "default": 3, "validation": {"max": 5}},
    ):
        r = await client.post("/v1/fields/contacts", json={"labels": labels(body["key"]), **body}, headers=ADMIN)
        assert r.status_code == 201, r.text
    rep = auth(unique("rep"))
    tag = unique("csv")
    rows = [
        f"name,tags,contact_name,contact.custom.{level},contact.custom.{wx},contact.custom.{score}",
        f"宁波{uuid.uuid4().hex[:6]}有限公司,{tag},张三,high,wang3,5",
        f"宁波{uuid.uuid4().hex[:6]}有限公司,{tag},李四,,,",  # no values: the default applies
        f"宁波{uuid.uuid4().hex[:6]}有限公司,{tag},王五,medium,,6",  # two bad cells
        f"宁波{uuid.uuid4().hex[:6]}有限公司,{tag},,low,,",  # a contact's value without a contact
    ]
    payload = ("\n".join(rows) + "\n").encode()
    headers = {**rep, "Content-Type": "text/csv"}
    r = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=payload, headers=headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["valid_rows"] == 2
    assert sorted((e["line"], e["field"]) for e in report["errors"]) == sorted(
        [(4, f"contact.custom.{level}"), (4, f"contact.custom.{score}"), (5, f"contact.custom.{level}")]
    )
    assert "contact_name" in next(e["reason"] for e in report["errors"] if e["line"] == 5)
    r = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=payload, headers=headers)
    assert r.status_code == 200 and r.json()["imported"] == 2, r.text
    r = await client.get("/v1/customers", params={"tags_any": tag}, headers=rep)
    contacts = sorted((c["contacts"][0]["name"], c["contacts"][0]["custom"]) for c in r.json()["items"])
    assert contacts == [("张三", {level: "high", wx: "wang3", score: 5}), ("李四", {score: 3})]
    # An unknown contact custom column is refused whole, naming the header.
    bad = f"name,contact_name,contact.custom.nope\n宁波{uuid.uuid4().hex[:6]}有限公司,张三,x\n".encode()
    r = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=bad, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header", r.text
    # The export: a column per active contact field, the primary (here: only) contact's values.
    r = await client.get("/v1/customers/export.csv", params={"tags_any": tag}, headers=rep)
    assert r.status_code == 200
    lines = r.text.lstrip("\ufeff").strip().splitlines()
    header = lines[0].split(",")
    columns = [header.index(f"contact.custom.{k}") for k in (level, wx, score)]
    assert sorted(tuple(row.split(",")[i] for i in columns) for row in lines[1:]) == [
        ("", "", "3"),
        ("high", "wang3", "5"),
    ]
    for k in (level, wx, score):  # leave no field behind for the other tests' contacts
        assert (await client.delete(f"/v1/fields/contacts/{k}", headers=ADMIN)).status_code == 200


async def test_a_merge_fills_the_survivors_empty_custom_values(client: httpx.AsyncClient) -> None:
    a, b = key(), key()
    await define(client, key=a, type="text")
    await define(client, key=b, type="text")
    manager = auth(unique("mgr"), ["manager"], department_path="/hq")
    survivor = (await create(client, manager, custom={a: "mine"})).json()
    duplicate = (await create(client, manager, custom={a: "theirs", b: "only theirs"})).json()
    r = await client.post(
        f"/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=manager
    )
    assert r.status_code == 200, r.text
    assert {k: r.json()["custom"].get(k) for k in (a, b)} == {a: "mine", b: "only theirs"}


async def test_field_rules_apply_to_custom_fields(app_and_client: tuple[Any, httpx.AsyncClient]) -> None:
    """A role hides one custom field and makes another read-only, as it would a built-in field."""
    app, client = app_and_client
    secret, grade = key(), key()
    await define(client, key=secret, type="number", filterable=True)
    await define(client, key=grade, type="choice", options=CHOICES, filterable=True)
    role = f"staff-{uuid.uuid4().hex[:6]}"
    permissions = ["customers:view", "customers:create", "customers:edit", "customers:export"]
    rules = {"customers": {f"custom.{secret}": "hidden", f"custom.{grade}": "read"}}
    await app.state.kit.roles.apply(role_event(role, 1, permissions=permissions, fields=rules))
    staff_id, dept = unique("staff"), f"/hq/{unique('d')}"
    staff = auth(staff_id, [role], department_path=dept)
    made = await create(client, ADMIN, owner_id=staff_id, department_path=dept, custom={secret: 42, grade: "high"})
    assert made.status_code == 201, made.text

    got = await client.get(f"/v1/customers/{made.json()['id']}", headers=staff)
    assert got.status_code == 200, got.text
    assert got.json()["custom"][grade] == "high" and secret not in got.json()["custom"]
    listed = await client.get("/v1/customers", params={f"custom.{grade}": "high"}, headers=staff)
    assert [c["id"] for c in listed.json()["items"]] == [made.json()["id"]]
    for tags in ({}, {"tags_any": "vip"}, {"tags_all": "vip"}):  # tag lists filter on it too
        refused = await client.get("/v1/customers", params={f"custom.{secret}": "42", **tags}, headers=staff)
        assert refused.status_code == 403, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [f"custom.{secret}"]
    exported = await client.get("/v1/customers/export.csv", headers=staff)
    header = exported.content.decode("utf-8-sig").splitlines()[0].split(",")
    assert f"custom.{grade}" in header and f"custom.{secret}" not in header

    patched = await client.patch(
        f"/v1/customers/{made.json()['id']}",
        json={"custom": {grade: "low"}},
        headers={**staff, "If-Match": got.headers["ETag"]},
    )
    assert patched.status_code == 403 and patched.json()["errors"][0]["field"] == f"custom.{grade}", patched.text
    created = await create(client, staff, custom={secret: 7})
    assert created.status_code == 403 and created.json()["errors"][0]["field"] == f"custom.{secret}", created.text


async def test_field_rules_apply_to_the_contacts_custom_columns(app_and_client: tuple[Any, httpx.AsyncClient]) -> None:
    """A contact custom field hidden from a role is not exported to it; one read-only for it
    cannot be imported by it (403 naming the field), as on the contact routes."""
    app, client = app_and_client
    secret, grade = key(), key()
    for body in ({"key": secret, "type": "text"}, {"key": grade, "type": "choice", "options": CHOICES}):
        r = await client.post("/v1/fields/contacts", json={"labels": labels(body["key"]), **body}, headers=ADMIN)
        assert r.status_code == 201, r.text
    role = f"staff-{uuid.uuid4().hex[:6]}"
    permissions = ["customers:view", "customers:create", "customers:import", "customers:export"]
    rules = {"contacts": {f"custom.{secret}": "hidden", f"custom.{grade}": "read"}}
    await app.state.kit.roles.apply(role_event(role, 1, permissions=permissions, fields=rules))
    staff = auth(unique("staff"), [role], department_path=f"/hq/{unique('d')}")
    exported = await client.get("/v1/customers/export.csv", headers=staff)
    assert exported.status_code == 200, exported.text
    header = exported.content.decode("utf-8-sig").splitlines()[0].split(",")
    assert f"contact.custom.{grade}" in header and f"contact.custom.{secret}" not in header
    csv = f"name,contact_name,contact.custom.{grade}\n宁波{uuid.uuid4().hex[:6]}有限公司,张三,high\n".encode()
    r = await client.post(
        "/v1/customers/import",
        params={"dry_run": "true"},
        content=csv,
        headers={**staff, "Content-Type": "text/csv"},
    )
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == f"custom.{grade}", r.text
    for k in (secret, grade):
        assert (await client.delete(f"/v1/fields/contacts/{k}", headers=ADMIN)).status_code == 200
