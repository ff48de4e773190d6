"""The administration pages: every one needs ``users:manage`` (administrators), checked once here."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from crm_console.pages.admin import departments, fields, pipelines, pool_rules, roles, users, webhooks
from crm_console.pages.admin.access import requires
from crm_console.web import render
from crm_platform.permissions import Permission

ADMINS = Permission.users_manage

router = APIRouter(prefix="/admin", dependencies=[Depends(requires(ADMINS))])

SECTIONS = ("users", "roles", "departments", "pipelines", "pool-rules", "webhooks", "fields")


@router.get("", include_in_schema=False)
async def index(request: Request) -> HTMLResponse:
    return render(request, "admin/index.html", {"sections": SECTIONS})


for module in (users, roles, departments, pipelines, pool_rules, webhooks, fields):
    router.include_router(module.router)
