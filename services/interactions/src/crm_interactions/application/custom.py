"""Custom fields of the modules this service owns: interactions, tasks and feedback."""

from __future__ import annotations

from typing import Any

from crm_interactions.domain.interactions import FEEDBACK, INTERACTIONS, TASKS
from crm_platform.contracts.interactions import FieldChange
from crm_platform.customfield_store import CustomFields
from crm_platform.customfields import FieldSet, field_name, value_changes

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


#: How a list's ``sort`` names a custom field: ``custom.<key>`` (``-custom.<key>`` descending).
CUSTOM_SORT = field_name("")


async def list_sorts(
    fields: CustomFields | None, module: str, builtin: dict[str, str], sort: str | None
) -> tuple[dict[str, str], bool]:
    """The sort keys a list of ``module`` accepts for ``sort``: the built-in ones, and the sort
    copies (``s.cf_<key>``) of the custom fields it names, each of which must be active and
    flagged sortable (422 naming ``sort`` otherwise); and whether it names any. A custom sort
    breaks ties by the id in the last key's direction, as its indexes (key, id) are walked."""
    names = [part.strip().lstrip("+-") for part in (sort or "").split(",")]
    custom = [name for name in names if name.startswith(CUSTOM_SORT)]
    if not custom:
        return builtin, False
    defined = await fieldset(fields, module)
    return {**builtin, **{name: defined.sort_field(name.removeprefix(CUSTOM_SORT)) for name in custom}}, True
