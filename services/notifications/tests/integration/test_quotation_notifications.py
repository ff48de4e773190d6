"""Quotations' approval in the inbox: a submitted quotation tells its approvers (the users above or
in its department who hold quotations:approve over it, never its owner), the decision tells the
owner with the approver's comment; zh-CN and en texts. The events reach the service through the
broker on crm.sales.v1, built with the contracts, as the sales service publishes them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
from fastapi import FastAPI
from notifications_testkit import Person, World

from crm_platform.contracts import sales
from crm_platform.testing.fixtures import unique
from crm_platform.testing.roles import role_event


def snapshot(owner: Person, status: str = "pending_approval") -> sales.QuotationSnapshot:
    now = datetime.now(UTC)
    line = sales.QuotationLine(
        product_id=unique("p"),
        sku="ECS-1",
        name="云服务器",
        unit="台",
        quantity="2",
        unit_price="100.00",
        discount_percent="30",
        gross="200.00",
        discount="60.00",
        amount="140.00",
    )
    return sales.QuotationSnapshot(
        quotation_id=unique("q"),
        number=f"Q-2026-{datetime.now(UTC).microsecond:06d}",
        revision=1,
        status=status,
        customer_id=unique("c"),
        customer_name="华东科技有限公司",
        currency="CNY",
        valid_until=date.today() + timedelta(days=30),
        lines=[line],
        subtotal="200.00",
        discount_total="60.00",
        total="140.00",
        needs_approval=True,
        owner_id=owner.id,
        department_path=owner.department_path,
        created_at=now,
        updated_at=now,
    )


async def count(client: httpx.AsyncClient, person: Person) -> int:
    r = await client.get("/v1/notifications", headers=person.headers)
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


async def test_a_submitted_quotation_tells_its_approvers_and_the_decision_tells_its_owner(
    client: httpx.AsyncClient, world: World
) -> None:
    root, team = unique("hq"), unique("team")
    boss = await world.person("en", f"/{root}", ["manager"])
    lead = await world.person("zh-CN", f"/{root}/{team}", ["manager"])
    owner = await world.person("zh-CN", f"/{root}/{team}", ["manager"])  # a manager: still not their own
    peer = await world.person("en", f"/{root}/{team}", ["rep"])  # no quotations:approve
    elsewhere = await world.person("en", f"/{unique('other')}", ["manager"])  # does not reach the team
    below = await world.person("en", f"/{root}/{team}/{unique('sub')}", ["manager"])  # below: does not reach up
    q = snapshot(owner)

    await world.emit(sales.QUOTATION_SUBMITTED, q.quotation_id, sales.QuotationDecided(quotation=q), actor=owner.id)
    [boss_item] = await world.inbox(client, boss, 1)
    [lead_item] = await world.inbox(client, lead, 1)
    assert boss_item["kind"] == lead_item["kind"] == "quotation_approval_requested"
    assert boss_item["link"] == f"/quotations/{q.quotation_id}"
    assert boss_item["title"] == f"Quotation awaiting approval: {q.number}"
    assert f"Name {owner.id}" in boss_item["body"] and "140.00 CNY" in boss_item["body"]
    assert lead_item["title"] == f"报价单待审批：{q.number}" and "华东科技有限公司" in lead_item["body"]

    decided = q.model_copy(update={"status": "approved"})
    await world.emit(
        sales.QUOTATION_APPROVED,
        q.quotation_id,
        sales.QuotationDecided(quotation=decided, comment="同意，季度冲量"),
        actor=lead.id,
        version=3,
    )
    [answer] = await world.inbox(client, owner, 1)
    assert answer["kind"] == "quotation_approved" and answer["title"] == f"报价单已批准：{q.number}"
    assert f"Name {lead.id}" in answer["body"] and "同意，季度冲量" in answer["body"]
    # the events of one quotation are applied in order: the submission was planned before the answer
    for person in (owner, peer, elsewhere, below):
        assert await count(client, person) == (1 if person is owner else 0), person.id
    assert await count(client, boss) == 1 and await count(client, lead) == 1


async def test_a_rejection_tells_the_owner_why_in_english(client: httpx.AsyncClient, world: World) -> None:
    root = unique("hq")
    approver = await world.person("zh-CN", f"/{root}", ["manager"])
    owner = await world.person("en", f"/{root}/{unique('team')}", ["rep"])
    q = snapshot(owner, "rejected")
    data = sales.QuotationDecided(quotation=q, comment="discount too deep")
    await world.emit(sales.QUOTATION_REJECTED, q.quotation_id, data, actor=approver.id, version=3)
    [item] = await world.inbox(client, owner, 1)
    assert item["kind"] == "quotation_rejected" and item["title"] == f"Quotation rejected: {q.number}"
    assert item["body"] == (
        f"Your quotation {q.number} for 华东科技有限公司 (140.00 CNY) was rejected by Name {approver.id}: "
        "discount too deep."
    )


async def test_a_role_defined_with_quotations_approve_makes_its_holders_approvers(
    client: httpx.AsyncClient, world: World, app: FastAPI
) -> None:
    """Approvers are whoever the role definitions let approve over the department, not only managers."""
    role = unique("approver")
    permissions = ["account:self", "inbox:use", "quotations:view", "quotations:approve"]
    await app.state.kit.roles.apply(role_event(role, 1, permissions=permissions, scopes={"customers": "subtree"}))
    root = unique("hq")
    custom = await world.person("en", f"/{root}", [role])
    owner = await world.person("en", f"/{root}/{unique('team')}", ["rep"])
    q = snapshot(owner)
    await world.emit(sales.QUOTATION_SUBMITTED, q.quotation_id, sales.QuotationDecided(quotation=q), actor=owner.id)
    [item] = await world.inbox(client, custom, 1)
    assert item["kind"] == "quotation_approval_requested"
