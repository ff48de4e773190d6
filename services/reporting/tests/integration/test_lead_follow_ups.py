"""Reports and follow-ups on leads: an interaction logged on a lead (``customer_id`` null) is the rep's
activity, applied without a dead letter, but follows no customer up until the lead's conversion moves
it to the customer (``crm.interaction.updated``, customer_id None -> id): then that customer is no
longer "not followed up".

Now is 2026-11-20 12:00 Shanghai (the session's reporting clock).
"""

from __future__ import annotations

from typing import Any

from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.testing.event_feed import EventFeed, at, customer
from crm_platform.testing.fixtures import auth, unique


async def test_a_lead_follow_up_counts_for_the_customer_once_moved(
    client: Any, feed: EventFeed, wait_applied: Any
) -> None:
    dept = f"/hq/{unique('d')}"
    rep, cid, iid = unique("a"), unique("c"), unique("i")
    sent = [await feed.user(rep, "王五", dept)]
    snap = customer(cid, rep, dept, at("2026-11-01"), name=f"客户{cid[-3:]}")
    sent.append(await feed.send(cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap), at("2026-11-01"), rep))
    when = at("2026-11-18", "10:00")
    on_lead = iev.InteractionSnapshot(
        interaction_id=iid,
        channel="phone",
        customer_id=None,
        lead_id=unique("lead"),
        author_id=rep,
        author_department_path=dept,
        occurred_at=when,
        recorded_at=when,
        recorded_late=False,
        updated_at=when,
    )
    logged = iev.InteractionLogged(
        interaction_id=iid,
        customer_id=None,
        lead_id=on_lead.lead_id,
        author_id=rep,
        channel="phone",
        occurred_at=when,
        interaction=on_lead,
    )
    sent.append(await feed.send(iev.INTERACTION_LOGGED, iid, logged, when, rep))
    await wait_applied(sent)

    admin = auth("boss", ["admin"], "/hq")
    params = {"period": "2026-11", "department_path": dept, "stale_days": 14}
    report = (await client.get("/v1/reports/activity", params=params, headers=admin)).json()
    assert {(x["rep_id"], x["channel"]): x["count"] for x in report["interactions"]} == {(rep, "phone"): 1}
    assert {x["customer_id"] for x in report["not_followed_up"]} == {cid}  # the lead's call is not the customer's

    moved = on_lead.model_copy(update={"customer_id": cid, "updated_at": at("2026-11-19")})
    update = iev.InteractionUpdated(
        interaction=moved,
        changes=[iev.FieldChange(field="customer_id", old=None, new=cid)],
        reason="lead converted",
    )
    await wait_applied([await feed.send(iev.INTERACTION_UPDATED, iid, update, at("2026-11-19"), rep)])
    report = (await client.get("/v1/reports/activity", params=params, headers=admin)).json()
    assert report["not_followed_up"] == []
    assert {(x["rep_id"], x["channel"]): x["count"] for x in report["interactions"]} == {(rep, "phone"): 1}
