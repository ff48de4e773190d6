"""Form fields in, API bodies out (pure functions: no I/O, so they are easy to read and test).

A form sends strings; the APIs want ``None`` for "not set", lists for phones/emails/tags and
time zone-aware timestamps. Lists are typed one per line or separated by commas (，too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from crm_console.web import zone

SIZES = ("1-20", "21-100", "101-500", "501-1000", "1000+")
SOURCES = (
    "website",
    "inbound_call",
    "cold_call",
    "referral",
    "campaign",
    "exhibition",
    "social",
    "partner",
    "advertising",
    "lead_conversion",
    "other",
)
TIERS = ("A", "B", "C")
STAGES = ("lead", "prospect", "customer", "repeat_customer", "dormant", "churned")
ROLES = ("decision_maker", "handler", "influencer", "user")
CHANNELS = ("phone", "visit", "meeting", "email", "note")
ADDRESS = ("province", "city", "district", "street")
PROFILE_TEXT = ("name", "industry", "website", "description")
PROFILE_CHOICES = ("size", "source", "tier", "lifecycle_stage")
PROFILE_LISTS = ("phones", "emails", "tags")

Form = Mapping[str, Any]


def text(form: Form, name: str) -> str | None:
    value = str(form.get(name) or "").strip()
    return value or None


def items(value: str | None) -> list[str]:
    """ "a, b\\nc" → ["a", "b", "c"]."""
    return [part.strip() for part in re.split(r"[,，;\n]", value or "") if part.strip()]


def profile_values(customer: Mapping[str, Any]) -> dict[str, str]:
    """The customer as the edit form's field values (lists one per line)."""
    values = {name: str(customer.get(name) or "") for name in (*PROFILE_TEXT, *PROFILE_CHOICES, "uscc")}
    values |= {name: "\n".join(customer.get(name) or []) for name in PROFILE_LISTS}
    address = customer.get("address") or {}
    values |= {f"address.{part}": str(address.get(part) or "") for part in ADDRESS}
    return values


def profile_patch(form: Form, kind: str) -> dict[str, Any]:
    """Every editable field of the profile (the service records only what really changed)."""
    patch: dict[str, Any] = {name: text(form, name) for name in (*PROFILE_TEXT, *PROFILE_CHOICES)}
    patch |= {name: items(text(form, name)) for name in PROFILE_LISTS}
    if kind == "company":
        patch["uscc"] = text(form, "uscc")
    address = {part: text(form, f"address.{part}") for part in ADDRESS}
    patch["address"] = address if any(address.values()) else None
    return patch


def contact_body(form: Form) -> dict[str, Any]:
    return {
        "name": text(form, "name") or "",
        "role": text(form, "role"),
        "title": text(form, "title"),
        "phones": items(text(form, "phones")),
        "emails": items(text(form, "emails")),
        "is_primary": form.get("is_primary") == "on",
    }


def local_input(moment: datetime, timezone: str) -> str:
    """A moment as a ``datetime-local`` input's value in the user's zone."""
    return moment.astimezone(zone(timezone)).strftime("%Y-%m-%dT%H:%M")


def aware(value: str | None, timezone: str) -> str | None:
    """A ``datetime-local`` value (the user's wall clock) as ISO 8601 with their zone; None if unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(timezone))
    return moment.isoformat()


def default_due(now: datetime, timezone: str) -> str:
    """Tomorrow at 09:00 in the user's zone: the usual "call them back tomorrow"."""
    local = now.astimezone(zone(timezone)) + timedelta(days=1)
    return local.replace(hour=9, minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


def interaction_body(customer_id: str, form: Form, timezone: str) -> dict[str, Any]:
    """The quick follow-up form as ``POST /v1/interactions``: the channel decides the fields."""
    channel = str(form.get("channel") or "")
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "channel": channel,
        "occurred_at": aware(text(form, "occurred_at"), timezone),
        "contact_ids": [c for c in form.getlist("contact_ids") if c] if hasattr(form, "getlist") else [],
    }
    summary = text(form, "summary")
    if channel == "note":
        body["content"] = summary
    else:
        body["summary"] = summary[:500] if summary else None
    if channel == "phone":
        body["direction"] = text(form, "direction") or "out"
        minutes = text(form, "duration_minutes")
        body["duration_seconds"] = int(float(minutes) * 60) if minutes and _number(minutes) else None
        if summary and len(summary) > 500:
            body["key_points"] = summary
    if channel == "email":
        body["subject"] = text(form, "subject")
        body["participants"] = items(text(form, "participants"))
        body["direction"] = text(form, "direction") or "out"
    if channel in ("meeting", "visit"):
        body["location"] = text(form, "location")
        if summary and len(summary) > 500:
            body["minutes"] = summary
    return body


def _number(value: str) -> bool:
    try:
        return float(value) >= 0
    except ValueError:
        return False


def task_body(customer_id: str, form: Form, timezone: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "title": text(form, "title") or "",
        "notes": text(form, "notes"),
        "due_at": aware(text(form, "due_at"), timezone),
    }
