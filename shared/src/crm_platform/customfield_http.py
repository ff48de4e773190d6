"""The custom fields API a service mounts for each module it owns: ``/v1/fields/<module>``.

Each module's routes are literal paths (``/v1/fields/customers``), so the permission table can
say that reading a module's definitions needs that module's view permission, and changing them
``fields:manage``. The service puts its :class:`CustomFields` on ``app.state.custom_fields``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import etag, expected_version
from crm_platform.customfield_store import CustomFields, definition_out
from crm_platform.customfields import DefinitionIn, DefinitionPatch
from crm_platform.history import HistoryEntry
from crm_platform.openapi import problems


class OptionOut(BaseModel):
    key: str
    labels: dict[str, str]
    active: bool = True


class FieldOut(BaseModel):
    id: str
    module: str
    key: str
    type: str
    labels: dict[str, str]
    help: dict[str, str | None] | None = None
    required: bool = False
    default: Any = None
    validation: dict[str, Any] = {}
    options: list[OptionOut] = []
    filterable: bool = False
    sortable: bool = False
    position: int = 0
    status: str
    version: int
    created_at: datetime | None = None
    created_by: str | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None


def _fields(request: Request) -> CustomFields:
    fields: CustomFields = request.app.state.custom_fields
    return fields


Fields = Annotated[CustomFields, Depends(_fields)]


def _respond(doc: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    body = FieldOut.model_validate(definition_out(doc)).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers={"ETag": etag(doc["version"]), **(headers or {})})


def fields_router(module: str) -> APIRouter:
    """The routes of one module's definitions."""
    base = f"/v1/fields/{module}"
    router = APIRouter(prefix=base, tags=["custom fields"])

    @router.get("", response_model=list[FieldOut], summary=f"Custom fields of {module} (forms, filters, columns)")
    async def list_fields(
        fields: Fields,
        include_archived: Annotated[
            bool, Query(description="Also archived fields (their values stay on records).")
        ] = False,
    ) -> list[FieldOut]:
        docs = await fields.definitions(module, include_archived=include_archived)
        return [FieldOut.model_validate(definition_out(d)) for d in docs]

    @router.post(
        "",
        status_code=201,
        response_model=FieldOut,
        summary=f"Define a custom field of {module} (administrators)",
        responses=problems(409),
    )
    async def define(body: DefinitionIn, principal: CurrentPrincipal, fields: Fields) -> JSONResponse:
        doc = await fields.define(principal, module, body)
        return _respond(doc, 201, {"Location": f"{base}/{doc['key']}"})

    @router.get("/{key}", response_model=FieldOut, summary="One custom field's definition", responses=problems(404))
    async def get_field(key: str, fields: Fields) -> JSONResponse:
        return _respond(await fields.get(module, key))

    @router.patch(
        "/{key}",
        response_model=FieldOut,
        summary="Change a definition: labels, help, required, default, rules, options, filter, sort (send If-Match)",
        responses=problems(404, 409, 412, 428),
    )
    async def change(
        key: str, body: DefinitionPatch, request: Request, principal: CurrentPrincipal, fields: Fields
    ) -> JSONResponse:
        return _respond(await fields.change(principal, module, key, body, expected_version(request, required=True)))

    @router.delete(
        "/{key}",
        response_model=FieldOut,
        summary="Archive a field: out of forms, filters and new writes; stored values stay (never deleted)",
        responses=problems(404, 412),
    )
    async def archive(key: str, request: Request, principal: CurrentPrincipal, fields: Fields) -> JSONResponse:
        return _respond(await fields.archive(principal, module, key, expected_version(request, required=False)))

    @router.get(
        "/{key}/history", response_model=list[HistoryEntry], summary="The definition's history: who, when, old, new"
    )
    async def history(key: str, fields: Fields) -> list[HistoryEntry]:
        return await fields.history(module, key)

    return router
