"""What a record may point at, checked against the read copies (never by calling another service).

A customer must be known here (its created event arrived), active and visible to the
person writing; contacts must be that customer's; an opportunity must be that
customer's and visible; a user given a task or a complaint must be known to the
directory. An unknown or invisible reference is the caller's input error (422, the
field named), worded the same for both so that ids of records one may not see leak
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crm_interactions.adapters.leads import LeadReadModel
from crm_platform.auth import Principal
from crm_platform.errors import FieldError, ValidationFailed
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.readmodels.opportunities import OpportunityReadModel

Document = dict[str, Any]


class References:
    def __init__(
        self,
        customers: CustomerReadModel,
        opportunities: OpportunityReadModel,
        directory: DirectoryReadModel,
        leads: LeadReadModel | None = None,
    ) -> None:
        self.customers = customers
        self.opportunities = opportunities
        self.directory = directory
        self.leads = leads

    async def lead(self, principal: Principal, lead_id: str, field: str = "lead_id") -> Document:
        """A lead one may follow up: known here, visible, not deleted and not converted yet (its
        follow-ups then belong to the customer it became)."""
        copy = await self.leads.get(lead_id) if self.leads is not None else None
        if copy is None or not LeadReadModel.visible_to(principal, copy):
            raise ValidationFailed.for_field(
                field, f"no lead {lead_id} that you may see (a new lead takes a moment to arrive)"
            )
        if copy.get("status") == "converted":
            raise ValidationFailed.for_field(
                field, f"lead {lead_id} was converted into customer {copy.get('customer_id')}; use customer_id"
            )
        return copy

    async def customer(self, principal: Principal, customer_id: str, field: str = "customer_id") -> Document:
        copy = await self.customers.arrived(customer_id)
        if copy is None or not CustomerReadModel.visible_to(principal, copy):
            raise ValidationFailed.for_field(
                field, f"no customer {customer_id} that you may see (a new customer takes a moment to arrive)"
            )
        status = copy.get("status")
        if status == "merged":
            raise ValidationFailed.for_field(
                field, f"customer {customer_id} was merged into {copy.get('merged_into')}; use that one"
            )
        if status != "active":
            raise ValidationFailed.for_field(field, f"customer {customer_id} is {status} (in the recycle bin)")
        return copy

    @staticmethod
    def contacts(customer: Document, contact_ids: Sequence[str], field: str = "contact_ids") -> None:
        known = CustomerReadModel.contact_ids(customer)
        errors = [
            FieldError(field=f"{field}[{i}]", reason=f"{cid} is not a contact of customer {customer['_id']}")
            for i, cid in enumerate(contact_ids)
            if cid not in known
        ]
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)

    async def opportunity(
        self, principal: Principal, opportunity_id: str, customer: Document, field: str = "opportunity_id"
    ) -> Document:
        copy = await self.opportunities.get(opportunity_id)
        sees_customer = principal.can_see_owned(
            customer.get("owner_id"), customer.get("department_path"), module="customers"
        )
        if (
            copy is None
            or copy.get("hidden")
            or not (OpportunityReadModel.visible_to(principal, copy) or sees_customer)
        ):
            raise ValidationFailed.for_field(field, f"no opportunity {opportunity_id} that you may see")
        if copy.get("customer_id") != customer["_id"]:
            raise ValidationFailed.for_field(
                field, f"opportunity {opportunity_id} belongs to another customer ({copy.get('customer_id')})"
            )
        return copy

    async def user_department(self, principal: Principal, user_id: str, field: str) -> str | None:
        """The department path of a user, from the token if it is the caller, else from the directory copy."""
        if user_id == principal.user_id:
            return principal.department_path
        user = await self.directory.user(user_id)
        if user is None:
            raise ValidationFailed.for_field(field, f"no user {user_id} in the directory")
        if user.get("status") != "active":
            raise ValidationFailed.for_field(field, f"user {user_id} is deactivated")
        path: str | None = user.get("department_path")
        return path
