"""Events of custom field definitions (``crm.custom_field.*``; key: ``<module>.<key>``).

Each carries the whole definition after the change, so a consumer (reporting) keeps a read copy
of every module's fields from any single event, applied by ``aggregateversion``. The customers
service owns the modules ``customers`` and ``contacts`` and publishes these on its topic
``crm.customers.v1``. Records' own events carry their values under ``custom`` (additive: a
consumer that does not know it ignores it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from crm_platform.contracts.customers import TOPIC as CUSTOMERS_TOPIC
from crm_platform.events import define


class OptionData(BaseModel):
    key: str
    labels: dict[str, str] = Field(description='{"zh-CN": ..., "en": ...}')
    active: bool = True


class FieldDefinitionData(BaseModel):
    """A custom field as defined (see ``crm_platform.customfields`` for the types and rules)."""

    field_id: str = Field(description="<module>.<key>")
    module: str = Field(description="customers, contacts, opportunities, interactions, tasks or feedback")
    key: str = Field(description="The name of the value in a record's ``custom``")
    type: str = Field(description="text, number, money, date, choice, multi_choice, user or boolean")
    labels: dict[str, str]
    help: dict[str, str | None] | None = None
    required: bool = False
    default: Any = None
    validation: dict[str, Any] = Field(default_factory=dict)
    options: list[OptionData] = Field(default_factory=list)
    filterable: bool = False
    sortable: bool = False
    position: int = 0
    status: str = Field(description="active or archived")
    created_at: datetime
    updated_at: datetime


class FieldDefined(BaseModel):
    field: FieldDefinitionData


class FieldChanged(BaseModel):
    field: FieldDefinitionData
    changes: list[dict[str, Any]] = Field(description="[{field, old, new}] of the definition's attributes")


class FieldArchived(BaseModel):
    field: FieldDefinitionData


FIELD_DEFINED = define(
    "crm.custom_field.defined",
    FieldDefined,
    CUSTOMERS_TOPIC,
    description="An administrator defined a custom field of a module the customers service owns.",
)
FIELD_CHANGED = define(
    "crm.custom_field.changed",
    FieldChanged,
    CUSTOMERS_TOPIC,
    description="A custom field's definition changed (labels, rules, options, required, filterable, sortable...).",
)
FIELD_ARCHIVED = define(
    "crm.custom_field.archived",
    FieldArchived,
    CUSTOMERS_TOPIC,
    description="A custom field was archived: out of forms, filters and new writes; stored values stay.",
)
FIELD_EVENTS = (FIELD_DEFINED, FIELD_CHANGED, FIELD_ARCHIVED)
