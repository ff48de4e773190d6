"""Who may call what: one table for every route of every service, enforced in one place.

Three layers, so that administrator-defined roles can grow out of it without touching a route:

* :class:`Permission` names an action on a module (``customers:view``, ``pool:claim``,
  ``webhooks:manage``). A route needs exactly one permission, or is public.
* Roles grant permissions. Administrators define roles in the directory (``/v1/roles``); every
  service keeps a read copy of those definitions from the directory's ``crm.role.*`` events
  (:class:`crm_platform.roles.RoleBook`, wired by the service kit). :data:`ROLE_PERMISSIONS` is
  what the four built-in roles grant by default: the directory seeds their definitions with it,
  and a service grants it for a built-in role until the first definition of that role arrives.
* :data:`ROUTES` says, per service, which permission each route (method + path template) needs.

:func:`authorize` is the FastAPI dependency the service kit puts on every route it mounts. It
answers the coarse question "may these roles do this kind of thing at all" (403
``permission-denied``). Which records a permitted caller reaches is the data scope per module
(own, department, subtree, all), resolved per request from the same definitions onto the
:class:`~crm_platform.auth.Principal` and applied by each service through its helpers.
A route missing from the table is refused when the app is built (:func:`undeclared`), so a new
route cannot ship without a decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final, Literal, Protocol

from fastapi import Request

from crm_platform.auth import BUILTIN_SCOPES as BUILTIN_SCOPES
from crm_platform.auth import SCOPES as SCOPES
from crm_platform.auth import Principal, Role, current_principal
from crm_platform.auth import Scope as Scope
from crm_platform.errors import Forbidden


class Permission(StrEnum):
    # directory: the caller's own account, users, departments
    account_self = "account:self"  # who I am, my profile, password and history
    users_view = "users:view"  # the directory of colleagues (public cards; full records in scope)
    users_edit = "users:edit"  # change a user record in scope (a user: their own name, phone, language)
    users_manage = "users:manage"  # create, provision, (de)activate users, set passwords
    departments_view = "departments:view"
    departments_manage = "departments:manage"
    roles_manage = "roles:manage"  # define roles (permissions and data scopes); admins
    fields_manage = "fields:manage"  # define, change and archive custom fields of any module; admins
    # customers
    customers_view = "customers:view"  # lists, records, history, duplicate checks, saved views, timelines
    customers_create = "customers:create"
    customers_edit = "customers:edit"  # fields, contacts, lock and unlock
    customers_delete = "customers:delete"  # to the recycle bin (reps only if the service allows it)
    customers_recycle_bin = "customers:recycle_bin"  # see and restore what is in the bin
    customers_purge = "customers:purge"
    customers_assign = "customers:assign"
    customers_merge = "customers:merge"
    customers_import = "customers:import"
    customers_export = "customers:export"
    # export approval: answer requests for exports above the threshold (one's own exports are then
    # never held); set the threshold (admins)
    customers_export_approve = "customers:export_approve"
    customers_export_policy = "customers:export_policy"
    # the public pool (公海)
    pool_claim = "pool:claim"
    pool_release = "pool:release"
    pool_countdown = "pool:countdown"  # my customers and the days before they are recycled
    pool_rules = "pool:rules"  # recycling rules and their previews
    # pipeline
    pipelines_view = "pipelines:view"
    pipelines_configure = "pipelines:configure"
    opportunities_view = "opportunities:view"  # includes the forecast and the funnel over what one may see
    opportunities_create = "opportunities:create"
    opportunities_edit = "opportunities:edit"  # fields, stages, win/lose/reopen, documents, asking approval
    opportunities_assign = "opportunities:assign"
    opportunities_approve = "opportunities:approve"
    targets_view = "targets:view"
    targets_set = "targets:set"
    # interactions
    interactions_view = "interactions:view"
    interactions_log = "interactions:log"  # log, change and delete interactions
    tasks_view = "tasks:view"
    tasks_manage = "tasks:manage"
    feedback_view = "feedback:view"
    feedback_manage = "feedback:manage"
    # notifications
    inbox_use = "inbox:use"  # my notifications and email preferences
    webhooks_manage = "webhooks:manage"  # admins: every subscription; integrators: their own
    # reporting
    reports_view = "reports:view"
    # operations: run the recycler now, rebuild read models, read projection lag
    system_operate = "system:operate"
    # the audit log: sign-ins, permission changes, exports, imports, purges, merges, webhooks (admins)
    audit_view = "audit:view"
    # leads (线索): prospects before they are customers, and the lead pool
    leads_view = "leads:view"  # lists, records, history
    leads_create = "leads:create"
    leads_edit = "leads:edit"  # fields and status (contacted, qualified, disqualified)
    leads_delete = "leads:delete"
    leads_import = "leads:import"  # CSV import (POST /v1/leads/import)
    leads_claim = "leads:claim"  # take a lead from the lead pool, and give one's own back
    leads_assign = "leads:assign"  # give a lead to someone
    leads_rules = "leads:rules"  # the lead pool's assignment rules and settings (company-wide: leads scope all)
    leads_convert = "leads:convert"  # convert a qualified lead into a customer (+ contact, + opportunity)
    leads_scoring = "leads:scoring"  # set the lead scoring rules and retrain the scoring model (admins)
    campaigns_view = "campaigns:view"  # marketing campaigns (市场活动), their costs and history
    campaigns_manage = "campaigns:manage"  # plan, change and close campaigns, record their costs
    # sales: the product catalogue and its price lists (company-wide, no data scope)
    products_view = "products:view"  # products, price lists, the price that applies
    products_manage = "products:manage"  # add, change, deactivate products; price lists and their prices
    # sales: quotations (报价单), owned like opportunities (owner, customers scope)
    quotations_view = "quotations:view"  # quotations, their revisions and PDF
    quotations_manage = "quotations:manage"  # draft, change, revise, submit, send; the customer's answer
    quotations_approve = "quotations:approve"  # approve or reject a quotation's discounts (not one's own)
    # sales: service tickets (工单), visible by the tickets scope (assignee or opener, department)
    tickets_view = "tickets:view"  # tickets, their replies, SLA and return visits
    tickets_manage = "tickets:manage"  # open, reply, resolve, reopen, return visits, close
    tickets_assign = "tickets:assign"  # give a ticket to someone
    # sales: contracts (合同) and receivables (回款), owned like opportunities (owner, contracts scope)
    contracts_view = "contracts:view"  # contracts, their plans, payments and invoices
    contracts_manage = "contracts:manage"  # draft, change, submit, sign, execute; plans, payments, invoices
    contracts_approve = "contracts:approve"  # approve or reject a contract's approval level (not one's own)
    contracts_approve_major = "contracts:approve_major"  # the level of the bands above the major amount


PUBLIC: Final = "public"
"""A route anyone may call without a token (health, metrics, sign-in, keys, the event catalogue)."""

Rule = Permission | Literal["public"]

P = Permission

_EVERYONE_HUMAN: frozenset[Permission] = frozenset(
    {
        P.account_self,
        P.users_view,
        P.users_edit,
        P.departments_view,
        P.customers_view,
        P.customers_create,
        P.customers_edit,
        P.customers_delete,
        P.customers_import,
        P.customers_export,
        P.pool_claim,
        P.pool_release,
        P.pool_countdown,
        P.pipelines_view,
        P.opportunities_view,
        P.opportunities_create,
        P.opportunities_edit,
        P.targets_view,
        P.interactions_view,
        P.interactions_log,
        P.tasks_view,
        P.tasks_manage,
        P.feedback_view,
        P.feedback_manage,
        P.inbox_use,
        P.reports_view,
        P.leads_view,
        P.leads_create,
        P.leads_edit,
        P.leads_claim,
        P.leads_convert,
        P.campaigns_view,
        P.products_view,
        P.quotations_view,
        P.quotations_manage,
        P.tickets_view,
        P.tickets_manage,
        P.contracts_view,
        P.contracts_manage,
    }
)
_MANAGER: frozenset[Permission] = _EVERYONE_HUMAN | {
    P.customers_recycle_bin,
    P.customers_assign,
    P.customers_merge,
    P.customers_export_approve,
    P.pool_rules,
    P.opportunities_assign,
    P.opportunities_approve,
    P.targets_set,
    P.leads_delete,
    P.leads_import,
    P.leads_assign,
    P.leads_rules,
    P.campaigns_manage,
    P.products_manage,
    P.quotations_approve,
    P.tickets_assign,
    P.contracts_approve,
}

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.admin: frozenset(Permission),
    Role.manager: _MANAGER,
    Role.rep: _EVERYONE_HUMAN,
    # A system account: it keeps its own webhook subscriptions and reads its own account, and
    # reaches no customer data over the API (it receives events through its webhooks).
    Role.integrator: frozenset({P.account_self, P.webhooks_manage}),
}
"""The built-in roles' defaults: what the directory seeds its role definitions with, and what a
service grants for a built-in role until the directory's first definition of it has arrived."""

#: Modules a role gives a data scope for (the issue's list, plus users and targets).
SCOPE_MODULES: tuple[str, ...] = (
    "customers",
    "contacts",
    "opportunities",
    "interactions",
    "tasks",
    "feedback",
    "pool",
    "reports",
    "webhooks",
    "targets",
    "users",
    "leads",
    "tickets",
    "contracts",
)


class RoleDefinitions(Protocol):
    """Where the permissions of a role id come from (a service's read copy of the directory's roles:
    :class:`crm_platform.roles.RoleBook`)."""

    def permissions_of(self, role_id: str) -> frozenset[Permission]: ...

    def roles_with(self, permission: Permission) -> list[str]: ...


class BuiltinDefaults:
    """The built-in roles as :data:`ROLE_PERMISSIONS` defines them; any other role grants nothing."""

    def permissions_of(self, role_id: str) -> frozenset[Permission]:
        return ROLE_PERMISSIONS.get(Role(role_id), frozenset()) if role_id in Role.__members__ else frozenset()

    def roles_with(self, permission: Permission) -> list[str]:
        return sorted(role.value for role, perms in ROLE_PERMISSIONS.items() if permission in perms)


DEFAULTS: Final = BuiltinDefaults()


def granted(roles: Iterable[str], definitions: RoleDefinitions = DEFAULTS) -> frozenset[Permission]:
    """Every permission the roles give together (a role the definitions do not know gives none)."""
    out: frozenset[Permission] = frozenset()
    for role in roles:
        out |= definitions.permissions_of(str(role))
    return out


# Routes the service kit mounts on every service.
COMMON: Mapping[str, Rule] = {
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /asyncapi.json": PUBLIC,
    "GET /asyncapi": PUBLIC,
    # FastAPI serves these itself (not through the kit's routers); listed so the table says so.
    "GET /openapi.json": PUBLIC,
    "GET /docs": PUBLIC,
    "GET /docs/oauth2-redirect": PUBLIC,
    "GET /redoc": PUBLIC,
}

ROUTES: Mapping[str, Mapping[str, Rule]] = {
    "customers": {
        "POST /v1/customers": P.customers_create,
        "GET /v1/customers": P.customers_view,
        "POST /v1/customers/duplicate-check": P.customers_view,
        "POST /v1/customers/lookup": P.customers_view,
        "GET /v1/customers/export.csv": P.customers_export,
        "GET /v1/customers/export-policy": P.customers_export,
        "PUT /v1/customers/export-policy": P.customers_export_policy,
        "GET /v1/customers/export-requests": P.customers_export,
        "GET /v1/customers/export-requests/pending": P.customers_export_approve,
        "GET /v1/customers/export-requests/{request_id}": P.customers_export,
        "POST /v1/customers/export-requests/{request_id}/approve": P.customers_export_approve,
        "POST /v1/customers/export-requests/{request_id}/reject": P.customers_export_approve,
        "GET /v1/customers/export-requests/{request_id}/download": P.customers_export,
        "POST /v1/customers/import": P.customers_import,
        "GET /v1/customers/{customer_id}": P.customers_view,
        "PATCH /v1/customers/{customer_id}": P.customers_edit,
        "DELETE /v1/customers/{customer_id}": P.customers_delete,
        "GET /v1/customers/{customer_id}/neighbours": P.customers_view,
        "POST /v1/customers/{customer_id}/copy": P.customers_create,
        "POST /v1/customers/{customer_id}/restore": P.customers_recycle_bin,
        "GET /v1/recycle-bin": P.customers_recycle_bin,
        "DELETE /v1/recycle-bin/{customer_id}": P.customers_purge,
        # Whoever may delete may take back their own deletions (the service checks they made them).
        "GET /v1/my-recycle-bin": P.customers_delete,
        "POST /v1/my-recycle-bin/{customer_id}/restore": P.customers_delete,
        "GET /v1/customers/{customer_id}/history": P.customers_view,
        "POST /v1/customers/{customer_id}/contacts": P.customers_edit,
        "PATCH /v1/customers/{customer_id}/contacts/{contact_id}": P.customers_edit,
        "DELETE /v1/customers/{customer_id}/contacts/{contact_id}": P.customers_edit,
        "POST /v1/customers/{customer_id}/assign": P.customers_assign,
        "POST /v1/customers/bulk-assign": P.customers_assign,
        "POST /v1/customers/{customer_id}/release": P.pool_release,
        "POST /v1/customers/{customer_id}/claim": P.pool_claim,
        "POST /v1/customers/{customer_id}/lock": P.customers_edit,
        "POST /v1/customers/{customer_id}/unlock": P.customers_edit,
        "POST /v1/customers/{customer_id}/merge": P.customers_merge,
        "GET /v1/customer-views": P.customers_view,
        "POST /v1/customer-views": P.customers_view,
        "DELETE /v1/customer-views/{view_id}": P.customers_view,
        # Custom fields of the modules the customers service owns: reading them is part of viewing.
        "GET /v1/fields/customers": P.customers_view,
        "POST /v1/fields/customers": P.fields_manage,
        "GET /v1/fields/customers/{key}": P.customers_view,
        "PATCH /v1/fields/customers/{key}": P.fields_manage,
        "DELETE /v1/fields/customers/{key}": P.fields_manage,
        "GET /v1/fields/customers/{key}/history": P.customers_view,
        "GET /v1/fields/contacts": P.customers_view,
        "POST /v1/fields/contacts": P.fields_manage,
        "GET /v1/fields/contacts/{key}": P.customers_view,
        "PATCH /v1/fields/contacts/{key}": P.fields_manage,
        "DELETE /v1/fields/contacts/{key}": P.fields_manage,
        "GET /v1/fields/contacts/{key}/history": P.customers_view,
    },
    "directory": {
        "POST /v1/auth/token": PUBLIC,
        "POST /v1/auth/refresh": PUBLIC,
        "POST /v1/auth/logout": PUBLIC,
        "GET /.well-known/jwks.json": PUBLIC,
        "GET /v1/me": P.account_self,
        "PATCH /v1/me": P.account_self,
        "POST /v1/me/password": P.account_self,
        "GET /v1/me/history": P.account_self,
        "POST /v1/users": P.users_manage,
        "GET /v1/users": P.users_view,
        "GET /v1/users/{user_id}": P.users_view,
        "PATCH /v1/users/{user_id}": P.users_edit,
        "PUT /v1/users/{user_id}": P.users_manage,
        "POST /v1/users/{user_id}/deactivate": P.users_manage,
        "POST /v1/users/{user_id}/reactivate": P.users_manage,
        "POST /v1/users/{user_id}/password": P.users_manage,
        "GET /v1/users/{user_id}/history": P.users_view,
        "POST /v1/departments": P.departments_manage,
        "GET /v1/departments": P.departments_view,
        "GET /v1/departments/tree": P.departments_view,
        "GET /v1/departments/{department_id}": P.departments_view,
        "PATCH /v1/departments/{department_id}": P.departments_manage,
        "DELETE /v1/departments/{department_id}": P.departments_manage,
        "POST /v1/departments/{department_id}/move": P.departments_manage,
        "GET /v1/departments/{department_id}/history": P.departments_view,
        "GET /v1/roles": P.users_view,
        "POST /v1/roles": P.roles_manage,
        "GET /v1/roles/{role_id}": P.users_view,
        "PATCH /v1/roles/{role_id}": P.roles_manage,
        "DELETE /v1/roles/{role_id}": P.roles_manage,
        "GET /v1/roles/{role_id}/history": P.roles_manage,
    },
    "pipeline": {
        "GET /v1/pipelines": P.pipelines_view,
        "POST /v1/pipelines": P.pipelines_configure,
        "GET /v1/pipelines/{pipeline_id}": P.pipelines_view,
        "PUT /v1/pipelines/{pipeline_id}": P.pipelines_configure,
        "POST /v1/pipelines/{pipeline_id}/make-default": P.pipelines_configure,
        "GET /v1/pipelines/{pipeline_id}/history": P.pipelines_view,
        "POST /v1/opportunities": P.opportunities_create,
        "GET /v1/opportunities": P.opportunities_view,
        "GET /v1/opportunities/{opportunity_id}": P.opportunities_view,
        "PATCH /v1/opportunities/{opportunity_id}": P.opportunities_edit,
        "PUT /v1/opportunities/{opportunity_id}/lines": P.opportunities_edit,
        "GET /v1/opportunities/{opportunity_id}/history": P.opportunities_view,
        "POST /v1/opportunities/{opportunity_id}/stage": P.opportunities_edit,
        "POST /v1/opportunities/{opportunity_id}/win": P.opportunities_edit,
        "POST /v1/opportunities/{opportunity_id}/lose": P.opportunities_edit,
        "POST /v1/opportunities/{opportunity_id}/reopen": P.opportunities_edit,
        "POST /v1/opportunities/{opportunity_id}/assign": P.opportunities_assign,
        "POST /v1/opportunities/{opportunity_id}/documents": P.opportunities_edit,
        "DELETE /v1/opportunities/{opportunity_id}/documents/{document_id}": P.opportunities_edit,
        "POST /v1/opportunities/{opportunity_id}/approval-requests": P.opportunities_edit,
        "POST /v1/opportunities/{opportunity_id}/approvals": P.opportunities_approve,
        "PUT /v1/targets/{scope}/{scope_id}/{period}": P.targets_set,
        "GET /v1/targets/{scope}/{scope_id}/{period}": P.targets_view,
        "GET /v1/targets/{scope}/{scope_id}/{period}/history": P.targets_view,
        "GET /v1/targets": P.targets_view,
        "GET /v1/forecast": P.opportunities_view,
        "GET /v1/funnel": P.opportunities_view,
        # Custom fields of opportunities (stages may require them): reading them is part of viewing.
        "GET /v1/fields/opportunities": P.opportunities_view,
        "POST /v1/fields/opportunities": P.fields_manage,
        "GET /v1/fields/opportunities/{key}": P.opportunities_view,
        "PATCH /v1/fields/opportunities/{key}": P.fields_manage,
        "DELETE /v1/fields/opportunities/{key}": P.fields_manage,
        "GET /v1/fields/opportunities/{key}/history": P.opportunities_view,
    },
    "interactions": {
        "POST /v1/interactions": P.interactions_log,
        "GET /v1/interactions": P.interactions_view,
        "GET /v1/interactions/stats": P.interactions_view,
        "GET /v1/interactions/{interaction_id}": P.interactions_view,
        "PATCH /v1/interactions/{interaction_id}": P.interactions_log,
        "DELETE /v1/interactions/{interaction_id}": P.interactions_log,
        "GET /v1/interactions/{interaction_id}/history": P.interactions_view,
        "GET /v1/customers/{customer_id}/interactions": P.interactions_view,
        "GET /v1/leads/{lead_id}/interactions": P.interactions_view,
        "POST /v1/tasks": P.tasks_manage,
        "GET /v1/tasks": P.tasks_view,
        "GET /v1/tasks/{task_id}": P.tasks_view,
        "PATCH /v1/tasks/{task_id}": P.tasks_manage,
        "DELETE /v1/tasks/{task_id}": P.tasks_manage,
        "POST /v1/tasks/{task_id}/reschedule": P.tasks_manage,
        "POST /v1/tasks/{task_id}/complete": P.tasks_manage,
        "POST /v1/tasks/{task_id}/reopen": P.tasks_manage,
        "GET /v1/tasks/{task_id}/history": P.tasks_view,
        "POST /v1/feedback": P.feedback_manage,
        "GET /v1/feedback": P.feedback_view,
        "GET /v1/feedback/{feedback_id}": P.feedback_view,
        "PATCH /v1/feedback/{feedback_id}": P.feedback_manage,
        "POST /v1/feedback/{feedback_id}/transitions": P.feedback_manage,
        "GET /v1/feedback/{feedback_id}/history": P.feedback_view,
        # Custom fields of interactions, tasks and feedback: reading them is part of viewing each.
        "GET /v1/fields/interactions": P.interactions_view,
        "POST /v1/fields/interactions": P.fields_manage,
        "GET /v1/fields/interactions/{key}": P.interactions_view,
        "PATCH /v1/fields/interactions/{key}": P.fields_manage,
        "DELETE /v1/fields/interactions/{key}": P.fields_manage,
        "GET /v1/fields/interactions/{key}/history": P.interactions_view,
        "GET /v1/fields/tasks": P.tasks_view,
        "POST /v1/fields/tasks": P.fields_manage,
        "GET /v1/fields/tasks/{key}": P.tasks_view,
        "PATCH /v1/fields/tasks/{key}": P.fields_manage,
        "DELETE /v1/fields/tasks/{key}": P.fields_manage,
        "GET /v1/fields/tasks/{key}/history": P.tasks_view,
        "GET /v1/fields/feedback": P.feedback_view,
        "POST /v1/fields/feedback": P.fields_manage,
        "GET /v1/fields/feedback/{key}": P.feedback_view,
        "PATCH /v1/fields/feedback/{key}": P.fields_manage,
        "DELETE /v1/fields/feedback/{key}": P.fields_manage,
        "GET /v1/fields/feedback/{key}/history": P.feedback_view,
    },
    "pool": {
        "POST /v1/pool/rules": P.pool_rules,
        "GET /v1/pool/rules": P.pool_rules,
        "GET /v1/pool/rules/{rule_id}": P.pool_rules,
        "PATCH /v1/pool/rules/{rule_id}": P.pool_rules,
        "DELETE /v1/pool/rules/{rule_id}": P.pool_rules,
        "GET /v1/pool/rules/{rule_id}/history": P.pool_rules,
        "GET /v1/pool/preview": P.pool_rules,
        "POST /v1/pool/preview": P.pool_rules,
        "GET /v1/pool/my-customers": P.pool_countdown,
        "POST /v1/pool/run": P.system_operate,
        "POST /v1/pool/rebuilds": P.system_operate,
        "GET /v1/pool/rebuilds/{rebuild_id}": P.system_operate,
    },
    "notifications": {
        "GET /v1/notifications": P.inbox_use,
        "GET /v1/notifications/unread-count": P.inbox_use,
        "POST /v1/notifications/read-all": P.inbox_use,
        "POST /v1/notifications/{notification_id}/read": P.inbox_use,
        "GET /v1/me/notification-preferences": P.inbox_use,
        "PUT /v1/me/notification-preferences": P.inbox_use,
        "POST /v1/webhooks": P.webhooks_manage,
        "GET /v1/webhooks": P.webhooks_manage,
        "GET /v1/webhooks/{subscription_id}": P.webhooks_manage,
        "PATCH /v1/webhooks/{subscription_id}": P.webhooks_manage,
        "DELETE /v1/webhooks/{subscription_id}": P.webhooks_manage,
        "GET /v1/webhooks/{subscription_id}/history": P.webhooks_manage,
        "GET /v1/webhooks/{subscription_id}/deliveries": P.webhooks_manage,
        "POST /v1/webhooks/{subscription_id}/deliveries/replay-dead": P.webhooks_manage,
        "GET /v1/webhooks/{subscription_id}/deliveries/{delivery_id}": P.webhooks_manage,
        "POST /v1/webhooks/{subscription_id}/deliveries/{delivery_id}/replay": P.webhooks_manage,
    },
    "reporting": {
        "GET /v1/reports/funnel": P.reports_view,
        "GET /v1/reports/forecast": P.reports_view,
        "GET /v1/reports/activity": P.reports_view,
        "GET /v1/reports/distribution": P.reports_view,
        "GET /v1/reports/quality": P.reports_view,
        "GET /v1/reports/campaigns": P.reports_view,
        "GET /v1/reports/lead-sources": P.reports_view,
        "GET /v1/reports/lead-funnel": P.reports_view,
        "GET /v1/reports/receivables/ageing": P.reports_view,
        "GET /v1/reports/receivables/collection": P.reports_view,
        "GET /v1/reports/contracts/target": P.reports_view,
        "GET /v1/reports/tickets/sla": P.reports_view,
        "GET /v1/reports/customers/lifetime-value": P.reports_view,
        "GET /v1/customers/{customer_id}/timeline": P.customers_view,
        "GET /v1/admin/lag": P.system_operate,
        "GET /v1/admin/rebuild": P.system_operate,
        "POST /v1/admin/rebuild": P.system_operate,
    },
    "audit": {
        "GET /v1/audit": P.audit_view,
        "GET /v1/audit/export.csv": P.audit_view,
    },
    "leads": {
        "POST /v1/leads": P.leads_create,
        "GET /v1/leads": P.leads_view,
        "GET /v1/leads/{lead_id}": P.leads_view,
        "PATCH /v1/leads/{lead_id}": P.leads_edit,
        "DELETE /v1/leads/{lead_id}": P.leads_delete,
        "GET /v1/leads/{lead_id}/history": P.leads_view,
        "POST /v1/leads/{lead_id}/claim": P.leads_claim,
        "POST /v1/leads/{lead_id}/release": P.leads_claim,
        "POST /v1/leads/{lead_id}/assign": P.leads_assign,
        "POST /v1/leads/{lead_id}/auto-assign": P.leads_assign,
        "GET /v1/leads/pool-settings": P.leads_rules,
        "PUT /v1/leads/pool-settings": P.leads_rules,
        "GET /v1/leads/assignment-rules": P.leads_rules,
        "POST /v1/leads/assignment-rules": P.leads_rules,
        "POST /v1/leads/assignment-rules/run": P.leads_rules,
        "GET /v1/leads/assignment-rules/{rule_id}": P.leads_rules,
        "PATCH /v1/leads/assignment-rules/{rule_id}": P.leads_rules,
        "DELETE /v1/leads/assignment-rules/{rule_id}": P.leads_rules,
        "GET /v1/leads/assignment-rules/{rule_id}/history": P.leads_rules,
        "POST /v1/leads/{lead_id}/convert": P.leads_convert,
        "GET /v1/leads/{lead_id}/score": P.leads_view,
        "GET /v1/leads/scoring/rules": P.leads_view,
        "PUT /v1/leads/scoring/rules": P.leads_scoring,
        "GET /v1/leads/scoring/rules/history": P.leads_view,
        "GET /v1/leads/scoring/model": P.leads_view,
        "POST /v1/leads/scoring/model/train": P.leads_scoring,
        "POST /v1/campaigns": P.campaigns_manage,
        "GET /v1/campaigns": P.campaigns_view,
        "GET /v1/campaigns/{campaign_id}": P.campaigns_view,
        "PATCH /v1/campaigns/{campaign_id}": P.campaigns_manage,
        "GET /v1/campaigns/{campaign_id}/history": P.campaigns_view,
        "POST /v1/campaigns/{campaign_id}/costs": P.campaigns_manage,
        "GET /v1/campaigns/{campaign_id}/segment": P.campaigns_view,
        "POST /v1/leads/import": P.leads_import,
        "POST /v1/campaigns/{campaign_id}/web-form": P.campaigns_manage,
        "DELETE /v1/campaigns/{campaign_id}/web-form": P.campaigns_manage,
        "GET /v1/campaigns/{campaign_id}/web-form": P.campaigns_view,
        # Web-to-lead: a customer's website posts it (the campaign's form key in the path; rate limited).
        "POST /v1/web-to-lead/{key}": PUBLIC,
        "OPTIONS /v1/web-to-lead/{key}": PUBLIC,
    },
    "sales": {
        "POST /v1/products": P.products_manage,
        "GET /v1/products": P.products_view,
        "GET /v1/products/{product_id}": P.products_view,
        "PATCH /v1/products/{product_id}": P.products_manage,
        "POST /v1/products/{product_id}/deactivate": P.products_manage,
        "POST /v1/products/{product_id}/activate": P.products_manage,
        "POST /v1/price-lists": P.products_manage,
        "GET /v1/price-lists": P.products_view,
        "GET /v1/price-lists/{price_list_id}": P.products_view,
        "PATCH /v1/price-lists/{price_list_id}": P.products_manage,
        "PUT /v1/price-lists/{price_list_id}/entries/{product_id}": P.products_manage,
        "DELETE /v1/price-lists/{price_list_id}/entries/{product_id}": P.products_manage,
        "GET /v1/prices": P.products_view,
        "POST /v1/quotations": P.quotations_manage,
        "GET /v1/quotations/{quotation_id}": P.quotations_view,
        "GET /v1/quotations": P.quotations_view,
        "GET /v1/quotations/{quotation_id}.pdf": P.quotations_view,
        "GET /v1/quotations/{quotation_id}/versions": P.quotations_view,
        "PATCH /v1/quotations/{quotation_id}": P.quotations_manage,
        "POST /v1/quotations/{quotation_id}/revise": P.quotations_manage,
        "POST /v1/quotations/{quotation_id}/submit": P.quotations_manage,
        "POST /v1/quotations/{quotation_id}/approve": P.quotations_approve,
        "POST /v1/quotations/{quotation_id}/reject": P.quotations_approve,
        "POST /v1/quotations/{quotation_id}/send": P.quotations_manage,
        "POST /v1/quotations/{quotation_id}/accept": P.quotations_manage,
        "POST /v1/quotations/{quotation_id}/decline": P.quotations_manage,
        "POST /v1/tickets": P.tickets_manage,
        "GET /v1/tickets": P.tickets_view,
        "GET /v1/tickets/{ticket_id}": P.tickets_view,
        "GET /v1/customers/{customer_id}/tickets": P.tickets_view,
        "POST /v1/tickets/{ticket_id}/assign": P.tickets_assign,
        "POST /v1/tickets/{ticket_id}/replies": P.tickets_manage,
        "POST /v1/tickets/{ticket_id}/resolve": P.tickets_manage,
        "POST /v1/tickets/{ticket_id}/reopen": P.tickets_manage,
        "POST /v1/tickets/{ticket_id}/return-visits": P.tickets_manage,
        "POST /v1/tickets/{ticket_id}/close": P.tickets_manage,
        "POST /v1/contracts": P.contracts_manage,
        "GET /v1/contracts": P.contracts_view,
        "GET /v1/contracts/{contract_id}": P.contracts_view,
        "PATCH /v1/contracts/{contract_id}": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/submit": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/approve": P.contracts_approve,
        "POST /v1/contracts/{contract_id}/reject": P.contracts_approve,
        "POST /v1/contracts/{contract_id}/sign": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/start": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/complete": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/terminate": P.contracts_manage,
        "PUT /v1/contracts/{contract_id}/plan": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/payments": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/refunds": P.contracts_manage,
        "POST /v1/contracts/{contract_id}/invoices": P.contracts_manage,
        "GET /v1/contracts/{contract_id}/invoices": P.contracts_view,
    },
}


#: Decisions for apps that are none of the services above (a test's app, a plugin): see declare.
_DECLARED: dict[str, dict[str, Rule]] = {}


def declare(service: str, rules: Mapping[str, Rule]) -> None:
    """Give the decisions for the routes of an app that is not one of the services in ROUTES.

    The services' own routes are decided in ROUTES, in one place; this cannot change those.
    """
    if service in ROUTES:
        raise ValueError(f"{service}'s routes are decided in crm_platform.permissions.ROUTES")
    _DECLARED[service] = dict(rules)


def route_key(method: str, path: str) -> str:
    # Starlette answers HEAD on every GET route: it needs what the GET needs.
    return f"{'GET' if method.upper() == 'HEAD' else method.upper()} {path}"


def rule_for(service: str, method: str, path: str) -> Rule | None:
    """The permission a route needs, PUBLIC, or None when the table has no decision for it."""
    key = route_key(method, path)
    return COMMON.get(key) or ROUTES.get(service, {}).get(key) or _DECLARED.get(service, {}).get(key)


def undeclared(service: str, routes: Iterable[tuple[str, str]]) -> list[str]:
    """The ``(method, path)`` routes the table has no decision for."""
    return sorted(route_key(m, p) for m, p in routes if rule_for(service, m, p) is None)


class PermissionDenied(Forbidden):
    """The caller's roles do not grant the permission the route needs (as opposed to a
    record outside the caller's scope, which the application reports)."""

    code, title = "permission-denied", "Your role does not allow this"


def ensure_permitted(principal: Principal, permission: Permission, definitions: RoleDefinitions = DEFAULTS) -> None:
    if permission not in granted(principal.roles, definitions):
        roles = ", ".join(definitions.roles_with(permission)) or "none"
        raise PermissionDenied(
            f"This needs the permission {permission.value} (roles: {roles}).",
            extra={"permission": permission.value},
        )


async def authorize(request: Request) -> None:
    """The dependency the service kit puts on every route: look the route up, check the caller."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    service: str = request.app.state.kit.settings.service_name
    rule = rule_for(service, request.method, path) if path else None
    if rule == PUBLIC:
        return
    if rule is None:
        # Unreachable for routes mounted by the kit (it refuses to build an app with one);
        # fail closed all the same.
        raise PermissionDenied(f"No permission is declared for {request.method} {path}.")
    principal = await current_principal(request)
    # The service's read copy of the directory's role definitions (the kit keeps it current).
    ensure_permitted(principal, Permission(rule), request.app.state.kit.roles)
