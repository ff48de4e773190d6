"""Service tickets over HTTP against the real embedded store and broker, on a clock the tests move:
opening one (number, SLA due moments, its event), 422s naming each field, the closed loop (reply,
resolve, return visit, close; reopen within the window only), If-Match, who sees and who may
assign (403/404), the list's filters and pages, the SLA scheduler escalating and breaching once per
target with two schedulers racing, and tickets opened from complaints (once per feedback).

Customers reach the service as in production: customers events on ``crm.customers.v1``; complaints
as the interactions service's ``crm.feedback.opened`` on ``crm.interactions.v1``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.clock import ManualClock
from crm_platform.contracts import directory as dev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import sales as sev
from crm_platform.events import EventEnvelope, to_kafka
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.event_feed import NOW, EventFeed
from crm_platform.testing.fixtures import auth, collecting, eventually, running, service_settings, unique
from crm_platform.testing.plans import deliver
from crm_sales.application.ticket_scheduler import TicketScheduler
from crm_sales.application.tickets import complaint_ticket_id
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings

PROBLEM = "application/problem+json"
CLOCK = ManualClock(datetime.now(UTC).replace(microsecond=0))


class User:
    def __init__(self, dept: str, roles: list[str] | None = None, prefix: str = "rep") -> None:
        self.id = unique(prefix)
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


class Team:
    def __init__(self) -> None:
        root = f"/{unique('t')}"
        self.rep = User(f"{root}/service")
        self.rep2 = User(f"{root}/service")
        self.outsider = User(f"/{unique('elsewhere')}")
        self.manager = User(root, ["manager"], "mgr")


@pytest.fixture
def team() -> Team:
    return Team()


@pytest.fixture(scope="module")
async def app(backend: Backend) -> AsyncIterator[FastAPI]:
    settings = SalesSettings(
        **service_settings(backend, "sales"),
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
        sales_ticket_scheduler_enabled=False,  # the tests run its passes
    )
    application = create_app(settings, CLOCK)
    async with running(application, "http://sales.test"):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sales.test") as c:
        yield c


@pytest.fixture(scope="module")
def feed(producer: AIOKafkaProducer) -> CustomerFeed:
    return CustomerFeed(producer)


@pytest.fixture(scope="module")
def directory(producer: AIOKafkaProducer) -> EventFeed:
    return EventFeed(producer)


async def in_directory(app: FastAPI, directory: EventFeed, user: User, status: str = "active") -> None:
    """The user as the directory publishes it, in the service's read copy of the users."""
    envelope = await directory.user(user.id, f"员工 {user.id[-6:]}", user.dept)
    if status != "active":
        snapshot = dev.UserSnapshot.model_validate(envelope.data["user"]).model_copy(
            update={"status": status, "deactivated_at": NOW}
        )
        await directory.send(dev.USER_DEACTIVATED, user.id, dev.UserDeactivated(user=snapshot), NOW, "admin")
    await eventually(
        lambda: app.state.kit.db["directory_users"].find_one({"_id": user.id, "status": status}),
        timeout=30,
        message=f"user {user.id} in the directory's copy",
    )


async def customer_of(app: FastAPI, feed: CustomerFeed, user: User) -> FedCustomer:
    customer = await feed.created(owner_id=user.id, department_path=user.dept, name=f"客户 {uuid.uuid4().hex[:8]}")
    await eventually(
        lambda: app.state.kit.db["customers"].find_one({"_id": customer.id, "source_version": customer.version}),
        timeout=30,
        message=f"customer {customer.id} in the read copy",
    )
    return customer


async def contract_of(client: httpx.AsyncClient, user: User, customer: FedCustomer) -> str:
    """A draft contract of the customer, made through the API."""
    payload = {"title": "年度维保合同", "customer_id": customer.id, "amount": "36000.00", "currency": "CNY"}
    r = await client.post("/v1/contracts", json=payload, headers=user.headers)
    assert r.status_code == 201, r.text
    contract_id: str = r.json()["id"]
    return contract_id


def body(customer: FedCustomer, **fields: Any) -> dict[str, Any]:
    return {"customer_id": customer.id, "category": "fault", "priority": "normal", "subject": "打印机卡纸", **fields}


async def opened(client: httpx.AsyncClient, user: User, payload: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/tickets", json=payload, headers=user.headers)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/tickets/{r.json()['id']}"
    got: dict[str, Any] = r.json()
    return got


def field_of(r: httpx.Response) -> str:
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
    name: str = r.json()["errors"][0]["field"]
    return name


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_open_a_ticket_with_its_sla_and_event(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    contract_id = await contract_of(client, team.rep, customer)
    async with collecting(app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        made = await opened(
            client, team.rep, body(customer, priority="urgent", contract_id=contract_id, source="phone")
        )
        (got,) = await events.wait_for(subject=made["id"], type=sev.TICKET_OPENED.name)
    assert re.fullmatch(rf"T-{CLOCK.now().year}-\d{{6}}", made["number"]), made["number"]
    assert made["status"] == "open" and made["owner_id"] == team.rep.id and made["opened_by"] == team.rep.id
    assert made["customer_name"] == customer.snapshot.name and made["contract_id"] == contract_id
    opened_at = moment(made["opened_at"])
    assert moment(made["first_response"]["due_at"]) - opened_at == timedelta(hours=1)
    assert moment(made["resolution_sla"]["due_at"]) - opened_at == timedelta(hours=4)
    assert moment(made["first_response"]["escalate_at"]) - opened_at == timedelta(minutes=48)
    assert made["first_response"]["state"] == "on_track" and made["escalation_level"] == 0
    snap = got.event["data"]["ticket"]
    assert snap["number"] == made["number"] and snap["priority"] == "urgent" and snap["version"] == 1
    assert snap["first_response_due_at"] and snap["resolution_due_at"] and snap["department_path"] == team.rep.dept
    r = await client.get(f"/v1/tickets/{made['id']}", headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["replies"] == []


async def test_the_contract_and_the_contact_must_be_the_customers(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await feed.created(
        owner_id=team.rep.id, department_path=team.rep.dept, name=f"客户 {uuid.uuid4().hex[:8]}", contacts=["张工"]
    )
    await eventually(
        lambda: app.state.kit.db["customers"].find_one({"_id": customer.id, "source_version": customer.version}),
        timeout=30,
        message="the customer in the read copy",
    )
    other = await customer_of(app, feed, team.rep)
    theirs = await contract_of(client, team.rep, other)
    mine = await contract_of(client, team.rep, customer)
    for fields, field in (
        ({"contract_id": "no-such-contract"}, "contract_id"),
        ({"contract_id": theirs}, "contract_id"),
        ({"contact_id": "no-such-contact"}, "contact_id"),
        ({"contact_id": other.contact_ids[0] if other.contact_ids else "x"}, "contact_id"),
    ):
        r = await client.post("/v1/tickets", json=body(customer, **fields), headers=team.rep.headers)
        assert field_of(r) == field, r.text
    assert await app.state.kit.db["tickets"].count_documents({"customer_id": customer.id}) == 0
    made = await opened(client, team.rep, body(customer, contract_id=mine, contact_id=customer.contact_ids[0]))
    assert (made["contract_id"], made["contact_id"]) == (mine, customer.contact_ids[0])


async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    before = await app.state.kit.db["tickets"].count_documents({"customer_id": customer.id})
    cases = [
        ({"customer_id": f"nobody-{uuid.uuid4().hex}"}, "customer_id"),
        ({"category": "weather"}, "category"),
        ({"priority": "asap"}, "priority"),
        ({"source": "pigeon"}, "source"),
        ({"subject": "   "}, "subject"),
    ]
    for change, field in cases:
        r = await client.post("/v1/tickets", json=body(customer, **change), headers=team.rep.headers)
        assert field_of(r).endswith(field), (change, r.text)
    await feed.deleted(customer)
    await eventually(
        lambda: app.state.kit.db["customers"].find_one({"_id": customer.id, "status": "deleted"}), timeout=30
    )
    r = await client.post("/v1/tickets", json=body(customer), headers=team.rep.headers)
    assert field_of(r) == "customer_id" and "recycle bin" in r.text
    assert await app.state.kit.db["tickets"].count_documents({"customer_id": customer.id}) == before


async def test_the_closed_loop_reply_resolve_visit_close_and_reopen(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    made = await opened(client, team.rep, body(customer))
    url = f"/v1/tickets/{made['id']}"
    async with collecting(app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await client.post(f"{url}/replies", json={"body": "已收到，工程师今天上门"}, headers=team.rep.match('"1"'))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "in_progress" and r.json()["first_responded_at"] and r.headers["etag"] == '"2"'
        assert r.json()["first_response"]["state"] == "met"
        r = await client.post(
            f"{url}/replies", json={"body": "内部备注", "public": False}, headers=team.rep.match('"1"')
        )
        assert r.status_code == 412  # stale If-Match: nothing written
        r = await client.post(f"{url}/return-visits", json={"satisfaction": 5}, headers=team.rep.headers)
        assert r.status_code == 409 and r.json()["ticket_status"] == "in_progress"
        r = await client.post(f"{url}/resolve", json={"resolution": " "}, headers=team.rep.headers)
        assert field_of(r) == "resolution"
        r = await client.post(f"{url}/resolve", json={"resolution": "更换硒鼓"}, headers=team.rep.headers)
        assert (
            r.status_code == 200 and r.json()["status"] == "resolved" and r.json()["resolution_sla"]["state"] == "met"
        )
        r = await client.post(f"{url}/close", json={}, headers=team.rep.headers)
        assert field_of(r) == "no_visit_reason"
        r = await client.post(f"{url}/return-visits", json={"satisfaction": 6}, headers=team.rep.headers)
        assert field_of(r) == "satisfaction"
        r = await client.post(f"{url}/reopen", headers=team.rep.headers)
        assert r.status_code == 200 and r.json()["status"] == "in_progress" and r.json()["reopen_count"] == 1
        await client.post(f"{url}/resolve", json={"resolution": "再次处理"}, headers=team.rep.headers)
        r = await client.post(
            f"{url}/return-visits",
            json={"satisfaction": 4, "comment": "满意", "channel": "wechat"},
            headers=team.rep.headers,
        )
        assert (
            r.status_code == 200 and r.json()["satisfaction"] == 4 and r.json()["return_visit"]["channel"] == "wechat"
        )
        r = await client.post(f"{url}/close", headers=team.rep.headers)
        assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["closed_at"]
        r = await client.post(f"{url}/replies", json={"body": "x"}, headers=team.rep.headers)
        assert r.status_code == 409 and r.json()["action"] == "reply"
        kinds = [
            sev.TICKET_REPLIED.name,
            sev.TICKET_RESOLVED.name,
            sev.TICKET_REOPENED.name,
            sev.TICKET_RETURN_VISITED.name,
            sev.TICKET_CLOSED.name,
        ]
        for kind in kinds:
            await events.wait_for(subject=made["id"], type=kind)
    assert len(events.matching(subject=made["id"], type=sev.TICKET_REPLIED.name)) == 1
    (closed,) = events.matching(subject=made["id"], type=sev.TICKET_CLOSED.name)
    assert closed.event["data"]["ticket"]["satisfaction"] == 4 and closed.event["data"]["ticket"]["status"] == "closed"
    r = await client.get(url, headers=team.rep.headers)
    assert [x["public"] for x in r.json()["replies"]] == [True]


async def test_reopen_only_within_the_window(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    made = await opened(client, team.rep, body(customer, priority="low"))
    url = f"/v1/tickets/{made['id']}"
    await client.post(f"{url}/resolve", json={"resolution": "done"}, headers=team.rep.headers)
    CLOCK.advance(timedelta(days=8))
    r = await client.post(f"{url}/reopen", json={"reason": "又坏了"}, headers=team.rep.headers)
    assert r.status_code == 409 and r.json()["reason"] == "reopen-window-passed", r.text
    r = await client.post(f"{url}/close", json={"no_visit_reason": "客户联系不上"}, headers=team.rep.headers)
    assert r.status_code == 200 and r.json()["no_visit_reason"] == "客户联系不上"


async def test_who_sees_and_who_assigns(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, directory: EventFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    await in_directory(app, directory, team.rep2)
    made = await opened(client, team.rep, body(customer))
    url = f"/v1/tickets/{made['id']}"
    for user in (team.rep2, team.outsider):  # reps see their own only (tickets scope own)
        assert (await client.get(url, headers=user.headers)).status_code == 404
    r = await client.post(f"{url}/assign", json={"assignee_id": team.rep2.id}, headers=team.rep.headers)
    assert r.status_code == 403 and "tickets:assign" in r.text
    assert (await client.get(url, headers=team.manager.headers)).status_code == 200  # the subtree
    r = await client.post(f"{url}/assign", json={"assignee_id": team.rep2.id}, headers=team.manager.match('"1"'))
    assert r.status_code == 200 and r.json()["owner_id"] == team.rep2.id
    assert (await client.get(url, headers=team.rep2.headers)).status_code == 200  # the assignee
    assert (await client.get(url, headers=team.rep.headers)).status_code == 200  # the opener still
    assert (await client.get(url, headers=team.outsider.headers)).status_code == 404
    r = await client.post(f"{url}/resolve", json={"resolution": "x"}, headers=team.outsider.headers)
    assert r.status_code == 404
    assert (await client.get(url, headers=auth(unique("i"), ["integrator"]))).status_code == 403


async def test_the_department_follows_the_assignee(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, directory: EventFeed
) -> None:
    """Assigned to someone of another department, the ticket is that department's: its manager
    sees it, the old department's manager no more (the opener still does). An unknown or
    deactivated assignee is a 422 at assignee_id that writes nothing."""
    east, west = Team(), Team()
    for user in (west.rep, west.rep2):
        await in_directory(app, directory, user)
    customer = await customer_of(app, feed, east.rep)
    made = await opened(client, east.rep, body(customer))
    url = f"/v1/tickets/{made['id']}"
    assert made["department_path"] == east.rep.dept
    assert (await client.get(url, headers=west.manager.headers)).status_code == 404

    gone = User(west.rep.dept)
    await in_directory(app, directory, gone, status="deactivated")
    for assignee, reason in ((f"nobody-{uuid.uuid4().hex}", "no user"), (gone.id, "deactivated")):
        r = await client.post(f"{url}/assign", json={"assignee_id": assignee}, headers=east.manager.headers)
        assert field_of(r) == "assignee_id" and reason in r.text, r.text
    assert (await client.get(url, headers=east.rep.headers)).json()["version"] == 1  # nothing written

    async with collecting(app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await client.post(f"{url}/assign", json={"assignee_id": west.rep.id}, headers=east.manager.match('"1"'))
        assert r.status_code == 200, r.text
        assert r.json()["owner_id"] == west.rep.id and r.json()["department_path"] == west.rep.dept
        (got,) = await events.wait_for(subject=made["id"], type=sev.TICKET_ASSIGNED.name)
    assert got.event["data"]["ticket"]["department_path"] == west.rep.dept
    assert got.event["data"]["previous_owner_id"] == east.rep.id
    assert (await client.get(url, headers=west.manager.headers)).status_code == 200  # the new department's
    assert (await client.get(url, headers=east.manager.headers)).status_code == 404  # the old one's: no more
    assert (await client.get(url, headers=east.rep.headers)).status_code == 200  # the opener still
    assert (await client.get(url, headers=west.rep2.headers)).status_code == 404  # a rep sees their own only
    listed = await client.get(f"/v1/tickets?customer_id={customer.id}", headers=west.manager.headers)
    assert [t["id"] for t in listed.json()["items"]] == [made["id"]]
    listed = await client.get(f"/v1/tickets?customer_id={customer.id}", headers=east.manager.headers)
    assert listed.json()["items"] == []
    # the new department's manager passes it on inside the department
    r = await client.post(f"{url}/assign", json={"assignee_id": west.rep2.id}, headers=west.manager.headers)
    assert r.status_code == 200 and r.json()["department_path"] == west.rep2.dept, r.text
    assert (await client.get(url, headers=west.rep.headers)).status_code == 404  # no longer the assignee


async def test_lists_filter_page_and_respect_visibility(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    made = []
    for priority in ("high", "low", "high"):
        made.append(await opened(client, team.rep, body(customer, priority=priority)))
        CLOCK.advance(timedelta(seconds=1))
    await client.post(f"/v1/tickets/{made[0]['id']}/replies", json={"body": "hi"}, headers=team.rep.headers)
    ids = [m["id"] for m in made]

    async def listed(url: str, user: User) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            r = await client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=user.headers)
            assert r.status_code == 200, r.text
            seen += [t["id"] for t in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return seen

    assert await listed(f"/v1/tickets?customer_id={customer.id}&limit=2", team.rep) == ids[::-1]  # newest first
    assert await listed(f"/v1/customers/{customer.id}/tickets?limit=1", team.manager) == ids[::-1]
    assert await listed(f"/v1/tickets?customer_id={customer.id}&priority=high", team.rep) == [ids[2], ids[0]]
    assert await listed(f"/v1/tickets?customer_id={customer.id}&status=in_progress", team.rep) == [ids[0]]
    assert await listed(f"/v1/tickets?assignee_id={team.rep.id}&limit=2", team.rep) == ids[::-1]
    assert await listed(f"/v1/tickets?customer_id={customer.id}&breached=true", team.rep) == []
    assert await listed(f"/v1/tickets?customer_id={customer.id}", team.rep2) == []
    assert await listed(f"/v1/tickets?assignee_id={team.rep.id}", team.outsider) == []
    r = await client.get("/v1/tickets?status=lost", headers=team.rep.headers)
    assert r.status_code == 422


async def test_the_list_sorts_by_resolution_due_and_by_priority_in_keyset_pages(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    low = await opened(client, team.rep, body(customer, priority="low"))  # due in 168h
    normal = await opened(client, team.rep, body(customer, priority="normal"))  # 72h
    CLOCK.advance(timedelta(hours=100))
    urgent = [await opened(client, team.rep, body(customer, priority="urgent")) for _ in range(2)]  # 104h, a tie
    high = await opened(client, team.rep, body(customer, priority="high"))  # 124h
    urgent.sort(key=lambda t: str(t["id"]))  # a tie is broken by the id
    r = await client.post(f"/v1/tickets/{low['id']}/resolve", json={"resolution": "好了"}, headers=team.rep.headers)
    assert r.status_code == 200, r.text

    async def listed(query: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            url = f"/v1/tickets?customer_id={customer.id}&limit=2&{query}" + (f"&cursor={cursor}" if cursor else "")
            r = await client.get(url, headers=team.manager.headers)
            assert r.status_code == 200, r.text
            seen += [t["id"] for t in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return seen

    by_due = [normal["id"], *(t["id"] for t in urgent), high["id"], low["id"]]
    assert await listed("sort=resolution_due") == by_due
    by_priority = [*(t["id"] for t in urgent), high["id"], normal["id"], low["id"]]
    assert await listed("sort=priority") == by_priority
    later = sorted([high["id"], *(t["id"] for t in urgent)], reverse=True)  # one moment: ties by id
    assert await listed("sort=-opened_at") == later + sorted([normal["id"], low["id"]], reverse=True)
    assert await listed("sort=resolution_due&status=open") == [normal["id"], *(t["id"] for t in urgent), high["id"]]
    r = await client.get(f"/v1/customers/{customer.id}/tickets?sort=priority&limit=3", headers=team.manager.headers)
    assert [t["id"] for t in r.json()["items"]] == by_priority[:3]
    r = await client.get("/v1/tickets?sort=subject", headers=team.rep.headers)
    assert field_of(r) == "sort"


async def test_tickets_stored_before_the_priority_sort_get_its_key_at_start(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    made = await opened(client, team.rep, body(customer, priority="high"))
    tickets = app.state.kit.db["tickets"]
    await tickets.update_one({"_id": made["id"]}, {"$unset": {"s.priority": ""}})  # as stored before
    await app.state.tickets.repo.ensure_indexes()  # what the service does at start
    stored = await tickets.find_one({"_id": made["id"]})
    assert stored["s"]["priority"] == 1 and stored["version"] == 1


async def test_the_scheduler_escalates_and_breaches_once_per_target(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    made = await opened(client, team.rep, body(customer, priority="urgent"))
    url = f"/v1/tickets/{made['id']}"
    first = app.state.ticket_scheduler
    second = TicketScheduler(first.repo, CLOCK, app.state.kit.source)  # another replica
    async with collecting(app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        CLOCK.advance(timedelta(minutes=47))
        await asyncio.gather(first.tick(), second.tick())
        assert (await client.get(url, headers=team.rep.headers)).json()["escalation_level"] == 0
        CLOCK.advance(timedelta(minutes=2))  # 49 min: past 80 % of the hour's first response
        await asyncio.gather(first.tick(), second.tick(), first.tick())
        got = (await client.get(url, headers=team.rep.headers)).json()
        assert got["escalation_level"] == 1 and got["first_response"]["state"] == "at_risk"
        assert got["first_response"]["escalated_at"] and not got["breached"]
        CLOCK.advance(timedelta(minutes=12))  # 61 min: the first response is late
        await asyncio.gather(first.tick(), second.tick())
        await asyncio.gather(first.tick(), second.tick())
        got = (await client.get(url, headers=team.rep.headers)).json()
        assert got["breached"] and got["first_response"]["state"] == "breached" and got["escalation_level"] == 1
        r = await client.get(f"/v1/tickets?customer_id={customer.id}&breached=true", headers=team.rep.headers)
        assert [t["id"] for t in r.json()["items"]] == [made["id"]]
        r = await client.post(f"{url}/replies", json={"body": "抱歉久等"}, headers=team.rep.headers)
        assert r.json()["first_response"]["state"] == "breached"
        CLOCK.advance(timedelta(hours=4))  # past the resolution too: escalated and breached, once each
        await asyncio.gather(first.tick(), second.tick())
        await asyncio.gather(first.tick(), second.tick())
        await events.wait_for(2, subject=made["id"], type=sev.TICKET_SLA_BREACHED.name)
        await events.wait_for(2, subject=made["id"], type=sev.TICKET_ESCALATED.name)
        await asyncio.sleep(0.5)  # a duplicate would have left by now
    escalated = events.matching(subject=made["id"], type=sev.TICKET_ESCALATED.name)
    breached = events.matching(subject=made["id"], type=sev.TICKET_SLA_BREACHED.name)
    assert sorted(e.event["data"]["target"] for e in escalated) == ["first_response", "resolution"]
    assert sorted(e.event["data"]["target"] for e in breached) == ["first_response", "resolution"]
    assert escalated[0].event["data"]["ticket"]["escalation_level"] == 1
    got = (await client.get(url, headers=team.rep.headers)).json()
    assert got["escalation_level"] == 2 and got["resolution_sla"]["state"] == "breached"


def feedback_opened(customer: FedCustomer, reporter: User, handler: User | None) -> EventEnvelope:
    now = datetime.now(UTC)
    snapshot = iev.FeedbackSnapshot(
        feedback_id=str(uuid.uuid4()),
        kind="complaint",
        priority="high",
        title="安装师傅迟到两小时",
        description="客户投诉上门安装严重迟到",
        customer_id=customer.id,
        status="open",
        reported_by=reporter.id,
        reporter_department_path=reporter.dept,
        handler_id=handler.id if handler else None,
        handler_department_path=handler.dept if handler else None,
        opened_at=now,
        updated_at=now,
    )
    return iev.FEEDBACK_OPENED.build(
        source="/crm/interactions",
        subject=snapshot.feedback_id,
        data=iev.FeedbackOpened(feedback=snapshot),
        aggregate_version=1,
        time=now,
        actor=reporter.id,
    )


async def test_a_complaint_opens_one_ticket(
    client: httpx.AsyncClient, app: FastAPI, feed: CustomerFeed, producer: AIOKafkaProducer, team: Team
) -> None:
    customer = await customer_of(app, feed, team.rep)
    envelope = feedback_opened(customer, team.rep, team.rep2)
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    for _ in range(2):  # a redelivery
        await producer.send_and_wait(iev.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
    ticket_id = complaint_ticket_id(envelope.subject)
    tickets = app.state.kit.db["tickets"]
    await eventually(lambda: tickets.find_one({"_id": ticket_id}), timeout=30, message="the complaint's ticket")
    assert await deliver(app, envelope) == 1  # and once more, by hand
    assert await tickets.count_documents({"feedback_id": envelope.subject}) == 1
    r = await client.get(f"/v1/tickets/{ticket_id}", headers=team.rep2.headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["source"], got["category"], got["priority"]) == ("complaint", "complaint", "high")
    assert (
        got["owner_id"] == team.rep2.id and got["opened_by"] == team.rep.id and got["feedback_id"] == envelope.subject
    )
    assert got["subject"] == "安装师傅迟到两小时" and got["customer_name"] == customer.snapshot.name
    suggestion = feedback_opened(customer, team.rep, None)
    suggestion.data["feedback"]["kind"] = "suggestion"
    assert await deliver(app, suggestion) == 1
    assert await tickets.find_one({"_id": complaint_ticket_id(suggestion.subject)}) is None
    settled = feedback_opened(customer, team.rep, None)
    settled.data["feedback"]["status"] = "resolved"
    assert await deliver(app, settled) == 1
    assert await tickets.find_one({"_id": complaint_ticket_id(settled.subject)}) is None
