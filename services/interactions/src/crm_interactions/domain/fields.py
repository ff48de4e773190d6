"""Field-level permissions (:mod:`crm_platform.fieldaccess`) on interactions, tasks and feedback.

A role may hide an interaction's, a task's or a piece of feedback's business content (what was
said and agreed: ``PROTECTED_FIELDS``) or make it read-only, custom fields (``custom.<key>``)
included. The API then leaves a hidden field out of what it sends (records, lists, histories),
refuses a filter or sort on it (403 ``field-hidden``) and refuses a create, patch or status move
that sets it (403 ``field-read-only``). None of the built-in list filters or sort keys reads a
protectable field, so a query is refused only for the custom fields it names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from crm_platform.auth import Principal
from crm_platform.events import EventEnvelope
from crm_platform.fieldaccess import FieldPolicy, redact_event_data

Change = dict[str, Any]
Summarise = Callable[[EventEnvelope], tuple[str, list[Change]]]


def sort_keys(sort: str | None) -> list[str]:
    """The key names of a ``sort`` parameter ("-occurred_at,custom.x" -> ["occurred_at", "custom.x"])."""
    return [part.strip().lstrip("+-") for part in (sort or "").split(",") if part.strip()]


def ensure_query_visible(policy: FieldPolicy, custom: Iterable[str], sort: str | None) -> None:
    """Refuse (403 ``field-hidden``) a list query that filters (``custom``: the keys of its
    ``custom.<key>`` filters) or sorts on a field the caller's roles hide."""
    if not policy.hidden:
        return
    policy.ensure_visible([f"custom.{key}" for key in custom], "filter")
    policy.ensure_visible([k for k in sort_keys(sort) if policy.hides(k)], "sort")


def redacting(summarise: Summarise, principal: Principal, dropped: set[str]) -> Summarise:
    """``summarise`` over each event as ``principal`` may read it: its snapshot and changes without
    the fields their roles hide, so no hidden value reaches a history line. An event whose every
    change was hidden is named in ``dropped`` (its line would say only that something changed)."""

    def summarise_visible(envelope: EventEnvelope) -> tuple[str, list[Change]]:
        data = redact_event_data(envelope.type, envelope.data, principal.fields)
        if envelope.data.get("changes") and not data.get("changes"):
            dropped.add(envelope.id)
        return summarise(envelope.model_copy(update={"data": data}))

    return summarise_visible
