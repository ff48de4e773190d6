"""Contracts, receivables and service tickets in reporting: read copies from ``crm.sales.v1`` and the reports.

Collections of the generation (see ``adapters/readmodels.py``):

- ``sales_contracts``: each contract (status, amount, currency, owner, department id and path, customer,
  signed day as YYYYMMDD) with its instalments (due day, amount, paid), applied by aggregate version: the
  plan from ``crm.contract.plan_set``, then each payment's and refund's allocation added or taken back;
- ``sales_instalments``: one document per instalment, re-derived from the stored contract after every
  contract event (idempotent), with ``open`` = 1 while money is outstanding on a live contract;
- ``sales_payments``: each payment by id (amount, day, owner, department, customer) and its refunds by
  refund id (a map: a redelivered refund sets the same key again);
- ``sales_ltv``: per customer and currency, the payments and refunds received (maps by id, so
  idempotent), the contracts paid or signed, first and last payment day and ``rank``, the keyset sort key;
- ``sales_tickets``: each ticket's priority, category, assignee, department, opened / first response /
  resolution moments and due moments (epoch ms), breached targets and satisfaction, by aggregate version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crm_platform.auth import Principal
from crm_platform.consumer import apply_versioned
from crm_platform.contracts import sales as sev
from crm_platform.events import EventEnvelope
from crm_platform.listing import all_of
from crm_reporting.adapters.readmodels import ReadModels
from crm_reporting.domain.money import dec
from crm_reporting.domain.money import money_in as money
from crm_reporting.domain.receivables import BUCKETS, NOT_DUE, average, bucket, day_key, key_day, rate, value_rank

Document = dict[str, Any]
#: The data-scope modules the sales service defined: contracts (and receivables) and tickets.
CONTRACTS = "contracts"
TICKETS = "tickets"
LIVE = frozenset({"signed", "executing", "completed"})  # a terminated or unsigned contract is not owed
SIGNED = frozenset({"signed", "executing", "completed", "terminated"})
NONE = "(none)"


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _key(value: str) -> str:
    # Ids as keys of a map: no dots or dollars.
    return value.replace(".", "_").replace("$", "_")


# --- the projection ---------------------------------------------------------------------------------


async def apply_sales_event(models: ReadModels, envelope: EventEnvelope) -> None:
    t = envelope.type
    if t.startswith("crm.ticket."):
        ticket = sev.TicketSnapshot.model_validate(envelope.data["ticket"])
        await apply_versioned(models.collection("sales_tickets"), envelope, ticket_state(ticket))
        return
    if t.startswith("crm.contract.") and "contract" in envelope.data:
        await _contract(models, envelope)


async def _contract(models: ReadModels, envelope: EventEnvelope) -> None:
    c = sev.ContractSnapshot.model_validate(envelope.data["contract"])
    contracts = models.collection("sales_contracts")
    prev = await contracts.find_one({"_id": c.contract_id})
    payment: sev.ContractPayment | None = None
    if envelope.type in (sev.CONTRACT_PAYMENT_RECEIVED.name, sev.CONTRACT_PAYMENT_REFUNDED.name):
        payment = sev.ContractPayment.model_validate(envelope.data)
        await _payment(models, envelope, payment)
    if prev is None or int(prev.get("source_version", 0)) < envelope.aggregateversion:
        instalments = list(prev.get("instalments") or []) if prev is not None else []
        if envelope.type == sev.CONTRACT_PLAN_SET.name:
            plan = sev.CONTRACT_PLAN_SET.parse(envelope).instalments
            # What the plan says an instalment received has no day: day 0, before every period.
            instalments = [
                {
                    "id": i.instalment_id,
                    "due_day": day_key(i.due_date),
                    "amount": i.amount,
                    "paid": i.paid,
                    "history": [[0, i.paid]] if dec(i.paid) else [],
                }
                for i in plan
            ]
        elif payment is not None:
            sign = 1 if envelope.type == sev.CONTRACT_PAYMENT_RECEIVED.name else -1
            moved: dict[str, Decimal] = defaultdict(Decimal)
            for a in payment.allocation:
                if a.instalment_id:
                    moved[a.instalment_id] += sign * dec(a.amount)
            # A refund counts on its own day (events from before refunded_on: the payment's day).
            day = day_key(payment.refunded_on or payment.received_on)
            instalments = [
                {
                    **i,
                    "paid": str(dec(i["paid"]) + moved[i["id"]]),
                    "history": [*(i.get("history") or []), [day, str(moved[i["id"]])]],
                }
                if i["id"] in moved
                else i
                for i in instalments
            ]
        await apply_versioned(contracts, envelope, contract_state(c, instalments))
    stored = await contracts.find_one({"_id": c.contract_id})
    if stored is not None:
        await _instalments(models, stored)
        if stored.get("signed_day") is not None:
            await _ltv_contract(models, stored)


def contract_state(c: sev.ContractSnapshot, instalments: list[Document]) -> Document:
    return {
        "_id": c.contract_id,
        "number": c.number,
        "status": c.status,
        "amount": c.amount,
        "currency": c.currency,
        "owner_id": c.owner_id,
        "department": c.department or "",
        "department_path": c.department_path or "",
        "customer_id": c.customer_id,
        "signed_day": None if c.signed_on is None else day_key(c.signed_on),
        "instalments": instalments,
    }


async def _instalments(models: ReadModels, contract: Document) -> None:
    """The contract's instalments as documents of their own (re-derived whole: idempotent)."""
    collection = models.collection("sales_instalments")
    ids = []
    for i in contract.get("instalments") or []:
        outstanding = max(Decimal(0), dec(i["amount"]) - dec(i["paid"]))
        ids.append(i["id"])
        doc = {
            "contract_id": contract["_id"],
            "number": contract.get("number"),
            "currency": contract["currency"],
            "owner_id": contract["owner_id"],
            "department_path": contract["department_path"],
            "customer_id": contract["customer_id"],
            "due_day": i["due_day"],
            "amount": i["amount"],
            "paid": i["paid"],
            "history": list(i.get("history") or []),
            "outstanding": str(outstanding),
            "open": 1 if outstanding > 0 and contract["status"] in LIVE else 0,
            "live": 1 if contract["status"] in LIVE else 0,
        }
        await collection.replace_one({"_id": i["id"]}, {"_id": i["id"], **doc}, upsert=True)
    # Instalments a new plan dropped (looked up by the indexed contract id, removed by _id).
    async for old in collection.find({"contract_id": contract["_id"]}, {"_id": 1}):
        if old["_id"] not in ids:
            await collection.delete_one({"_id": old["_id"]})


async def _payment(models: ReadModels, envelope: EventEnvelope, p: sev.ContractPayment) -> None:
    """The payment and the customer's lifetime value: maps keyed by payment and refund id (idempotent)."""
    payments = models.collection("sales_payments")
    fields: Document = {}
    ltv: Document = {}
    if envelope.type == sev.CONTRACT_PAYMENT_RECEIVED.name:
        fields = {
            "contract_id": p.contract_id,
            "customer_id": p.customer_id,
            "owner_id": p.owner_id,
            "department_path": p.department_path or "",
            "currency": p.currency,
            "amount": p.amount,
            "received_day": day_key(p.received_on),
        }
        ltv = {f"payments.{_key(p.payment_id)}": {"amount": p.amount, "day": day_key(p.received_on)}}
    elif p.refund_id:
        fields = {f"refunds.{_key(p.refund_id)}": p.amount}
        ltv = {f"refunds.{_key(p.refund_id)}": p.amount}
    await payments.update_one({"_id": p.payment_id}, {"$set": fields}, upsert=True)
    ltv_id = f"{p.customer_id}|{p.currency}"
    ltv |= {
        "customer_id": p.customer_id,
        "currency": p.currency,
        "owner_id": p.owner_id,
        "department_path": p.department_path or "",
        f"contracts.{_key(p.contract_id)}": 1,
    }
    await _ltv_update(models, ltv_id, ltv)


async def _ltv_contract(models: ReadModels, contract: Document) -> None:
    ltv_id = f"{contract['customer_id']}|{contract['currency']}"
    await _ltv_update(
        models,
        ltv_id,
        {
            "customer_id": contract["customer_id"],
            "currency": contract["currency"],
            "owner_id": contract["owner_id"],
            "department_path": contract["department_path"],
            f"contracts.{_key(str(contract['_id']))}": 1,
        },
    )


async def _ltv_update(models: ReadModels, ltv_id: str, fields: Document) -> None:
    collection = models.collection("sales_ltv")
    await collection.update_one({"_id": ltv_id}, {"$set": fields}, upsert=True)
    doc = await collection.find_one({"_id": ltv_id})
    if doc is None:
        return
    derived = ltv_figures(doc)
    await collection.update_one({"_id": ltv_id}, {"$set": derived})


def ltv_figures(doc: Document) -> Document:
    payments = (doc.get("payments") or {}).values()
    received = sum((dec(p["amount"]) for p in payments), Decimal(0))
    refunded = sum((dec(v) for v in (doc.get("refunds") or {}).values()), Decimal(0))
    days = sorted(int(p["day"]) for p in payments)
    value = received - refunded
    return {
        "value": money(value, str(doc["currency"])),
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "contracts_count": len(doc.get("contracts") or {}),
        "rank": value_rank(str(doc["currency"]), value, str(doc["customer_id"])),
    }


def ticket_state(t: sev.TicketSnapshot) -> Document:
    return {
        "_id": t.ticket_id,
        "number": t.number,
        "priority": t.priority,
        "category": t.category,
        "status": t.status,
        "owner_id": t.owner_id or "",
        "department_path": t.department_path or "",
        "opened_ms": _ms(t.opened_at),
        "first_response_due_ms": _ms(t.first_response_due_at),
        "resolution_due_ms": _ms(t.resolution_due_at),
        "first_responded_ms": _ms(t.first_responded_at),
        "resolved_ms": _ms(t.resolved_at),
        "breached": list(t.breached),
        "satisfaction": t.satisfaction,
    }


# --- the reports ------------------------------------------------------------------------------------


def _query(principal: Principal, module: str, *more: Document) -> Document:
    """The report's index condition, plus the owner for a scope of own. The rest of the caller's scope
    is checked per document (:func:`_visible`): a manager's "own or department" is an $or, which the
    embedded store cannot serve from an index next to the range."""
    clauses = list(more)
    if not principal.reaches_beyond_own(module):
        clauses.append({"owner_id": principal.user_id})
    return all_of(*clauses)


def _visible(principal: Principal, module: str, doc: Document) -> bool:
    return principal.can_see_owned(doc.get("owner_id") or None, doc.get("department_path") or None, module=module)


async def _find(
    models: ReadModels, name: str, principal: Principal, module: str, *more: Document
) -> AsyncIterator[Document]:
    async for doc in models.collection(name).find(_query(principal, module, *more)):
        if _visible(principal, module, doc):
            yield doc


def _group() -> Document:
    return {"outstanding": Decimal(0), NOT_DUE: Decimal(0), **{b: Decimal(0) for b in BUCKETS}}


def _ageing_row(key: str, name: str, g: Document, currency: str) -> Document:
    return {key: name, **{k: money(v, currency) for k, v in g.items()}}


async def ageing_report(models: ReadModels, principal: Principal, as_of: date, currency: str) -> Document:
    reps: dict[str, Document] = defaultdict(_group)
    depts: dict[str, Document] = defaultdict(_group)
    total = _group()
    async for i in _find(models, "sales_instalments", principal, CONTRACTS, {"open": 1}, {"currency": currency}):
        where = bucket(key_day(int(i["due_day"])), as_of)
        amount = dec(i["outstanding"])
        for g in (reps[i["owner_id"] or NONE], depts[i["department_path"] or NONE], total):
            g[where] += amount
            g["outstanding"] += amount
    return {
        "as_of": as_of.isoformat(),
        "currency": currency,
        "buckets": [NOT_DUE, *BUCKETS],
        "rows": [_ageing_row("owner_id", k, reps[k], currency) for k in sorted(reps)],
        "departments": [_ageing_row("department_path", k, depts[k], currency) for k in sorted(depts)],
        "totals": {k: money(v, currency) for k, v in total.items()},
    }


def _collection_group() -> Document:
    return {"due": Decimal(0), "collected": Decimal(0), "received": Decimal(0)}


def _collection_row(key: str, name: str, g: Document, currency: str) -> Document:
    return {
        key: name,
        "due": money(g["due"], currency),
        "collected": money(g["collected"], currency),
        "rate": rate(g["collected"], g["due"]),
        "received": money(g["received"], currency),
    }


def collected_by(instalment: Document, day: int) -> Decimal:
    """What an instalment had received (net of refunds) by the end of ``day``, at most its amount."""
    got = sum((dec(v) for d, v in instalment.get("history") or [] if int(d) <= day), Decimal(0))
    return max(Decimal(0), min(got, dec(instalment["amount"])))


async def collection_report(
    models: ReadModels, principal: Principal, start: date, end: date, currency: str
) -> Document:
    """Due in [start, end] (instalments of live contracts), collected against it by the end of the
    period (payments on their day, refunds on theirs), and every payment received in the period net
    of its refunds."""
    reps: dict[str, Document] = defaultdict(_collection_group)
    depts: dict[str, Document] = defaultdict(_collection_group)
    total = _collection_group()
    days = {"$gte": day_key(start), "$lte": day_key(end)}
    wanted = ({"due_day": days}, {"currency": currency}, {"live": 1})
    async for i in _find(models, "sales_instalments", principal, CONTRACTS, *wanted):
        amount, paid = dec(i["amount"]), collected_by(i, day_key(end))
        for g in (reps[i["owner_id"] or NONE], depts[i["department_path"] or NONE], total):
            g["due"] += amount
            g["collected"] += paid
    async for p in _find(
        models, "sales_payments", principal, CONTRACTS, {"received_day": days}, {"currency": currency}
    ):
        net = dec(p["amount"]) - sum((dec(v) for v in (p.get("refunds") or {}).values()), Decimal(0))
        for g in (reps[p["owner_id"] or NONE], depts[p["department_path"] or NONE], total):
            g["received"] += net
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "currency": currency,
        "rows": [_collection_row("owner_id", k, reps[k], currency) for k in sorted(reps)],
        "departments": [_collection_row("department_path", k, depts[k], currency) for k in sorted(depts)],
        "totals": _collection_row("total", "total", total, currency),
    }


async def target_report(
    models: ReadModels, principal: Principal, period: str, start: date, end: date, currency: str
) -> Document:
    """Contracts signed in [start, end) (not drafts; terminated ones left out) per rep and department
    against the targets of the period (``crm.target.set``, rep or department, in that currency)."""
    signed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    paths: dict[str, str] = {}
    signed_days = {"signed_day": {"$gte": day_key(start), "$lt": day_key(end)}}
    async for c in _find(models, "sales_contracts", principal, CONTRACTS, signed_days, {"currency": currency}):
        if c["status"] not in LIVE:
            continue
        signed[("rep", c["owner_id"])] += dec(c["amount"])
        if c["department"]:
            signed[("department", c["department"])] += dec(c["amount"])
            paths[c["department"]] = c["department_path"]
    targets: dict[tuple[str, str], Document] = {}
    async for t in models.targets.find({"period": period}):
        if t.get("currency") != currency:
            continue
        if not principal.can_see_owned(
            t["scope_id"] if t["scope"] == "rep" else None, t.get("department_path"), module=CONTRACTS
        ):
            continue
        targets[(t["scope"], t["scope_id"])] = t
        if t["scope"] == "department" and t.get("department_path"):
            paths.setdefault(t["scope_id"], t["department_path"])
    rows = []
    for scope, scope_id in sorted(set(signed) | set(targets)):
        amount = signed.get((scope, scope_id), Decimal(0))
        target = targets.get((scope, scope_id))
        goal = dec(target["amount"]) if target else None
        rows.append(
            {
                "scope": scope,
                "scope_id": scope_id,
                "department_path": paths.get(scope_id) if scope == "department" else None,
                "signed": money(amount, currency),
                "target": None if goal is None else money(goal, currency),
                "attainment": None if goal is None else rate(amount, goal),
            }
        )
    return {"period": period, "currency": currency, "rows": rows}


def _sla_group() -> Document:
    return {t: {"met": 0, "breached": 0, "open_at_risk": 0} for t in ("first_response", "resolution")}


def sla_outcome(doc: Document, target: str, now_ms: int) -> str:
    """met, breached or open_at_risk for one SLA target of a ticket."""
    done = doc.get("first_responded_ms") if target == "first_response" else doc.get("resolved_ms")
    due = doc.get(f"{target}_due_ms")
    if target in (doc.get("breached") or []):
        return "breached"
    if done is not None:
        return "met" if due is None or done <= due else "breached"
    if due is not None and now_ms > due:
        return "breached"
    return "open_at_risk"


def _sla_rows(key: str, groups: dict[str, Document]) -> list[Document]:
    rows = []
    for name in sorted(groups):
        row: Document = {key: name}
        for target, g in groups[name].items():
            row[target] = {**g, "rate": rate(Decimal(g["met"]), Decimal(g["met"] + g["breached"]))}
        rows.append(row)
    return rows


def _satisfaction_rows(key: str, groups: dict[str, list[int]]) -> list[Document]:
    return [
        {
            key: name,
            "responses": len(scores),
            "average": average(sum(scores), len(scores)),
            "distribution": {str(s): scores.count(s) for s in range(1, 6)},
        }
        for name, scores in sorted(groups.items())
    ]


async def sla_report(models: ReadModels, principal: Principal, start_ms: int, end_ms: int, now_ms: int) -> Document:
    """Tickets opened in [start, end): SLA attainment per priority and assignee, satisfaction per
    assignee and category."""
    priorities: dict[str, Document] = defaultdict(_sla_group)
    assignees: dict[str, Document] = defaultdict(_sla_group)
    by_assignee: dict[str, list[int]] = defaultdict(list)
    by_category: dict[str, list[int]] = defaultdict(list)
    tickets = 0
    async for t in _find(models, "sales_tickets", principal, TICKETS, {"opened_ms": {"$gte": start_ms, "$lt": end_ms}}):
        tickets += 1
        for target in ("first_response", "resolution"):
            outcome = sla_outcome(t, target, now_ms)
            priorities[t["priority"]][target][outcome] += 1
            assignees[t["owner_id"] or NONE][target][outcome] += 1
        if t.get("satisfaction") is not None:
            by_assignee[t["owner_id"] or NONE].append(int(t["satisfaction"]))
            by_category[t["category"]].append(int(t["satisfaction"]))
    return {
        "tickets": tickets,
        "priorities": _sla_rows("priority", priorities),
        "rows": _sla_rows("owner_id", assignees),
        "satisfaction": {
            "assignees": _satisfaction_rows("owner_id", by_assignee),
            "categories": _satisfaction_rows("category", by_category),
        },
    }


def ltv_row(doc: Document) -> Document:
    def iso(key: Any) -> str | None:
        return None if key is None else key_day(int(key)).isoformat()

    return {
        "customer_id": doc["customer_id"],
        "currency": doc["currency"],
        "value": doc.get("value", "0.00"),
        "first_payment_day": iso(doc.get("first_day")),
        "last_payment_day": iso(doc.get("last_day")),
        "contracts": int(doc.get("contracts_count") or 0),
    }


async def ltv_page(
    models: ReadModels, principal: Principal, currency: str, limit: int, cursor: str | None
) -> tuple[list[Document], str | None]:
    """One keyset page of the currency's customers by lifetime value, highest first (``rank`` ascending)."""
    low = cursor if cursor is not None and cursor.startswith(f"{currency}|") else f"{currency}|"
    docs: list[Document] = []
    while len(docs) <= limit:  # batches along the index until the page is full or the currency ends
        query = _query(principal, CONTRACTS, {"rank": {"$gt": low, "$lt": f"{currency}|~"}})
        batch = await models.collection("sales_ltv").find(query).sort("rank", 1).limit(limit + 1).to_list()
        docs.extend(d for d in batch if _visible(principal, CONTRACTS, d))
        if len(batch) <= limit:
            break
        low = str(batch[-1]["rank"])
    more = len(docs) > limit
    docs = docs[:limit]
    return [ltv_row(d) for d in docs], (str(docs[-1]["rank"]) if more and docs else None)
