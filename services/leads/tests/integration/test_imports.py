"""Lead intake over HTTP against the real embedded store and broker: a lead's campaign must be one the
service knows (create, patch, import), and the CSV import (dry run and real, duplicates inside the
file and against leads and customers, Chinese headers, GB18030 and BOM files, limits)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, collecting, eventually

MANAGER = auth("intake-mgr", ["manager"], "/hq/intake")
REP = auth("intake-rep", ["rep"], "/hq/intake/t1")
ADMIN = auth("intake-admin", ["admin"], "/hq")


def company(prefix: str = "导入测试") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}有限公司"


def phone() -> str:
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


def email() -> str:
    return f"{uuid.uuid4().hex[:10]}@intake.example"


async def new_campaign(client: httpx.AsyncClient, status: str | None = None) -> str:
    plan = {
        "name": f"导入活动 {uuid.uuid4().hex[:6]}",
        "channel": "exhibition",
        "budget": {"amount": "1000.00", "currency": "CNY"},
        "start_date": "2026-04-01",
        "end_date": "2026-04-30",
    }
    r = await client.post("/v1/campaigns", json=plan, headers=ADMIN)
    assert r.status_code == 201, r.text
    campaign_id: str = r.json()["id"]
    if status is not None:
        r = await client.patch(
            f"/v1/campaigns/{campaign_id}", json={"status": status}, headers={**ADMIN, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
    return campaign_id


# --- the campaign check ------------------------------------------------------------------------


async def test_a_leads_campaign_must_exist_and_not_be_cancelled(client: httpx.AsyncClient) -> None:
    good, cancelled = await new_campaign(client), await new_campaign(client, "cancelled")
    for campaign_id, why in ((f"nope-{uuid.uuid4().hex[:6]}", "no campaign"), (cancelled, "is cancelled")):
        r = await client.post("/v1/leads", json={"company_name": company(), "campaign_id": campaign_id}, headers=REP)
        assert r.status_code == 422, r.text
        (error,) = r.json()["errors"]
        assert error["field"] == "campaign_id" and why in error["reason"]
    r = await client.post("/v1/leads", json={"company_name": company(), "campaign_id": good}, headers=REP)
    assert r.status_code == 201 and r.json()["campaign_id"] == good, r.text
    url = f"/v1/leads/{r.json()['id']}"
    r = await client.patch(url, json={"campaign_id": cancelled}, headers={**REP, "If-Match": '"1"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "campaign_id", r.text
    assert (await client.get(url, headers=REP)).headers["etag"] == '"1"'  # nothing changed
    r = await client.patch(url, json={"campaign_id": None}, headers={**REP, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["campaign_id"] is None, r.text


# --- CSV import ---------------------------------------------------------------------------------


async def run_import(client: httpx.AsyncClient, text: str | bytes, **params: Any) -> httpx.Response:
    content = text.encode() if isinstance(text, str) else text
    return await client.post(
        "/v1/leads/import", content=content, params=params, headers={**MANAGER, "Content-Type": "text/csv"}
    )


async def test_dry_run_then_import_with_duplicates_in_the_file_and_against_leads_and_customers(
    client: httpx.AsyncClient, leads_app: FastAPI, feed: EventFeed
) -> None:
    campaign_id = await new_campaign(client, "active")
    # A lead already entered, and a customer learnt from crm.customers.v1 through the broker.
    held_phone = phone()
    r = await client.post("/v1/leads", json={"company_name": company(), "phones": [held_phone]}, headers=REP)
    assert r.status_code == 201, r.text
    held_lead = r.json()["id"]
    now = datetime.now(UTC)
    customer_id, customer_name = str(uuid.uuid4()), company("导入客户")
    snapshot = cev.CustomerSnapshot(
        customer_id=customer_id,
        kind="company",
        name=customer_name,
        owner_id="intake-cust-owner",
        department_path="/hq",
        created_at=now,
        updated_at=now,
    )
    await feed.send(cev.CUSTOMER_CREATED, customer_id, cev.CustomerCreated(customer=snapshot), now, "feed")
    repo = leads_app.state.repo
    await eventually(lambda: repo.customer(customer_id), timeout=30, message="customer keys copied")

    first, second, same = company(), company(), company()
    rows = [
        "公司名称,联系人,电话,邮箱,来源,地区,行业,备注",
        f"{first},王经理,{phone()},{email()},exhibition,上海,制造,展会名片",  # line 2: ok
        f"{second},李总,{phone()};{phone()},,referral,北京,,",  # line 3: ok (two phones)
        f"{same},张三,{phone()},,,,,",  # line 4: ok
        f"{same.replace('有限公司', '')},张三,{phone()},,,,,",  # line 5: same company as line 4
        f"{company()},赵六,{held_phone},,,,,",  # line 6: the phone is a lead's
        f"{customer_name},钱七,,,,,,",  # line 7: the company is a customer
        f"{company()},孙八,12,bad-email,tv,,,",  # line 8: three bad fields
        ",无名,,,,,,",  # line 9: no company
    ]
    text = "\n".join(rows) + "\n"
    r = await run_import(client, text, campaign_id=campaign_id, dry_run="true")
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["dry_run"], report["total_rows"], report["valid_rows"], report["imported"]) == (True, 8, 3, 0)
    assert {(e["line"], e["field"]) for e in report["errors"]} == {
        (8, "phones[0]"),
        (8, "emails[0]"),
        (8, "source"),
        (9, "company_name"),
    }
    dupes = {d["line"]: d for d in report["duplicates"]}
    assert set(dupes) == {5, 6, 7}
    assert dupes[5]["same_as_line"] == 4 and dupes[5]["matched_on"] == ["company_name"]
    assert dupes[6]["existing_lead_id"] == held_lead and dupes[6]["matched_on"] == ["phones[0]"]
    assert dupes[6]["existing_owner_id"] == "intake-rep"
    assert dupes[7]["existing_customer_id"] == customer_id and dupes[7]["existing_owner_id"] == "intake-cust-owner"
    assert [(x["line"], x["result"]) for x in report["rows"]] == [
        (2, "ok"),
        (3, "ok"),
        (4, "ok"),
        (5, "duplicate"),
        (6, "duplicate"),
        (7, "duplicate"),
        (8, "error"),
        (9, "error"),
    ]
    r = await client.get("/v1/leads", params={"campaign_id": campaign_id}, headers=ADMIN)
    assert r.json()["items"] == []  # a dry run writes nothing

    bootstrap = leads_app.state.kit.settings.kafka_bootstrap_servers
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        r = await run_import(client, text, campaign_id=campaign_id, dry_run="false", in_pool="true", source="partner")
        assert r.status_code == 200, r.text
        report = r.json()
        assert (report["dry_run"], report["valid_rows"], report["imported"]) == (False, 3, 3)
        created = {x["line"]: x["lead_id"] for x in report["rows"] if x["result"] == "created"}
        assert set(created) == {2, 3, 4} and sorted(report["created_ids"]) == sorted(created.values())
        (summary,) = await events.wait_for(type=lev.LEADS_IMPORTED.name, subject=report["import_id"])
        for lead_id in created.values():
            (got,) = await events.wait_for(subject=lead_id, type=lev.LEAD_CREATED.name)
            assert got.event["data"]["via"] == "import"
    assert summary.event["data"]["imported"] == 3 and summary.event["data"]["duplicates"] == 3
    assert summary.event["data"]["campaign_id"] == campaign_id
    lead = (await client.get(f"/v1/leads/{created[2]}", headers=ADMIN)).json()
    assert lead["campaign_id"] == campaign_id and lead["in_pool"] and lead["owner_id"] is None
    assert lead["source"] == "exhibition"  # the row's own 来源 wins over the import's source
    assert lead["contact_name"] == "王经理" and lead["region"] == "上海" and lead["notes"] == "展会名片"
    other = (await client.get(f"/v1/leads/{created[4]}", headers=ADMIN)).json()
    assert other["source"] == "partner"
    assert len((await client.get(f"/v1/leads/{created[3]}", headers=ADMIN)).json()["phones"]) == 2
    # The same file again: every row that was entered is now a duplicate of its lead.
    r = await run_import(client, text, campaign_id=campaign_id, dry_run="false")
    again = r.json()
    assert again["imported"] == 0
    assert {d["line"]: d["existing_lead_id"] for d in again["duplicates"] if d["line"] in created} == created


async def test_gb18030_and_bom_files_and_english_headers(client: httpx.AsyncClient) -> None:
    name = company("国标编码")
    gbk = f"公司名称,联系人,电话\n{name},周经理,{phone()}\n".encode("gb18030")
    r = await run_import(client, gbk, dry_run="false")
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    lead = (await client.get(f"/v1/leads/{r.json()['created_ids'][0]}", headers=ADMIN)).json()
    assert lead["company_name"] == name and lead["contact_name"] == "周经理"
    assert lead["owner_id"] == "intake-mgr" and lead["created_by"] == "intake-mgr"
    bom = b"\xef\xbb\xbf" + f"company_name,email\n{company()},{email()}\n".encode()
    r = await run_import(client, bom)
    assert r.status_code == 200 and r.json()["valid_rows"] == 1 and r.json()["dry_run"], r.text


async def test_multipart_upload_with_form_fields(client: httpx.AsyncClient) -> None:
    campaign_id = await new_campaign(client)
    text = f"公司名称,电话\n{company()},{phone()}\n"
    r = await client.post(
        "/v1/leads/import",
        params={"dry_run": "false"},
        files={"file": ("leads.csv", text.encode(), "text/csv")},
        data={"campaign_id": campaign_id, "source": "exhibition"},
        headers=MANAGER,
    )
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    lead = (await client.get(f"/v1/leads/{r.json()['created_ids'][0]}", headers=ADMIN)).json()
    assert lead["campaign_id"] == campaign_id and lead["source"] == "exhibition"


async def test_import_refusals_name_what_is_wrong(client: httpx.AsyncClient) -> None:
    cancelled = await new_campaign(client, "cancelled")
    text = f"公司名称\n{company()}\n"
    r = await run_import(client, text, campaign_id=cancelled)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "campaign_id", r.text
    r = await run_import(
        client, f"公司名称,市场活动\n{company()},{cancelled}\n{company()},nope-{uuid.uuid4().hex[:4]}\n"
    )
    assert r.status_code == 200, r.text
    assert [(e["line"], e["field"]) for e in r.json()["errors"]] == [(2, "campaign_id"), (3, "campaign_id")]
    r = await run_import(client, text, source="tv")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "source", r.text
    r = await run_import(client, "名称2,电话\nx,y\n")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header", r.text
    r = await run_import(client, "联系人\n王\n")
    assert r.status_code == 422 and "company_name" in r.json()["errors"][0]["reason"], r.text
    # Limits: the session's service takes 50 rows and 64 KiB.
    many = "公司名称\n" + "".join(f"{company()}\n" for _ in range(51))
    r = await run_import(client, many)
    assert r.status_code == 413 and r.json()["max_rows"] == 50 and r.json()["errors"][0]["field"] == "body", r.text
    big = "公司名称,备注\n" + f"{company()},{'备' * 30000}\n"
    r = await run_import(client, big)
    assert r.status_code == 413 and r.json()["max_bytes"] == 64 * 1024, r.text
    r = await client.post("/v1/leads/import", content=text.encode(), headers={**REP, "Content-Type": "text/csv"})
    assert r.status_code == 403, r.text  # a rep has no leads:import


async def test_a_line_the_csv_parser_cannot_read_is_named_with_its_column(client: httpx.AsyncClient) -> None:
    """The customers import's reading (crm_platform.csv_import): the whole file refused, 422 at
    the column of the line the parser stops on, in words a person can act on."""
    r = await run_import(client, f"公司名称,联系人\r\n{company()},王\r\n{company()},李\r张\r\n".encode())
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["line"] == 3 and problem["errors"][0]["field"] == "contact_name", problem
    assert problem["errors"][0]["reason"].startswith("line 3: column '联系人': a bare carriage return"), problem
    r = await run_import(client, "公司\r名称\n甲\n")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header", r.text
    assert r.json()["errors"][0]["reason"].startswith("line 1: a bare carriage return"), r.text
