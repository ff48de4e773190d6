"""Export approval, published by the customers service on ``crm.customers.v1``: the organisation's
export policy (above how many rows a CSV export needs a manager's approval) and the export requests
it creates (requested, approved, rejected, downloaded). Their own type families
(``crm.customer_export_policy.*``, ``crm.customer_export_request.*``), for the audit log and the
notifications inbox; consumers keeping customer read copies are not handed them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_platform.contracts.customers import TOPIC as CUSTOMERS_TOPIC
from crm_platform.events import define

ExportRequestStatus = Literal["pending", "approved", "rejected"]


class ExportPolicyChanged(BaseModel):
    """An administrator changed the export policy (subject: ``export-policy``; actor: who)."""

    approval_above_rows: int | None = Field(
        description="A customers export counting more rows than this needs approval; null: approval is off."
    )
    previous: int | None = Field(description="The threshold before the change (null: approval was off).")


EXPORT_POLICY_CHANGED = define(
    "crm.customer_export_policy.changed",
    ExportPolicyChanged,
    CUSTOMERS_TOPIC,
    description="The export approval threshold was changed (null turns approval off): who (actor), old and new.",
)


class ExportRequestSnapshot(BaseModel):
    """An export request as it stands after the change (every request event carries it)."""

    request_id: str
    requester_id: str
    requester_department_path: str | None = None
    filter: dict[str, Any] = Field(description="The list filters requested (only those set), as the API took them.")
    sort: str | None = None
    rows: int = Field(description="Customers the filter matched when the export was requested.")
    threshold: int = Field(description="The policy's approval_above_rows the request exceeded.")
    status: ExportRequestStatus
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = Field(default=None, description="The approver's comment.")
    valid_until: datetime | None = Field(default=None, description="An approved request can be downloaded until then.")
    downloads: int = 0


class ExportRequested(BaseModel):
    """A customers export above the threshold was held for approval (subject: the request; actor: the requester)."""

    request: ExportRequestSnapshot


class ExportRequestDecided(BaseModel):
    """An approver approved or rejected an export request (subject: the request; actor: the approver)."""

    request: ExportRequestSnapshot


class ExportRequestDownloaded(BaseModel):
    """The requester downloaded an approved export (subject: the request; actor: the requester)."""

    request: ExportRequestSnapshot
    rows: int = Field(description="Customers the filter matched at download time: the rows the file holds.")


EXPORT_REQUESTED = define(
    "crm.customer_export_request.requested",
    ExportRequested,
    CUSTOMERS_TOPIC,
    description="A customers export above the approval threshold awaits a manager's approval: who, filter, rows.",
)
EXPORT_APPROVED = define(
    "crm.customer_export_request.approved",
    ExportRequestDecided,
    CUSTOMERS_TOPIC,
    description="An export request was approved (actor: the approver), with the comment and until when it is valid.",
)
EXPORT_REJECTED = define(
    "crm.customer_export_request.rejected",
    ExportRequestDecided,
    CUSTOMERS_TOPIC,
    description="An export request was rejected (actor: the approver), with the comment.",
)
EXPORT_DOWNLOADED = define(
    "crm.customer_export_request.downloaded",
    ExportRequestDownloaded,
    CUSTOMERS_TOPIC,
    description="The requester downloaded an approved export: the rows it held at download time.",
)
