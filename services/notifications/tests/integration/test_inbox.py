"""The inbox fills from other services' events, in each recipient's language, once per event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from notifications_testkit import World, customer, feedback, move, opportunity, task

from crm_platform.contracts import customers, interactions, pipeline, pool, sales
from crm_platform.contracts import export_approval as exports
from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.roles import role_event


async def test_customer_assigned_in_chinese_and_recycle_warning_in_english(
    client: httpx.AsyncClient, world: World
) -> None:
    zh = await world.person("zh-CN")
    en = await world.person("en")
    c = customer(zh.id)
    event = await world.emit(
        customers.OWNER_CHANGED,
        c.customer_id,
        customers.OwnerChanged(customer=c, previous_owner_id="u-old", owner_id=zh.id),
        actor="u-manager",
    )
    [item] = await world.inbox(client, zh)
    assert item["kind"] == "customer_assigned"
    assert item["title"] == f"新客户分配给您：{c.name}"
    assert item["language"] == "zh-CN"
    assert item["link"] == f"/customers/{c.customer_id}"
    assert item["event_id"] == event.id and item["read_at"] is None

    warning = pool.RecycleWarning(
        customer_id=c.customer_id,
        customer_name="Acme Ltd",
        owner_id=en.id,
        recycle_at=event.time,
        reason="no_interaction",
        rule_id="r-1",
        days_left=3,
    )
    await world.emit(pool.RECYCLE_WARNING, c.customer_id, warning, actor=pool.SYSTEM_ACTOR)
    [item] = await world.inbox(client, en)
    assert item["kind"] == "customer_recycle_warning"
    assert item["title"] == "Customer returns to the pool soon: Acme Ltd"
    assert "in 3 day(s)" in item["body"]
    # Nobody else sees it.
    other = await client.get("/v1/notifications", headers=auth(unique("u")))
    assert other.json()["items"] == []
    forbidden = await client.post(f"/v1/notifications/{item['id']}/read", headers=zh.headers)
    assert forbidden.status_code == 404


async def test_lead_recycle_warning_names_the_lead(client: httpx.AsyncClient, world: World) -> None:
    zh = await world.person("zh-CN")
    lead_id = unique("lead")
    warning = pool.LeadRecycleWarning(
        lead_id=lead_id,
        company_name="示例线索有限公司",
        owner_id=zh.id,
        recycle_at=datetime.now(UTC) + timedelta(days=3),
        rule_id="r-leads",
        days_left=3,
    )
    await world.emit(pool.LEAD_RECYCLE_WARNING, lead_id, warning, actor=pool.SYSTEM_ACTOR)
    [item] = await world.inbox(client, zh)
    assert item["kind"] == "lead_recycle_warning"
    assert item["title"] == "线索即将回收至线索池：示例线索有限公司"
    assert "3 天后" in item["body"] and item["link"] == f"/leads/{lead_id}"


async def test_unread_filter_count_paging_and_marking_read(client: httpx.AsyncClient, world: World) -> None:
    rep = await world.person("en")
    for n in range(3):
        t = task(rep.id, f"Call back #{n}")
        await world.emit(interactions.TASK_REMINDER_DUE, t.task_id, interactions.TaskReminderDue(task=t))
    items = await world.inbox(client, rep, 3)
    assert {i["kind"] for i in items} == {"task_reminder"}
    assert all(i["link"].startswith("/tasks/") for i in items)
    assert (await client.get("/v1/notifications/unread-count", headers=rep.headers)).json() == {"unread": 3}

    first = await client.get("/v1/notifications", headers=rep.headers, params={"limit": 2})
    page1 = first.json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    second = await client.get(
        "/v1/notifications", headers=rep.headers, params={"limit": 2, "cursor": page1["next_cursor"]}
    )
    page2 = second.json()
    assert len(page2["items"]) == 1 and page2["next_cursor"] is None
    assert {i["id"] for i in page1["items"] + page2["items"]} == {i["id"] for i in items}

    read = await client.post(f"/v1/notifications/{items[0]['id']}/read", headers=rep.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    unread = await client.get("/v1/notifications", headers=rep.headers, params={"filter": "unread"})
    assert {i["id"] for i in unread.json()["items"]} == {items[1]["id"], items[2]["id"]}
    assert (await client.get("/v1/notifications/unread-count", headers=rep.headers)).json() == {"unread": 2}

    marked = await client.post("/v1/notifications/read-all", headers=rep.headers)
    assert marked.json() == {"marked_read": 2}
    assert (await client.get("/v1/notifications/unread-count", headers=rep.headers)).json() == {"unread": 0}
    everything = await client.get("/v1/notifications", headers=rep.headers, params={"filter": "all"})
    assert len(everything.json()["items"]) == 3
    bad = await client.get("/v1/notifications", headers=rep.headers, params={"filter": "some"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "filter"


async def test_the_same_event_twice_gives_one_notification(client: httpx.AsyncClient, world: World) -> None:
    rep = await world.person("zh-CN")
    t = task(rep.id, "签合同")
    envelope = interactions.TASK_OVERDUE.build(
        source="/crm/interactions",
        subject=t.task_id,
        data=interactions.TaskOverdue(task=t),
        aggregate_version=3,
        time=t.updated_at,
        actor="system:interactions",
    )
    await world.publish(envelope, interactions.TOPIC)
    await world.publish(envelope, interactions.TOPIC)
    # A later event on the same key (same partition, so handled after both copies) tells us both were seen.
    marker = interactions.TASK_REMINDER_DUE.build(
        source="/crm/interactions",
        subject=t.task_id,
        data=interactions.TaskReminderDue(task=t),
        aggregate_version=4,
        time=t.updated_at,
        actor="system:interactions",
    )
    await world.publish(marker, interactions.TOPIC)
    items = await world.inbox(client, rep, 2)
    assert sorted(i["kind"] for i in items) == ["task_overdue", "task_reminder"]
    assert [i["event_id"] for i in items].count(envelope.id) == 1
    assert items[-1]["title"] == "待办已逾期：签合同"


async def test_no_notification_for_what_you_did_yourself(client: httpx.AsyncClient, world: World) -> None:
    rep = await world.person("en")
    c = customer(rep.id)
    # Took the customer themselves: nothing to tell.
    await world.emit(
        customers.OWNER_CHANGED,
        c.customer_id,
        customers.OwnerChanged(customer=c, previous_owner_id=None, owner_id=rep.id),
        actor=rep.id,
    )
    # Then a manager released it: they are told (same key, so it is handled after the first).
    await world.emit(
        customers.RELEASED,
        c.customer_id,
        customers.ReleasedToPool(customer=c, previous_owner_id=rep.id, reason="manual"),
        actor="u-manager",
        version=2,
    )
    items = await world.inbox(client, rep, 1)
    assert [i["kind"] for i in items] == ["customer_released"]
    assert "went to the public pool (manual)" in items[0]["body"]


async def test_opportunities_feedback_and_big_deals(client: httpx.AsyncClient, world: World) -> None:
    root, region, team = unique("hq"), unique("east"), unique("team")
    boss = await world.person("en", f"/{root}", ["manager"])
    regional = await world.person("zh-CN", f"/{root}/{region}", ["manager"])
    rep = await world.person("en", f"/{root}/{region}/{team}")
    await world.department(root, f"/{root}", boss.id)
    await world.department(region, f"/{root}/{region}", regional.id)
    await world.department(team, f"/{root}/{region}/{team}", None)

    assigned = opportunity(rep.id, "80000.00", rep.department_path)
    await world.emit(
        pipeline.OPPORTUNITY_CREATED,
        assigned.opportunity_id,
        pipeline.OpportunityCreated(opportunity=assigned),
        actor=regional.id,
    )
    small = opportunity(rep.id, "499999.99", rep.department_path)
    await world.emit(
        pipeline.OPPORTUNITY_WON,
        small.opportunity_id,
        pipeline.OpportunityWon(opportunity=small, move=move(rep.id), reason="signed"),
        actor=rep.id,
    )
    big = opportunity(rep.id, "2500000.00", rep.department_path)
    await world.emit(
        pipeline.OPPORTUNITY_WON,
        big.opportunity_id,
        pipeline.OpportunityWon(opportunity=big, move=move(rep.id), reason="signed"),
        actor=rep.id,
    )
    f = feedback(rep.id)
    await world.emit(interactions.FEEDBACK_OPENED, f.feedback_id, interactions.FeedbackOpened(feedback=f), actor="u-x")

    rep_items = await world.inbox(client, rep, 2)
    by_kind: dict[str, Any] = {i["kind"]: i for i in rep_items}
    assert by_kind["opportunity_assigned"]["title"] == "New opportunity for you: ERP 升级项目"
    assert "80000.00 CNY" in by_kind["opportunity_assigned"]["body"]
    assert by_kind["opportunity_assigned"]["link"] == f"/opportunities/{assigned.opportunity_id}"
    assert by_kind["feedback_assigned"]["title"] == "A complaint for you to handle: 发票金额有误"
    assert by_kind["feedback_assigned"]["link"] == f"/feedback/{f.feedback_id}"

    [boss_item] = await world.inbox(client, boss, 1)
    [regional_item] = await world.inbox(client, regional, 1)
    assert boss_item["kind"] == regional_item["kind"] == "big_deal_won"
    assert boss_item["link"] == f"/opportunities/{big.opportunity_id}"
    assert regional_item["title"] == "大单赢单：ERP 升级项目" and "2500000.00 CNY" in regional_item["body"]
    # The deal below the threshold told nobody (it was handled before the big one, on the same partition or not:
    # by now each manager has exactly one notification, and it is about the big deal).
    assert boss_item["event_id"] != small.opportunity_id


async def test_feedback_handler_change_tells_the_new_handler(client: httpx.AsyncClient, world: World) -> None:
    handler = await world.person("zh-CN")
    f = feedback(None, kind="request")
    await world.emit(interactions.FEEDBACK_OPENED, f.feedback_id, interactions.FeedbackOpened(feedback=f), actor="u-x")
    f2 = f.model_copy(update={"handler_id": handler.id})
    change = interactions.FieldChange(field="handler_id", old=None, new=handler.id)
    await world.emit(
        interactions.FEEDBACK_UPDATED,
        f.feedback_id,
        interactions.FeedbackUpdated(feedback=f2, changes=[change]),
        actor="u-x",
        version=2,
    )
    [item] = await world.inbox(client, handler, 1)
    assert item["title"] == "客户需求分配给您处理：发票金额有误"


async def test_export_approval_tells_the_managers_above_then_the_requester(
    client: httpx.AsyncClient, world: World
) -> None:
    """A held export tells every manager above the requester (not the requester, not twice); the
    answer tells the requester, with the approver's comment and, when approved, until when."""
    root, team = unique("hq"), unique("team")
    boss = await world.person("en", f"/{root}", ["manager"])
    lead = await world.person("zh-CN", f"/{root}/{team}", ["manager"])
    rep = await world.person("en", f"/{root}/{team}")
    await world.department(root, f"/{root}", boss.id)
    await world.department(team, f"/{root}/{team}", lead.id)
    now = datetime.now(UTC)
    request = exports.ExportRequestSnapshot(
        request_id=unique("xr"),
        requester_id=rep.id,
        requester_department_path=rep.department_path,
        filter={"tags_all": "华东"},
        rows=1500,
        threshold=1000,
        status="pending",
        requested_at=now,
    )
    await world.emit(
        exports.EXPORT_REQUESTED, request.request_id, exports.ExportRequested(request=request), actor=rep.id
    )
    [boss_item] = await world.inbox(client, boss, 1)
    [lead_item] = await world.inbox(client, lead, 1)
    assert boss_item["kind"] == lead_item["kind"] == "export_approval_requested"
    assert boss_item["link"] == f"/export-requests/{request.request_id}"
    assert boss_item["title"] == f"Export awaiting approval: Name {rep.id}, 1500 rows"
    assert lead_item["title"] == f"客户导出待审批：Name {rep.id}，1500 行" and "1000" in lead_item["body"]

    approved = request.model_copy(
        update={
            "status": "approved",
            "decided_by": lead.id,
            "decided_at": now,
            "comment": "季度复盘",
            "valid_until": now + timedelta(hours=24),
        }
    )
    await world.emit(
        exports.EXPORT_APPROVED,
        request.request_id,
        exports.ExportRequestDecided(request=approved),
        actor=lead.id,
        version=2,
    )
    [answer] = await world.inbox(client, rep, 1)
    assert answer["kind"] == "export_approved" and answer["title"] == "Export approved (1500 rows)"
    assert f"Name {lead.id}" in answer["body"] and "季度复盘" in answer["body"]
    rejected = request.model_copy(update={"request_id": unique("xr"), "status": "rejected", "decided_by": boss.id})
    await world.emit(
        exports.EXPORT_REJECTED, rejected.request_id, exports.ExportRequestDecided(request=rejected), actor=boss.id
    )
    items = await world.inbox(client, rep, 2)
    assert {i["kind"] for i in items} == {"export_approved", "export_rejected"}
    assert next(i for i in items if i["kind"] == "export_rejected")["body"].endswith(f"Name {boss.id}: -.")


async def test_a_notification_leaves_out_what_its_readers_roles_hide(
    client: httpx.AsyncClient, app: FastAPI, world: World
) -> None:
    """An opportunity assigned to someone whose role hides opportunities' amount tells them the
    name, not the amount (in the inbox and the email alike: both are the same rendering); a
    reader whose roles hide nothing gets the amount. A custom role, so no other test's readers
    change."""
    role = unique("no-amount")
    fields = {"opportunities": {"amount": "hidden"}}
    await app.state.kit.roles.apply(role_event(role, 1, permissions=["account:self", "inbox:use"], fields=fields))
    hidden_from = await world.person("en", roles=[role])
    shown_to = await world.person("zh-CN")
    for person in (hidden_from, shown_to):
        deal = opportunity(person.id, "80000.00", person.department_path)
        await world.emit(
            pipeline.OPPORTUNITY_CREATED,
            deal.opportunity_id,
            pipeline.OpportunityCreated(opportunity=deal),
            actor=unique("someone"),
        )
    [limited] = await world.inbox(client, hidden_from, 1)
    assert limited["kind"] == "opportunity_assigned" and limited["title"] == "New opportunity for you: ERP 升级项目"
    assert "80000" not in limited["body"] and "(—)" in limited["body"], limited["body"]
    [full] = await world.inbox(client, shown_to, 1)
    assert "80000.00 CNY" in full["body"], full["body"]


async def test_an_escalated_ticket_tells_its_assignee_and_the_managers_above(
    client: httpx.AsyncClient, world: World
) -> None:
    """crm.ticket.escalated (the sales service's SLA scheduler) tells the assignee and every manager
    of the ticket's department and above, once each, in their language."""
    root, team = unique("hq"), unique("svc")
    boss = await world.person("en", f"/{root}", ["manager"])
    lead = await world.person("zh-CN", f"/{root}/{team}", ["manager"])
    agent = await world.person("zh-CN", f"/{root}/{team}")
    await world.department(root, f"/{root}", boss.id)
    await world.department(team, f"/{root}/{team}", lead.id)
    now = datetime.now(UTC)
    ticket = sales.TicketSnapshot(
        ticket_id=unique("tk"),
        number="T-2026-000042",
        customer_id=unique("c"),
        source="phone",
        category="fault",
        priority="urgent",
        subject="打印机卡纸",
        status="open",
        owner_id=agent.id,
        opened_by=lead.id,
        department_path=agent.department_path,
        opened_at=now,
        first_response_due_at=now + timedelta(hours=1),
        resolution_due_at=now + timedelta(hours=4),
        escalation_level=1,
        version=2,
    )
    data = sales.TicketSla(ticket=ticket, target="first_response", due_at=ticket.first_response_due_at)
    await world.emit(sales.TICKET_ESCALATED, ticket.ticket_id, data, actor="system:tickets-scheduler", version=2)
    [mine] = await world.inbox(client, agent, 1)
    [boss_item] = await world.inbox(client, boss, 1)
    [lead_item] = await world.inbox(client, lead, 1)
    assert mine["kind"] == boss_item["kind"] == lead_item["kind"] == "ticket_escalated"
    assert mine["link"] == f"/tickets/{ticket.ticket_id}"
    assert mine["title"] == "工单即将超时：T-2026-000042 打印机卡纸" and "首次响应" in mine["body"]
    assert boss_item["title"] == "Ticket about to breach its SLA: T-2026-000042 打印机卡纸"
    assert "first response" in boss_item["body"] and "urgent" in boss_item["body"]


async def test_a_breached_ticket_tells_the_same_people_and_an_assignment_its_new_assignee(
    client: httpx.AsyncClient, world: World
) -> None:
    """crm.ticket.sla_breached tells the assignee and the managers of the ticket's department and
    above, once each; crm.ticket.assigned tells the new assignee, unless they took it themselves."""
    root, team = unique("hq"), unique("svc")
    boss = await world.person("en", f"/{root}", ["manager"])
    lead = await world.person("zh-CN", f"/{root}/{team}", ["manager"])
    agent = await world.person("zh-CN", f"/{root}/{team}")
    await world.department(root, f"/{root}", boss.id)
    await world.department(team, f"/{root}/{team}", lead.id)
    now = datetime.now(UTC)
    ticket = sales.TicketSnapshot(
        ticket_id=unique("tk"),
        number="T-2026-000043",
        customer_id=unique("c"),
        source="phone",
        category="fault",
        priority="high",
        subject="空调不制冷",
        status="in_progress",
        owner_id=agent.id,
        opened_by=lead.id,
        department_path=agent.department_path,
        opened_at=now,
        first_response_due_at=now + timedelta(hours=4),
        resolution_due_at=now + timedelta(hours=24),
        version=2,
    )
    await world.emit(
        sales.TICKET_ASSIGNED,
        ticket.ticket_id,
        sales.TicketAssigned(ticket=ticket, previous_owner_id=lead.id),
        actor=lead.id,
        version=2,
    )
    [mine] = await world.inbox(client, agent, 1)
    assert mine["kind"] == "ticket_assigned" and mine["link"] == f"/tickets/{ticket.ticket_id}"
    assert mine["title"] == "工单指派给您：T-2026-000043 空调不制冷" and "优先级 高" in mine["body"]

    # the agent takes it again themselves (after a hand-over): that tells nobody
    await world.emit(
        sales.TICKET_ASSIGNED,
        ticket.ticket_id,
        sales.TicketAssigned(ticket=ticket.model_copy(update={"version": 3}), previous_owner_id=lead.id),
        actor=agent.id,
        version=3,
    )
    breached = ticket.model_copy(update={"version": 4, "breached": ["resolution"]})
    data = sales.TicketSla(ticket=breached, target="resolution", due_at=breached.resolution_due_at)
    await world.emit(sales.TICKET_SLA_BREACHED, ticket.ticket_id, data, actor="system:tickets-scheduler", version=4)
    items = await world.inbox(client, agent, 2)
    [boss_item] = await world.inbox(client, boss, 1)
    [lead_item] = await world.inbox(client, lead, 1)
    # same key, so the self-assignment was handled before the breach: nothing came of it
    assert [i["kind"] for i in items] == ["ticket_sla_breached", "ticket_assigned"]
    assert boss_item["kind"] == lead_item["kind"] == "ticket_sla_breached"
    assert items[0]["title"] == "工单已超时：T-2026-000043 空调不制冷" and "解决" in items[0]["body"]
    assert boss_item["title"] == "Ticket SLA missed: T-2026-000043 空调不制冷" and "resolution" in boss_item["body"]
