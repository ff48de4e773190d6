"""List views (filters, multi-key sort, cursors, counts) and CSV export / import."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from crm_customers.domain.uscc import organisation_code_check_character, uscc_check_character
from crm_platform.testing.fixtures import auth, eventually, unique

PROBLEM = "application/problem+json"
BOM = b"\xef\xbb\xbf"
CST = timezone(timedelta(hours=8))


def new_uscc() -> str:
    head = "91" + "".join(random.choices("0123456789", k=6))
    org = "".join(random.choices("0123456789ABCDEFGHJKLMNPQRTUWXY", k=8))
    first17 = head + org + organisation_code_check_character(org)
    return first17 + uscc_check_character(first17)


def new_mobile() -> str:
    return "139" + "".join(random.choices("0123456789", k=8))


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)


async def create(client: Any, user: User, **fields: Any) -> dict[str, Any]:
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": unique("List"), **fields}, headers=user.headers
    )
    assert r.status_code == 201, r.text
    return r.json()


async def ids(client: Any, user: User, **params: Any) -> set[str]:
    r = await client.get("/v1/customers", params={"limit": 500, **params}, headers=user.headers)
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return {c["id"] for c in r.json()["items"]}


def created_for(customer_events: Any, customer_ids: set[str]) -> list[dict[str, Any]]:
    return [
        r.event for r in customer_events.matching(type="crm.customer.created") if r.event["subject"] in customer_ids
    ]


# --- filters ---------------------------------------------------------------------------------------


async def test_list_filters(client):
    root = f"/{unique('l')}"
    r1, r2 = User(f"{root}/a"), User(f"{root}/b")
    manager = User(root, ["manager"], "mgr")
    tag = unique("seg")
    core = unique("alpha").replace("-", "")
    phone, email = new_mobile(), f"{unique('c1')}@example.com"
    c1 = await create(
        client,
        r1,
        name=f"{core} Trading 有限公司",
        tier="A",
        industry="retail",
        address={"city": "杭州", "province": "浙江"},
        tags=[tag, "vip", "north"],
        contacts=[{"name": "甲", "phones": [phone], "emails": [email]}],
    )
    c2 = await create(client, r1, tier="B", industry="finance", address={"city": "上海"}, tags=[tag, "vip"])
    c3 = await client.post(
        "/v1/customers",
        json={
            "kind": "person",
            "name": unique("王"),
            "tier": "A",
            "industry": "retail",
            "address": {"city": "上海"},
            "tags": [tag, "north"],
        },
        headers=r2.headers,
    )
    c3 = c3.json()
    c4 = await create(client, r2, tier="C", address={"city": "杭州"}, tags=[tag])
    assert (
        await client.post(f"/v1/customers/{c4['id']}/release", json={"reason": "r"}, headers=r2.headers)
    ).status_code == 200

    scoped = {"tags_all": tag}
    every = {c1["id"], c2["id"], c3["id"], c4["id"]}
    assert await ids(client, manager, **scoped) == every
    assert await ids(client, manager, **scoped, kind="person") == {c3["id"]}
    assert await ids(client, manager, **scoped, kind="company") == {c1["id"], c2["id"], c4["id"]}
    assert await ids(client, manager, **scoped, tier="A") == {c1["id"], c3["id"]}
    assert await ids(client, manager, **scoped, industry="retail") == {c1["id"], c3["id"]}
    assert await ids(client, manager, **scoped, city="上海") == {c2["id"], c3["id"]}
    assert await ids(client, manager, **scoped, province="浙江") == {c1["id"]}
    assert await ids(client, manager, tags_all=f"{tag},vip") == {c1["id"], c2["id"]}
    assert await ids(client, manager, tags_all=f"{tag},vip,north") == {c1["id"]}
    assert await ids(client, manager, **scoped, tags_any="vip,north") == {c1["id"], c2["id"], c3["id"]}
    assert await ids(client, manager, **scoped, tags_any="north") == {c1["id"], c3["id"]}
    assert await ids(client, manager, **scoped, owner_id=r1.id) == {c1["id"], c2["id"]}
    assert await ids(client, manager, **scoped, in_pool="true") == {c4["id"]}
    assert await ids(client, manager, **scoped, in_pool="false") == {c1["id"], c2["id"], c3["id"]}
    assert await ids(client, manager, **scoped, tier="A", city="上海") == {c3["id"]}
    assert (await client.post(f"/v1/customers/{c2['id']}/lock", headers=r1.headers)).status_code == 200
    assert await ids(client, manager, **scoped, locked="true") == {c2["id"]}
    assert await ids(client, manager, **scoped, locked="false") == {c1["id"], c3["id"], c4["id"]}
    assert await ids(client, manager, phone=f"+86{phone}") == {c1["id"]}  # a contact's phone
    assert await ids(client, manager, email=email.upper()) == {c1["id"]}
    # Name search ignores case, width and the legal form.
    assert await ids(client, manager, q=core.upper()) == {c1["id"]}
    assert await ids(client, manager, q=f"{core} trading co., ltd") == {c1["id"]}
    assert await ids(client, manager, **scoped, q=unique("nothing")) == set()

    # Time ranges take a time zone; the bound is inclusive below, exclusive above.
    at = datetime.fromisoformat(c3["created_at"]).astimezone(CST)
    assert at.utcoffset() == timedelta(hours=8)
    assert await ids(client, manager, **scoped, created_from=at.isoformat()) == {c3["id"], c4["id"]}
    assert await ids(client, manager, **scoped, created_to=at.isoformat()) == {c1["id"], c2["id"]}
    naive = await client.get(
        "/v1/customers", params={**scoped, "created_from": "2026-01-01T00:00:00"}, headers=manager.headers
    )
    assert naive.status_code == 422 and naive.headers["content-type"].startswith(PROBLEM)
    [error] = naive.json()["errors"]
    assert error["field"] == "created_from" and error["location"] == "query" and "time zone" in error["reason"]

    # Reps see their own and the pool, never a colleague's.
    assert await ids(client, r1, **scoped) == {c1["id"], c2["id"], c4["id"]}
    assert await ids(client, r2, **scoped) == {c3["id"], c4["id"]}

    bad = await client.get("/v1/customers", params={"tier": "Z"}, headers=manager.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "tier"
    unknown = await client.get("/v1/customers", params={"colour": "red"}, headers=manager.headers)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "colour"


# --- sort and cursors ---------------------------------------------------------------------------


async def test_sort_validation(client):
    user = User(f"/{unique('l')}")
    five = await client.get("/v1/customers", params={"sort": "name,tier,city,kind,industry"}, headers=user.headers)
    assert five.status_code == 422 and five.headers["content-type"].startswith(PROBLEM)
    assert five.json()["errors"][0]["field"] == "sort" and "4" in five.json()["errors"][0]["reason"]
    unknown = await client.get("/v1/customers", params={"sort": "name,-colour"}, headers=user.headers)
    assert unknown.status_code == 422
    [error] = unknown.json()["errors"]
    assert error["field"] == "sort" and error["location"] == "query" and "'colour'" in error["reason"]
    twice = await client.get("/v1/customers", params={"sort": "name,-name"}, headers=user.headers)
    assert twice.status_code == 422
    four = await client.get("/v1/customers", params={"sort": "kind,-tier,city,name"}, headers=user.headers)
    assert four.status_code == 200


async def test_sort_on_four_keys(client, customers_db):
    root = f"/{unique('l')}"
    rep = User(f"{root}/a")
    manager = User(root, ["manager"], "mgr")
    tag = unique("sort4")
    specs = [
        ("company", "A", "杭州"),
        ("company", "A", "上海"),
        ("person", "B", "上海"),
        ("company", "B", "杭州"),
        ("person", "A", "杭州"),
        ("company", "A", "杭州"),
        ("person", "B", "上海"),
    ]
    for kind, tier, city in specs:
        r = await client.post(
            "/v1/customers",
            json={"kind": kind, "name": unique("S4"), "tier": tier, "address": {"city": city}, "tags": [tag]},
            headers=rep.headers,
        )
        assert r.status_code == 201
    page = await client.get(
        "/v1/customers", params={"tags_all": tag, "sort": "kind,-tier,city,-name"}, headers=manager.headers
    )
    assert page.status_code == 200
    got = [c["id"] for c in page.json()["items"]]
    docs = [d async for d in customers_db["customers"].find({"tags": {"$in": [tag]}})]
    expected = sorted(docs, key=lambda d: d["_id"])
    expected.sort(key=lambda d: d["name_normalised"], reverse=True)
    expected.sort(key=lambda d: d["address"]["city"])
    expected.sort(key=lambda d: d["tier"], reverse=True)
    expected.sort(key=lambda d: d["kind"])
    assert got == [d["_id"] for d in expected]


async def test_cursor_pagination_walks_a_filtered_set_with_ties(client, customers_db):
    root = f"/{unique('l')}"
    manager = User(root, ["manager"], "mgr")
    reps = [User(f"{root}/t{i}") for i in range(3)]
    tag = unique("pages")
    noise_tag = unique("noise")
    u = unique("pg").replace("-", "")

    async def one(i: int, tags: list[str]) -> None:
        r = await client.post(
            "/v1/customers",
            json={
                "kind": "company",
                "name": f"Page {u} {i:02d}",
                "tier": "AB"[i % 2] if i % 5 else "C",
                "tags": tags,
                "owner_id": reps[i % 3].id,
                "department_path": reps[i % 3].dept,
            },
            headers=manager.headers,
        )
        assert r.status_code == 201, r.text

    await asyncio.gather(*(one(i, [tag]) for i in range(31)))
    await asyncio.gather(*(one(100 + i, [noise_tag]) for i in range(5)))  # same shape, outside the filter

    docs = [d async for d in customers_db["customers"].find({"tags": {"$in": [tag]}})]
    assert len(docs) == 31
    expected = sorted(docs, key=lambda d: d["_id"])
    expected.sort(key=lambda d: d["name_normalised"], reverse=True)
    expected.sort(key=lambda d: d["tier"])
    expected_ids = [d["_id"] for d in expected]

    for sort, order in (("tier,-name", expected_ids), ("-tier,name", expected_ids[::-1])):
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"tags_all": tag, "sort": sort, "limit": 4, "include_total": "true"}
            if cursor:
                params["cursor"] = cursor
            r = await client.get("/v1/customers", params=params, headers=manager.headers)
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["total"] == 31
            assert len(page["items"]) <= 4
            seen += [c["id"] for c in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert pages < 20, "the cursor does not advance"
        assert len(seen) == len(set(seen)), "a row came twice"
        assert seen == order
        assert pages == 8

    # Without include_total the count is not computed.
    r = await client.get("/v1/customers", params={"tags_all": tag, "limit": 2}, headers=manager.headers)
    assert r.json()["total"] is None and r.json()["next_cursor"]
    # A cursor from another sort, and a garbled one, are refused.
    first = await client.get(
        "/v1/customers", params={"tags_all": tag, "sort": "tier,-name", "limit": 2}, headers=manager.headers
    )
    cursor = first.json()["next_cursor"]
    for bad_params in (
        {"sort": "name"},
        {"sort": "tier,-name", "cursor": "not-a-cursor"},
        {"sort": "tier,-name", "cursor": cursor[:-3]},
    ):
        params = {"tags_all": tag, "cursor": cursor, **bad_params}
        r = await client.get("/v1/customers", params=params, headers=manager.headers)
        assert r.status_code == 422, (bad_params, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["errors"][0]["field"] == "cursor"


# --- CSV export ------------------------------------------------------------------------------------


async def test_csv_export_of_a_filtered_view(client):
    rep = User(f"/{unique('l')}")
    tag = unique("exp")
    formula = f'=HYPERLINK("http://x")-{unique("f")}'
    phone = new_mobile()
    a = await create(
        client,
        rep,
        name=f"{unique('导出')}科技有限公司",
        tier="A",
        tags=[tag, "vip"],
        phones=[phone],
        address={"city": "杭州"},
    )
    b = await create(client, rep, name=formula, tier="B", tags=[tag])
    await create(client, rep, tier="A", tags=[unique("other")])  # outside the filter

    r = await client.get("/v1/customers/export.csv", params={"tags_all": tag, "sort": "tier"}, headers=rep.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    raw = r.content
    assert raw.startswith(BOM)
    rows = list(csv.reader(io.StringIO(raw[len(BOM) :].decode("utf-8"))))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["id", "kind", "name"] and "tags" in header and "phones" in header
    assert [row[0] for row in body] == [a["id"], b["id"]]
    col = {name: i for i, name in enumerate(header)}
    assert body[0][col["name"]] == a["name"]
    assert body[0][col["tags"]] == f"{tag};vip"
    assert body[0][col["phones"]] == f"+86{phone}"  # a phone number is not mistaken for a formula
    assert body[0][col["city"]] == "杭州"
    assert body[1][col["name"]] == "'" + formula  # formula injection defused

    # Only what the caller may see is exported.
    stranger = User(f"/{unique('l')}")
    r = await client.get("/v1/customers/export.csv", params={"tags_all": tag}, headers=stranger.headers)
    assert r.status_code == 200
    assert len(list(csv.reader(io.StringIO(r.content[len(BOM) :].decode())))) == 1  # the header only

    bad = await client.get("/v1/customers/export.csv", params={"sort": "colour"}, headers=rep.headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)
    assert (await client.get("/v1/customers/export.csv")).status_code == 401


# --- CSV import ------------------------------------------------------------------------------------


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def test_csv_import_dry_run_then_real_run(client, customer_events, customers_db):
    importer = User(f"/{unique('l')}")
    existing = await create(client, User(f"/{unique('l')}"), name=unique("Existing") + " 有限公司")
    tag = unique("imp")
    good1, good2 = unique("Good1"), unique("Good2")
    phone1, phone2 = new_mobile(), new_mobile()
    person_email = f"{unique('p')}@example.com"
    rows = [
        ["kind", "name", "uscc", "phones", "emails", "tier", "tags"],
        ["company", f"{good1} 有限公司", new_uscc(), phone1, "", "A", f"{tag};vip"],  # 2 good
        ["company", unique("BadPhone"), "", "12345", "", "", tag],  # 3
        ["company", unique("BadUscc"), "91350100M000100Y4X", "", "", "", tag],  # 4
        ["company", "", "", "", "", "", tag],  # 5 no name
        ["company", unique("BadTier"), "", "", "", "S", tag],  # 6
        ["company", existing["name"].upper(), "", "", "", "", tag],  # 7 duplicate of the database
        ["company", f"{good2} Co., Ltd.", "", phone2, "", "B", tag],  # 8 good
        ["company", f"{good1.upper()}", "", "", "", "", tag],  # 9 repeats line 2
        ["person", unique("张"), "", "", person_email, "", tag],  # 10 good
        ["person", unique("李"), "", f"+86 {phone2}", "", "", tag],  # 11 repeats line 8's phone
        ["", "", "", "", "", "", ""],  # blank lines are skipped
    ]
    payload = _csv(rows).encode()
    headers = {**importer.headers, "Content-Type": "text/csv"}

    dry = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=payload, headers=headers)
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert report["dry_run"] is True and report["imported"] == 0 and report["created_ids"] == []
    assert report["total_rows"] == 10 and report["valid_rows"] == 3
    errors = {(e["line"], e["field"]) for e in report["errors"]}
    assert errors == {(3, "phones[0]"), (4, "uscc"), (5, "name"), (6, "tier")}, report["errors"]
    reasons = {e["line"]: e["reason"] for e in report["errors"]}
    assert "give '3'" in reasons[4]
    dups = {d["line"]: d for d in report["duplicates"]}
    assert set(dups) == {7, 9, 11}
    assert dups[7]["existing_customer_id"] == existing["id"] and dups[7]["existing_owner_id"] == existing["owner_id"]
    assert dups[7]["matched_on"] == ["name"]
    assert dups[9]["same_as_line"] == 2 and dups[9]["matched_on"] == ["name"]
    assert dups[11]["same_as_line"] == 8 and dups[11]["matched_on"] == ["phones"]
    # Nothing written, nothing published.
    assert await customers_db["customers"].count_documents({"tags": {"$in": [tag]}}) == 0
    marker = await create(client, importer)
    await customer_events.wait_for(type="crm.customer.created", subject=marker["id"])
    assert [
        r for r in customer_events.matching(type="crm.customer.created") if tag in r.event["data"]["customer"]["tags"]
    ] == []

    real = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=payload, headers=headers)
    assert real.status_code == 200, real.text
    report = real.json()
    assert report["dry_run"] is False and report["imported"] == 3 and len(report["created_ids"]) == 3
    created = set(report["created_ids"])
    stored = [d async for d in customers_db["customers"].find({"tags": {"$in": [tag]}})]
    assert {d["_id"] for d in stored} == created
    assert {d["owner_id"] for d in stored} == {importer.id}
    assert sorted(d["name"] for d in stored if d["kind"] == "company") == sorted(
        [f"{good1} 有限公司", f"{good2} Co., Ltd."]
    )
    await eventually(lambda: len(created_for(customer_events, created)) == 3, message="three created events")
    events = created_for(customer_events, created)
    assert all(e["data"]["via"] == "import" for e in events)
    assert {e["subject"] for e in events} == created

    # Importing the same file again imports nothing: every good row is now a duplicate.
    again = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=payload, headers=headers)
    assert again.json()["imported"] == 0
    assert {d["existing_customer_id"] for d in again.json()["duplicates"] if d["existing_customer_id"]} >= created


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig", "utf-8"])
async def test_csv_import_with_chinese_headers(client, customers_db, encoding):
    importer = User(f"/{unique('l')}")
    tag = unique("中文")
    name1, name2 = f"{unique('杭州')}科技有限公司", f"{unique('宁波')}贸易有限公司"
    phone = new_mobile()
    text = _csv([["名称", "电话", "标签"], [name1, phone, f"{tag}；重点客户"], [name2, "", tag]])
    payload = text.encode(encoding)
    headers = {**importer.headers, "Content-Type": "text/csv"}
    r = await client.post("/v1/customers/import", params={"dry_run": "false"}, content=payload, headers=headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["errors"] == [] and report["duplicates"] == [] and report["imported"] == 2, report
    stored = {d["name"]: d async for d in customers_db["customers"].find({"tags": {"$in": [tag]}})}
    assert set(stored) == {name1, name2}
    assert stored[name1]["phones"] == [f"+86{phone}"]
    assert stored[name1]["tags"] == [tag, "重点客户"]
    assert stored[name1]["kind"] == "company"


async def test_csv_import_refuses_an_unusable_file(client):
    importer = User(f"/{unique('l')}")
    headers = {**importer.headers, "Content-Type": "text/csv"}
    for payload, field in (
        (b"", "body"),
        ("颜色,名称\n红,x\n".encode(), "header"),
        (b"kind,tier\ncompany,A\n", "header"),
    ):
        r = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=payload, headers=headers)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("payload", "line", "field", "reason"),
    [
        # A bare CR inside an unquoted field (old Mac line ends, a pasted cell): the parser stops.
        (b"name,tier\r\nAcme,A\r\nBeta\rGamma,B\r\n", 3, "name", "column 'name': a bare carriage return"),
        ("名称,标签\r\n甲,x\r\n乙,y\rz\r\n".encode(), 3, "tags", "column '标签': a bare carriage return"),
        (
            b"name,description\nAcme,short\nBeta," + b"x" * 131_073 + b"\n",
            3,
            "description",
            "column 'description': a field is longer than 131,072 characters",
        ),
        # Quoted across lines: the parser stops on the second line, which does not show the column.
        (b'name,description\nAcme,"short\n' + b"x" * 131_073 + b'"\n', 3, "body", "longer than 131,072"),
        (b"na\rme,tier\nAcme,A\n", 1, "header", "a bare carriage return"),
    ],
)
async def test_csv_import_names_the_line_the_parser_cannot_read(client, payload, line, field, reason):
    importer = User(f"/{unique('l')}")
    headers = {**importer.headers, "Content-Type": "text/csv"}
    r = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=payload, headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["line"] == line
    assert problem["errors"][0]["field"] == field
    assert problem["errors"][0]["reason"].startswith(f"line {line}: ") and reason in problem["errors"][0]["reason"]


async def test_concurrent_imports_and_creates_never_take_an_owner_past_the_limit(
    client, customers_settings, customers_db
):
    limit = customers_settings.max_customers_per_rep
    importer = User(f"/{unique('l')}")
    headers = {**importer.headers, "Content-Type": "text/csv"}
    files = [_csv([["name"], *[[f"{unique('Batch')} {i} Ltd"] for i in range(limit - 5)]]).encode() for _ in range(2)]
    creates = [
        client.post("/v1/customers", json={"kind": "company", "name": unique("Single")}, headers=importer.headers)
        for _ in range(5)
    ]
    results = await asyncio.gather(
        *(client.post("/v1/customers/import", params={"dry_run": "false"}, content=f, headers=headers) for f in files),
        *creates,
    )
    reports = [r.json() for r in results[:2]]
    assert all(r.status_code == 200 for r in results[:2])
    imported = sum(r["imported"] for r in reports)
    created = sum(r.status_code == 201 for r in results[2:])
    held = await customers_db["customers"].count_documents({"owner_id": importer.id, "status": "active"})
    assert held == imported + created == limit
    refused = [e for r in reports for e in r["errors"] if e["field"] == "owner_id"]
    assert len(refused) + (5 - created) == 2 * (limit - 5) + 5 - limit
    assert all("limit" in e["reason"] or "more than" in e["reason"] for e in refused)


async def test_previous_and_next_record_in_a_list_view(client):
    rep = User(f"/{unique('l')}")
    tag = unique("nb")
    made = [await create(client, rep, name=f"{unique('Nb')} {letter} Ltd", tags=[tag]) for letter in "CAB"]
    await create(client, rep, name=f"{unique('Nb')} Z Ltd")  # not in the filtered list
    ordered = sorted(made, key=lambda c: c["name"])
    params = {"tags_any": tag, "sort": "name"}

    async def around(customer: dict[str, Any], **extra: Any) -> tuple[str | None, str | None]:
        r = await client.get(
            f"/v1/customers/{customer['id']}/neighbours", params={**params, **extra}, headers=rep.headers
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return (body["previous"] or {}).get("id"), (body["next"] or {}).get("id")

    assert await around(ordered[0]) == (None, ordered[1]["id"])
    assert await around(ordered[1]) == (ordered[0]["id"], ordered[2]["id"])
    assert await around(ordered[2]) == (ordered[1]["id"], None)
    assert await around(ordered[1], sort="-name") == (ordered[2]["id"], ordered[0]["id"])
    bad = await client.get(f"/v1/customers/{ordered[0]['id']}/neighbours", params={"sort": "nope"}, headers=rep.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "sort"
    other = User(f"/{unique('l')}")
    hidden = await client.get(f"/v1/customers/{ordered[0]['id']}/neighbours", headers=other.headers)
    assert hidden.status_code == 404


async def test_copy_a_customer_takes_its_profile_not_its_identity(client):
    rep = User(f"/{unique('l')}")
    original = await create(
        client,
        rep,
        industry="制造业",
        tier="A",
        source="exhibition",
        tags=["key"],
        phones=[new_mobile()],
        address={"province": "浙江省", "city": "杭州市"},
        contacts=[{"name": "王经理"}],
    )
    name = f"{unique('Copy')} Ltd"
    r = await client.post(f"/v1/customers/{original['id']}/copy", json={"name": name, "tier": "B"}, headers=rep.headers)
    assert r.status_code == 201, r.text
    copy = r.json()
    assert r.headers["location"] == f"/v1/customers/{copy['id']}"
    assert (copy["name"], copy["industry"], copy["tier"], copy["source"], copy["tags"]) == (
        name,
        "制造业",
        "B",
        "exhibition",
        ["key"],
    )
    assert copy["address"]["city"] == "杭州市"
    assert (copy["phones"], copy["contacts"], copy["owner_id"]) == ([], [], rep.id)
    same = await client.post(
        f"/v1/customers/{original['id']}/copy", json={"name": original["name"]}, headers=rep.headers
    )
    assert same.status_code == 409
    nameless = await client.post(f"/v1/customers/{original['id']}/copy", json={}, headers=rep.headers)
    assert nameless.status_code == 422 and nameless.json()["errors"][0]["field"] == "name"
    bad = await client.post(
        f"/v1/customers/{original['id']}/copy", json={"name": unique("X"), "tier": "Z"}, headers=rep.headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "tier"


async def test_sort_keys_of_older_documents_are_upgraded_and_listed(client, customers_app, customers_db):
    from crm_customers.domain import rules

    rep = User(f"/{unique('l')}")
    made = await create(client, rep)

    async def published() -> dict[str, Any] | None:
        # The relay rewrites the document once it has published the event: change it after that.
        doc = await customers_db["customers"].find_one({"_id": made["id"]})
        return doc if doc and not doc.get("outbox") else None

    stored = await eventually(published, message="created event published")
    assert stored["s"]["v"] == rules.SORT_KEYS_VERSION and isinstance(stored["s"]["updated_at"], int)
    # The shape version 1 stored: datetimes, no version.
    old = {k: v for k, v in stored["s"].items() if k != "v"}
    old |= {"created_at": stored["created_at"], "updated_at": stored["updated_at"]}
    await customers_db["customers"].update_one({"_id": made["id"]}, {"$set": {"s": old}})

    repo = customers_app.state.customers.repo
    # Done at this app's start (nothing to do then); forget that, as a database from before would.
    await repo.migrations.delete_one({"_id": f"sort_keys_v{rules.SORT_KEYS_VERSION}"})
    assert await repo.upgrade_sort_keys(rules.sort_keys, rules.SORT_KEYS_VERSION) == 1
    assert await repo.upgrade_sort_keys(rules.sort_keys, rules.SORT_KEYS_VERSION) == 0  # marked done
    upgraded = (await customers_db["customers"].find_one({"_id": made["id"]}))["s"]
    assert upgraded == stored["s"]
    assert made["id"] in await ids(client, rep, updated_from="2000-01-01T00:00:00Z")
    assert made["id"] in await ids(client, rep, never_followed_up="true", sort="-updated_at")


async def test_a_reps_total_counts_what_the_list_shows(client):
    """Mine or the pool, active only: pool customers in the recycle bin are neither listed nor counted
    (the embedded store's count dropped the status next to the visibility alternatives)."""
    dept = f"/{unique('d')}"
    owner, admin = User(dept), User(dept, ["admin"], "admin")
    mine = [await create(client, owner) for _ in range(2)]
    pooled = [await create(client, owner) for _ in range(3)]
    for c in pooled:
        r = await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "pool"}, headers=owner.headers)
        assert r.status_code == 200, r.text
    r = await client.delete(f"/v1/customers/{pooled[0]['id']}", headers=admin.headers)
    assert r.status_code in (200, 204), r.text
    listed: set[str] = set()
    params: dict[str, Any] = {"limit": 500, "include_total": "true"}
    while True:
        r = await client.get("/v1/customers", params=params, headers=owner.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        total = body["total"]
        listed |= {c["id"] for c in body["items"]}
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    assert total == len(listed)
    assert {c["id"] for c in mine} | {c["id"] for c in pooled[1:]} <= listed
    assert pooled[0]["id"] not in listed


async def test_an_export_is_recorded_with_who_the_filter_and_the_rows(client, customer_events):
    """Before the first row leaves: crm.customer_export.created (for the audit log), one per export."""
    rep = User(f"/{unique('l')}")
    tag = unique("rec")
    for _ in range(2):
        await create(client, rep, tags=[tag])
    r = await client.get("/v1/customers/export.csv", params={"tags_all": tag, "sort": "name"}, headers=rep.headers)
    assert r.status_code == 200, r.text
    [record] = await customer_events.wait_for(type="crm.customer_export.created", actor=rep.id)
    event = record.event
    assert event["data"]["filter"] == {"tags_all": tag} and event["data"]["sort"] == "name"
    assert event["data"]["rows"] == 2 == len(r.content.decode("utf-8-sig").strip().splitlines()) - 1
    assert event["subject"] == event["data"]["export_id"]
    assert event["clientaddress"] == "127.0.0.1"  # the test client, as the service saw it

    # Refused before it starts (a bad sort): nothing recorded.
    stranger = User(f"/{unique('l')}")
    bad = await client.get("/v1/customers/export.csv", params={"sort": "colour"}, headers=stranger.headers)
    assert bad.status_code == 422
    ok = await client.get("/v1/customers/export.csv", params={"tags_all": tag}, headers=stranger.headers)
    assert ok.status_code == 200
    [seen] = await customer_events.wait_for(type="crm.customer_export.created", actor=stranger.id)
    assert seen.event["data"]["rows"] == 0  # one event: the refused export made none


async def test_an_import_is_recorded_with_its_counts_and_a_dry_run_is_not(client, customer_events):
    rep = User(f"/{unique('l')}")
    names = [f"{unique('导入')} 有限公司" for _ in range(2)]
    csv_text = "名称,等级\n" + f"{names[0]},A\n{names[1]},Z\n{names[0]},B\n"
    headers = {**rep.headers, "Content-Type": "text/csv"}
    dry = await client.post(
        "/v1/customers/import", params={"dry_run": "true"}, content=csv_text.encode(), headers=headers
    )
    assert dry.status_code == 200, dry.text
    r = await client.post(
        "/v1/customers/import", params={"dry_run": "false"}, content=csv_text.encode(), headers=headers
    )
    assert r.status_code == 200, r.text
    report = r.json()
    [record] = await customer_events.wait_for(type="crm.customer_import.completed", actor=rep.id)
    data = record.event["data"]
    assert data == {
        "import_id": record.event["subject"],
        "total_rows": 3,
        "valid_rows": report["valid_rows"],
        "imported": report["imported"],
        "errors": len(report["errors"]),
        "duplicates": len(report["duplicates"]),
    }
    assert data["imported"] == 1 and data["errors"] >= 1 and data["duplicates"] == 1
