"""An overdue instalment of a contract (crm.contract.instalment_overdue on crm.sales.v1) becomes a
reminder in its owner's inbox, in their language, once even when the event comes twice."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import httpx
from notifications_testkit import World

from crm_platform.contracts import sales


def overdue(owner_id: str, number: str) -> sales.ContractInstalmentOverdue:
    contract_id = str(uuid.uuid4())
    snapshot = sales.ContractSnapshot(
        contract_id=contract_id,
        number=number,
        customer_id="cust-1",
        owner_id=owner_id,
        amount="1000.00",
        currency="CNY",
        status="executing",
        version=7,
    )
    instalment = sales.InstalmentState(
        instalment_id="i-1",
        due_date=date(2026, 11, 30),
        amount="400.00",
        paid="100.00",
        outstanding="300.00",
        status="partially_paid",
    )
    return sales.ContractInstalmentOverdue(
        contract=snapshot,
        owner_id=owner_id,
        customer_name="上海星辰科技有限公司",
        instalment=instalment,
        instalment_no=2,
        days_overdue=4,
    )


async def test_an_overdue_instalment_reminds_the_owner_once_in_their_language(
    client: httpx.AsyncClient, world: World
) -> None:
    zh = await world.person("zh-CN")
    en = await world.person("en")
    data = overdue(zh.id, "C-2026-000042")
    envelope = sales.CONTRACT_INSTALMENT_OVERDUE.build(
        source="/crm/sales",
        subject=data.contract.contract_id,
        data=data,
        aggregate_version=7,
        time=datetime.now(UTC),
        actor="system:sales-overdue-scheduler",
    )
    await world.publish(envelope, sales.TOPIC)
    await world.publish(envelope, sales.TOPIC)  # delivered twice: one notification
    english = overdue(en.id, "C-2026-000043")
    await world.emit(sales.CONTRACT_INSTALMENT_OVERDUE, english.contract.contract_id, english)
    [item] = await world.inbox(client, zh)
    assert item["kind"] == "contract_instalment_overdue" and item["event_id"] == envelope.id
    assert item["title"] == "回款逾期：C-2026-000042"
    assert "第 2 期应于 2026-11-30 回款，已逾期 4 天，尚欠 300.00 CNY" in item["body"]
    assert item["link"] == f"/contracts/{data.contract.contract_id}"
    [other] = await world.inbox(client, en)
    assert other["title"] == "Payment overdue: C-2026-000043" and "4 day(s) overdue" in other["body"]
    items = await world.inbox(client, zh)
    assert len(items) == 1
