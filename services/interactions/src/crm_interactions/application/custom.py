"""Custom fields of the modules this service owns: interactions, tasks and feedback."""

from __future__ import annotations

from typing import Any

from crm_interactions.domain.interactions import FEEDBACK, INTERACTIONS, TASKS
from crm_platform.contracts.interactions import FieldChange
from crm_platform.customfield_store import CustomFields
from crm_platform.customfields import FieldSet, value_changes

Document = dict[str, Any]

MODULES = (INTERACTIONS, TASKS, FEEDBACK)


async def fieldset(fields: CustomFields | None, module: str) -> FieldSet:
    """A module's custom fields as writes validate against them (none without definitions)."""
    return await fields.fieldset(module) if fields is not None else FieldSet({})


def custom_changes(doc: Document, fields: FieldSet, sent: dict[str, Any] | None) -> list[FieldChange]:
    """Apply the custom values a change sends (validated against the record's own: a deactivated
    option it holds may stay); what changed, each as ``custom.<key>``. Raises 422 before any write."""
    if sent is None:
        return []
    old = dict(doc.get("custom") or {})
    doc["custom"] = fields.validate(sent, old)
    return [FieldChange(**c) for c in value_changes(old, doc["custom"])]
