"""Domain rules without I/O: templates, planning, signatures, the retry schedule, the URL policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_notifications.application.subscriptions import Resolver, check_url
from crm_notifications.domain import planning
from crm_notifications.domain.kinds import DEFAULT_EMAIL, Kind, email_wanted
from crm_notifications.domain.templates import LANGUAGES, feedback_kind_params, render, render_email, ticket_params
from crm_notifications.domain.webhooks import AddressPolicy, matches, next_delay, sign, valid_patterns, verify
from crm_platform.contracts import customers, directory, leads, pipeline, sales
from crm_platform.errors import ValidationFailed
from crm_platform.events import registry

PARAMS = {
    "task_title": "T",
    "due_at": "2026-12-01T09:30:00+00:00",
    "customer_name": "C",
    "company_name": "L",
    "days_left": "3",
    "recycle_at": "2026-12-01T09:30:00+00:00",
    "reason": "r",
    "opportunity_name": "O",
    "amount": "1 CNY",
    "feedback_title": "F",
    "priority": "high",
    "url": "https://x",
    "failures": "20",
    "requester_name": "R",
    "approver_name": "A",
    "rows": "1200",
    "threshold": "1000",
    "comment": "c",
    "valid_until_at": "2026-12-02T09:30:00+00:00",
    "lead_name": "L",
    "number": "Q-2026-000001",
    "owner_name": "O",
    "total": "1 CNY",
    "contract_number": "C-2026-000001",
    "instalment_no": "2",
    "due_on": "2026-12-01",
    "days_overdue": "3",
    "outstanding": "60.00 CNY",
    **feedback_kind_params("complaint"),
    "ticket_number": "T-2026-000001",
    "subject": "S",
    **ticket_params("first_response", "high"),
}


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_kind_renders_in_both_languages(kind: Kind, language: str) -> None:
    title, body = render(kind, language, PARAMS)
    assert title and body and "$" not in title + body
    assert kind in DEFAULT_EMAIL


def test_unknown_language_falls_back_and_email_has_link_and_footer() -> None:
    assert render(Kind.task_overdue, "fr", PARAMS)[0] == "待办已逾期：T"
    text = render_email("t", "body", "en", "http://crm/tasks/1")
    assert "Open: http://crm/tasks/1" in text and "preferences" in text


def test_preferences_override_defaults() -> None:
    assert email_wanted(Kind.task_overdue, None) is True
    assert email_wanted(Kind.task_overdue, {"task_overdue": False}) is False
    assert email_wanted(Kind.task_reminder, {"task_overdue": False}) is False


def _customer(owner: str | None) -> customers.CustomerSnapshot:
    now = datetime.now(UTC)
    return customers.CustomerSnapshot(
        customer_id="c1", kind="company", name="N", owner_id=owner, created_at=now, updated_at=now
    )


def test_actor_is_not_told_about_their_own_action() -> None:
    data = customers.OwnerChanged(customer=_customer("u1"), previous_owner_id=None, owner_id="u1")
    assert planning.customer_owner_changed(data, actor="u1") == []
    [intent] = planning.customer_owner_changed(data, actor="u2")
    assert intent.recipient_id == "u1" and intent.link == "/customers/c1"


def test_big_deals_and_the_managers_above() -> None:
    now = datetime.now(UTC)
    o = pipeline.OpportunitySnapshot(
        opportunity_id="o1", name="O", customer_id="c", amount="1000000.00", currency="CNY", probability=100,
        pipeline_id="p", stage_id="s", stage_name="s", stage_kind="won", stage_entered_at=now, status="won",
        owner_id="rep", created_at=now, updated_at=now,
    )  # fmt: skip
    assert planning.is_big_deal(o, Decimal("1000000"))
    assert not planning.is_big_deal(o, Decimal("1000000.01"))
    assert not planning.is_big_deal(o.model_copy(update={"amount": None}), Decimal("0"))
    assert planning.department_ids("/hq/east/t1") == ["t1", "east", "hq"]
    intents = planning.big_deal_won(o, ["m1", "rep", "m1", "m2"])
    assert [i.recipient_id for i in intents] == ["m1", "m2"]


def test_patterns() -> None:
    assert matches("crm.customer.created", ["crm.customer.*"])
    assert not matches("crm.customers.created", ["crm.customer.*"])
    assert matches("crm.opportunity.won", ["crm.customer.*", "crm.opportunity.won"])


def test_sign_ins_reach_a_webhook_only_by_their_exact_name() -> None:
    """Sign-in events carry the emails people typed: a subscription to ``crm.*`` or
    ``crm.directory.*`` does not get them; one that names them does."""
    for event_type in (directory.SIGNED_IN, directory.SIGN_IN_FAILED):
        exact_only = registry.get(event_type.name).exact_only  # type: ignore[union-attr]
        assert exact_only
        assert not matches(event_type.name, ["crm.*", "crm.directory.*"], exact_only=exact_only)
        assert matches(event_type.name, ["crm.customer.*", event_type.name], exact_only=exact_only)
    assert not registry.get(directory.USER_CREATED.name).exact_only  # type: ignore[union-attr]
    assert matches(directory.USER_CREATED.name, ["crm.*"])
    assert valid_patterns(["crm.*", "crm.*"]) == ["crm.*"]
    with pytest.raises(ValidationFailed):
        valid_patterns([])
    with pytest.raises(ValidationFailed):
        valid_patterns(["crm customer"])


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"id":"e1"}'
    expected = "v1=" + hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("whsec_k", 1700000000, body) == expected
    assert verify("whsec_k", 1700000000, body, expected)
    assert not verify("whsec_k", 1700000001, body, expected)


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_backoff_grows_with_jitter_and_stays_under_the_cap(attempt: int, seed: int) -> None:
    delay = next_delay(attempt, 10.0, 3600.0, random.Random(seed))
    base = min(3600.0, 10.0 * 2 ** (attempt - 1))
    assert base / 2 <= delay <= base


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        # IPv4 that is not globally routable
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.10", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),  # AWS/GCP/Azure metadata
        ("100.100.100.200", "shared"),  # Alibaba Cloud metadata, in 100.64.0.0/10 (carrier-grade NAT)
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("192.0.0.8", "IETF"),
        ("192.0.2.1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.88.99.1", "6to4 relay"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        # IPv6 that is not globally routable
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("100::1", "discard-only"),
        ("4000::1", "reserved"),  # outside 2000::/3, where global unicast comes from
        ("64:ff9b:1::808:808", "NAT64 local-use"),
        # IPv4 inside IPv6: judged by the IPv4 address it carries
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "loopback"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
        ("::ffff:100.100.100.200", "shared"),
        ("64:ff9b::7f00:1", "NAT64 address of 127.0.0.1 (loopback)"),
        ("64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254 (link-local)"),
        ("2002:7f00:1::", "6to4 address of 127.0.0.1 (loopback)"),
        ("2002:a00:1::1", "6to4 address of 10.0.0.1 (private)"),
        ("2002:6464:64c8::", "6to4 address of 100.100.100.200"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo address of 192.0.2.45 (documentation)"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo address of 127.0.0.1 (loopback)"),
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "IETF"),  # Teredo with a public client: still not global
        # globally routable: accepted
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("::ffff:8.8.8.8", None),
        ("::8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001:81c::200e", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address
        ("2002:808:808::1", None),  # 6to4 of a public address
    ],
)
def test_address_policy(address: str, refused: str | None) -> None:
    reason = AddressPolicy().refusal(address)
    assert (reason is None) if refused is None else (refused in (reason or "")), reason
    assert AddressPolicy(allow_private=True).refusal(address) is None


@pytest.mark.parametrize(
    ("allowed", "address", "ok"),
    [
        ("127.0.0.0/8", "127.0.0.1", True),
        ("127.0.0.0/8", "::ffff:127.0.0.1", True),  # the same destination
        ("127.0.0.0/8", "2002:7f00:1::", True),  # the operator allowed that IPv4 destination
        ("127.0.0.0/8", "10.0.0.1", False),
        ("127.0.0.0/8", "100.100.100.200", False),
        ("127.0.0.0/8", "::1", False),  # IPv6 loopback is a network of its own
        ("10.20.0.0/16", "10.20.3.4", True),
        ("10.20.0.0/16", "64:ff9b::a14:304", True),
        ("10.20.0.0/16", "64:ff9b::a15:304", False),
        ("fd00:1::/32", "fd00:1::5", True),
        ("fd00:1::/32", "fd00:2::5", False),
    ],
)
def test_allowed_networks_open_only_themselves(allowed: str, address: str, ok: bool) -> None:
    assert (AddressPolicy(allowed_networks=[allowed]).refusal(address) is None) is ok


async def test_url_check_loopback_refused_unless_allowed() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"localhost": ["127.0.0.1"], "hooks.example.com": ["93.184.215.14"]}[host]

    with pytest.raises(ValidationFailed) as refused:
        await check_url("http://127.0.0.1:8080/hook", AddressPolicy(), resolver=_literal(resolver))
    assert refused.value.errors[0].field == "url"
    with pytest.raises(ValidationFailed):
        await check_url("http://localhost/hook", AddressPolicy(), resolver=resolver)
    await check_url("http://localhost/hook", AddressPolicy(allowed_networks=["127.0.0.0/8"]), resolver=resolver)
    await check_url("https://hooks.example.com/in", AddressPolicy(), resolver=resolver)
    for bad in ("ftp://hooks.example.com/x", "http:///x", "https://user:pw@hooks.example.com/"):
        with pytest.raises(ValidationFailed):
            await check_url(bad, AddressPolicy(), resolver=resolver)


def _literal(fallback: Resolver) -> Resolver:
    async def resolver(host: str, port: int) -> list[str]:
        return [host] if host[0].isdigit() else await fallback(host, port)

    return resolver


def test_moments_are_shown_in_the_readers_zone_with_the_offset() -> None:
    from zoneinfo import ZoneInfo

    title, body = render(Kind.task_overdue, "zh-CN", PARAMS, ZoneInfo("Asia/Shanghai"))
    assert "2026-12-01 17:30 (UTC+08:00)" in title + body
    title, body = render(Kind.task_overdue, "en", PARAMS)
    assert "2026-12-01 09:30 (UTC+00:00)" in title + body


def test_a_lead_tells_its_new_owner_unless_they_took_it_themselves() -> None:
    now = datetime.now(UTC)
    lead = leads.LeadSnapshot(
        lead_id="l1", company_name="L", owner_id="u1", status="new", created_at=now, updated_at=now
    )
    [intent] = planning.lead_assigned(lead, "u-manager", "assigned")
    assert (intent.recipient_id, intent.kind, intent.link) == ("u1", Kind.lead_assigned, "/leads/l1")
    assert planning.lead_assigned(lead, "u1", "assigned") == []  # assigned to themselves
    assert planning.lead_assigned(lead, "u-x", "claimed") == []
    assert planning.lead_assigned(lead.model_copy(update={"owner_id": None}), "u-x", "released") == []
    assert planning.lead_assigned(lead, "u-importer")[0].recipient_id == "u1"  # created for them
    assert planning.lead_assigned(lead, "u1") == []  # their own entry


def test_an_escalated_ticket_tells_the_assignee_and_the_managers_once_each() -> None:
    now = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    ticket = sales.TicketSnapshot(
        ticket_id="t1",
        number="T-2026-000001",
        customer_id="c1",
        source="agent",
        category="fault",
        priority="high",
        subject="卡纸",
        status="in_progress",
        owner_id="agent",
        opened_by="agent",
        opened_at=now,
        first_response_due_at=now,
        resolution_due_at=now,
        version=3,
    )
    data = sales.TicketSla(ticket=ticket, target="resolution", due_at=now)
    intents = planning.ticket_escalated(data, ["m1", "agent", "m1", "m2"])
    assert [i.recipient_id for i in intents] == ["agent", "m1", "m2"]
    assert intents[0].params["target_zh"] == "解决" and intents[0].link == "/tickets/t1"
    closed = data.model_copy(update={"ticket": ticket.model_copy(update={"status": "closed"})})
    assert planning.ticket_escalated(closed, ["m1"]) == []


def test_a_ticket_breach_and_an_assignment_tell_whom_they_should() -> None:
    now = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    ticket = sales.TicketSnapshot(
        ticket_id="t2",
        number="T-2026-000002",
        customer_id="c1",
        source="agent",
        category="fault",
        priority="urgent",
        subject="停机",
        status="in_progress",
        owner_id="agent",
        opened_by="lead",
        opened_at=now,
        first_response_due_at=now,
        resolution_due_at=now,
        version=4,
    )
    breach = sales.TicketSla(ticket=ticket, target="first_response", due_at=now)
    intents = planning.ticket_sla_breached(breach, ["m1", "agent"])
    assert [(i.recipient_id, i.kind) for i in intents] == [
        ("agent", Kind.ticket_sla_breached),
        ("m1", Kind.ticket_sla_breached),
    ]
    assert intents[0].params["target_zh"] == "首次响应"
    closed = breach.model_copy(update={"ticket": ticket.model_copy(update={"status": "closed"})})
    assert planning.ticket_sla_breached(closed, ["m1"]) == []
    assigned = sales.TicketAssigned(ticket=ticket, previous_owner_id="lead")
    [intent] = planning.ticket_assigned(assigned, "lead")
    assert intent.recipient_id == "agent" and intent.kind == Kind.ticket_assigned and intent.link == "/tickets/t2"
    assert planning.ticket_assigned(assigned, "agent") == []  # one took it oneself
    nobody = sales.TicketAssigned(ticket=ticket.model_copy(update={"owner_id": None}))
    assert planning.ticket_assigned(nobody, "lead") == []
    assert email_wanted(Kind.ticket_sla_breached, None) is True and email_wanted(Kind.ticket_assigned, None) is False


def test_quotation_approvers_hold_the_permission_over_the_department_and_are_not_the_owner() -> None:
    from datetime import UTC, date, datetime

    from crm_notifications.domain import quotations
    from crm_platform.auth import Principal
    from crm_platform.contracts import sales

    now = datetime.now(UTC)
    q = sales.QuotationSnapshot(
        quotation_id="q1",
        number="Q-2026-000001",
        revision=1,
        status="pending_approval",
        customer_id="c1",
        currency="CNY",
        valid_until=date(2026, 12, 31),
        lines=[],
        subtotal="0.00",
        discount_total="0.00",
        total="0.00",
        needs_approval=True,
        owner_id="owner",
        department_path="/hq/east",
        created_at=now,
        updated_at=now,
    )

    def user(user_id: str, path: str, scope: str, permissions: frozenset[str]) -> Principal:
        return Principal(user_id=user_id, department_path=path, scopes={"customers": scope}, permissions=permissions)

    approve = frozenset({"quotations:approve"})
    people = [
        user("boss", "/hq", "subtree", approve),
        user("owner", "/hq/east", "subtree", approve),  # their own quotation
        user("peer", "/hq/east", "own", approve),  # cannot see it
        user("rep", "/hq/east", "subtree", frozenset()),  # no permission
        user("boss", "/hq", "subtree", approve),  # twice: told once
        user("dept", "/hq", "department", approve),  # department scope of /hq does not reach /hq/east
    ]
    assert [i.recipient_id for i in quotations.submitted(q, "O", people)] == ["boss"]
    [told] = quotations.decided(q, False, "A", None)
    assert told.recipient_id == "owner" and told.params["comment"] == "-"


def test_an_overdue_instalment_is_told_to_the_contracts_owner_unless_it_is_closed() -> None:
    from datetime import date

    from crm_platform.contracts import sales

    snapshot = sales.ContractSnapshot(
        contract_id="c1",
        number="C-2026-000001",
        customer_id="k1",
        owner_id="u1",
        amount="10.00",
        currency="CNY",
        status="signed",
        version=3,
    )
    state = sales.InstalmentState(
        instalment_id="i1",
        due_date=date(2026, 12, 1),
        amount="10.00",
        paid="0.00",
        outstanding="10.00",
        status="unpaid",
    )
    data = sales.ContractInstalmentOverdue(
        contract=snapshot, owner_id="u1", instalment=state, instalment_no=1, days_overdue=2
    )
    [intent] = planning.contract_instalment_overdue(data, 1)
    assert (intent.recipient_id, intent.kind, intent.link) == ("u1", Kind.contract_instalment_overdue, "/contracts/c1")
    assert intent.params["outstanding"] == "10.00 CNY" and intent.params["customer_name"] == "k1"
    closed = data.model_copy(update={"contract": snapshot.model_copy(update={"status": "terminated"})})
    assert planning.contract_instalment_overdue(closed, 1) == []
    assert DEFAULT_EMAIL[Kind.contract_instalment_overdue] is True
