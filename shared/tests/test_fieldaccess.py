"""Field-level permissions in the platform: how roles combine, what a policy removes and refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crm_platform.auth import Principal
from crm_platform.fieldaccess import (
    FieldHidden,
    FieldPolicy,
    FieldReadOnly,
    redact_event_data,
    validate_field_rules,
)
from crm_platform.roles import Definition, RoleBook


def test_the_widest_access_over_the_roles_wins() -> None:
    policy = FieldPolicy.combine(
        "opportunities",
        [
            {"amount": "hidden", "probability": "read", "description": "hidden"},
            {"amount": "read", "probability": "hidden"},
        ],
    )
    # amount: hidden + read -> read; probability: read + hidden -> read; description: one role
    # does not restrict it -> writable.
    assert policy.hidden == frozenset()
    # ... and what is computed from them goes with them (the weighted amount, the products' prices).
    assert policy.read_only == {
        "amount",
        "probability",
        "weighted_amount",
        "quotation_amount",
        "products",
        "lines",
        "lines_total",
        "probability_overridden",
    }
    assert FieldPolicy.combine("customers", []).unrestricted
    assert FieldPolicy.combine("customers", [{"phones": "hidden"}, {}]).unrestricted


def test_a_policy_redacts_nested_custom_fields_and_names_what_it_refuses() -> None:
    policy = FieldPolicy("customers", hidden=frozenset({"phones", "custom.budget"}), read_only=frozenset({"tier"}))
    doc = {"id": "c1", "phones": ["+8613800138000"], "tier": "A", "custom": {"budget": "1000.00", "region": "东区"}}
    assert policy.redact(doc) == {"id": "c1", "tier": "A", "custom": {"region": "东区"}}
    assert doc["phones"]  # the input is not changed

    with pytest.raises(FieldHidden) as hidden:
        policy.ensure_visible(["tier", "phones"], "filter")
    assert [e.field for e in hidden.value.errors] == ["phones"]
    assert hidden.value.status == 403 and hidden.value.code == "field-hidden"

    with pytest.raises(FieldReadOnly) as read_only:
        policy.ensure_writable(["name", "tier", "phones"])
    assert [(e.field, e.reason) for e in read_only.value.errors] == [
        ("phones", "hidden from your role"),
        ("tier", "read-only for your role"),
    ]
    policy.ensure_writable(["name", "industry"])  # not restricted: no error


def test_only_fields_a_service_honours_can_be_restricted() -> None:
    errors = validate_field_rules(
        {
            "customers": {"phones": "hidden", "id": "hidden", "custom.budget": "read", "tier": "write"},
            "nowhere": {"x": "hidden"},
        }
    )
    assert sorted(e.field for e in errors) == [
        "fields.customers.id",
        "fields.customers.tier",
        "fields.nowhere",
    ]
    assert validate_field_rules({"customers": {"phones": "hidden", "custom.level_2": "read"}}) == []


def test_interactions_tasks_and_feedback_restrict_their_content_not_their_ids_owners_or_statuses() -> None:
    rules = {
        "interactions": {"minutes": "hidden", "summary": "read", "custom.mood": "hidden", "author_id": "hidden"},
        "tasks": {"notes": "hidden", "due_at": "read"},
        "feedback": {"resolution": "hidden", "satisfaction": "read", "status": "hidden"},
    }
    assert sorted(e.field for e in validate_field_rules(rules)) == [
        "fields.feedback.status",
        "fields.interactions.author_id",
        "fields.tasks.due_at",
    ]


def test_an_event_s_interaction_task_or_feedback_loses_what_the_reader_may_not_see() -> None:
    policies = {
        "interactions": FieldPolicy("interactions", hidden=frozenset({"minutes", "custom.mood"})),
        "tasks": FieldPolicy("tasks", hidden=frozenset({"notes"})),
        "feedback": FieldPolicy("feedback", hidden=frozenset({"resolution"}), read_only=frozenset({"satisfaction"})),
    }

    def policy(module: str) -> FieldPolicy:
        return policies.get(module) or FieldPolicy(module)

    updated = {
        "interaction": {"interaction_id": "i1", "minutes": "底价", "location": "杭州", "custom": {"mood": "hot"}},
        "changes": [{"field": "minutes", "new": "底价"}, {"field": "custom.mood", "new": "hot"}, {"field": "location"}],
    }
    assert redact_event_data("crm.interaction.updated", updated, policy) == {
        "interaction": {"interaction_id": "i1", "location": "杭州", "custom": {}},
        "changes": [{"field": "location"}],
    }
    task = {"task": {"task_id": "t1", "title": "回访", "notes": "底价"}, "changes": [{"field": "notes"}]}
    assert redact_event_data("crm.task.updated", task, policy) == {
        "task": {"task_id": "t1", "title": "回访"},
        "changes": [],
    }
    resolved = {"feedback": {"feedback_id": "f1", "resolution": "退款", "satisfaction": 4}, "resolution": "退款"}
    resolved |= {"satisfaction": 4, "from_status": "in_progress"}
    assert redact_event_data("crm.feedback.resolved", resolved, policy) == {
        "feedback": {"feedback_id": "f1", "satisfaction": 4},
        "satisfaction": 4,
        "from_status": "in_progress",
    }
    # A reader whose roles restrict nothing gets the data as it was.
    assert redact_event_data("crm.feedback.resolved", resolved, FieldPolicy) == resolved


def test_the_role_book_resolves_a_principal_s_policies_from_the_definitions() -> None:
    book = RoleBook(collection=None)  # type: ignore[arg-type]  # memory only: nothing is stored here
    book._remember(
        Definition(
            role_id="service",
            version=1,
            permissions=frozenset(),
            scopes={},
            active=True,
            fields={"customers": {"phones": "hidden"}},
        )
    )
    staff = book.resolve(Principal(user_id="u1", roles=frozenset({"service"})))
    assert staff.fields("customers").hidden == {"phones", "match_phones"}
    assert staff.fields("contacts").unrestricted
    # With a built-in role that restricts nothing, the phones are visible again.
    both = book.resolve(Principal(user_id="u2", roles=frozenset({"service", "rep"})))
    assert both.fields("customers").unrestricted
    # An unknown role cannot widen access; a deleted one restricts and grants nothing.
    odd = book.resolve(Principal(user_id="u3", roles=frozenset({"service", "no-such-role"})))
    assert odd.fields("customers").hidden == {"phones", "match_phones"}


def test_a_customer_snapshot_s_merged_phones_and_emails_go_with_the_hidden_phones_and_emails() -> None:
    """``match_phones``/``match_emails`` (every phone and email of the customer and its contacts,
    in customer events for duplicate checks) leave a payload with the customer's phones or
    emails, and with the contacts' too."""
    from crm_platform.fieldaccess import redact_event_data

    snapshot = {
        "customer_id": "c1",
        "phones": ["+8613800138000"],
        "emails": ["a@x.cn"],
        "match_phones": ["+8613800138000", "+8613900139000"],
        "match_emails": ["a@x.cn", "b@x.cn"],
        "contacts": [{"contact_id": "k1", "phones": ["+8613900139000"], "emails": ["b@x.cn"]}],
    }

    def policies(rules: dict[str, dict[str, str]]) -> Callable[[str], FieldPolicy]:
        return lambda module: FieldPolicy.combine(module, [rules.get(module, {})])

    out = redact_event_data(
        "crm.customer.updated", {"customer": snapshot}, policies({"customers": {"phones": "hidden"}})
    )
    assert "match_phones" not in out["customer"] and "phones" not in out["customer"]
    assert out["customer"]["match_emails"] == ["a@x.cn", "b@x.cn"]
    out = redact_event_data(
        "crm.customer.updated", {"customer": snapshot}, policies({"contacts": {"emails": "hidden"}})
    )
    assert "match_emails" not in out["customer"] and out["customer"]["emails"] == ["a@x.cn"]
    assert out["customer"]["match_phones"] == snapshot["match_phones"]
    assert "emails" not in out["customer"]["contacts"][0]
    assert redact_event_data("crm.customer.updated", {"customer": snapshot}, policies({}))["customer"] == snapshot


def test_a_lead_event_loses_the_phones_and_emails_the_customers_rules_hide() -> None:
    policies = {
        "customers": FieldPolicy("customers", hidden=frozenset({"phones"})),
        "contacts": FieldPolicy("contacts", hidden=frozenset({"emails"})),
    }

    def policy(module: str) -> FieldPolicy:
        return policies.get(module) or FieldPolicy(module)

    lead = {"lead_id": "l1", "phones": ["+8613800138000"], "emails": ["a@b.cn"]}
    updated = {"lead": lead, "changes": [{"field": "phones"}, {"field": "emails"}]}
    assert redact_event_data("crm.lead.updated", updated, policy) == {
        "lead": {"lead_id": "l1", "emails": ["a@b.cn"]},
        "changes": [{"field": "emails"}],
    }
    contact = {"contact_id": "k1", "phones": ["+8613800138000"], "emails": ["a@b.cn"]}
    asked = {"lead": lead, "conversion": {"conversion_id": "l1:1", "phones": ["+8613800138000"], "contact": contact}}
    assert redact_event_data("crm.lead.conversion_requested", asked, policy)["conversion"] == {
        "conversion_id": "l1:1",
        "contact": {"contact_id": "k1", "phones": ["+8613800138000"]},
    }
    assert redact_event_data("crm.lead.updated", updated, FieldPolicy) == updated
