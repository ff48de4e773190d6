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
from crm_notifications.domain.templates import LANGUAGES, feedback_kind_params, render, render_email
from crm_notifications.domain.webhooks import AddressPolicy, matches, next_delay, sign, valid_patterns, verify
from crm_platform.contracts import customers, pipeline
from crm_platform.errors import ValidationFailed

PARAMS = {
    "task_title": "T",
    "due_at": "2026-12-01T09:30:00+00:00",
    "customer_name": "C",
    "days_left": "3",
    "recycle_at": "2026-12-01T09:30:00+00:00",
    "reason": "r",
    "opportunity_name": "O",
    "amount": "1 CNY",
    "feedback_title": "F",
    "priority": "high",
    "url": "https://x",
    "failures": "20",
    **feedback_kind_params("complaint"),
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
        ("10.0.0.1", "private"),
        ("192.168.1.10", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("93.184.215.14", None),
    ],
)
def test_address_policy(address: str, refused: str | None) -> None:
    reason = AddressPolicy().refusal(address)
    assert (reason is None) if refused is None else (refused in (reason or ""))
    assert AddressPolicy(allow_private=True).refusal(address) is None


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
