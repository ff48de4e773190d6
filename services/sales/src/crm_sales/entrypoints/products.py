"""The HTTP API of the product catalogue (/v1/products)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version, versioned
from crm_platform.openapi import problems
from crm_sales.application.products import ProductFilter, Products
from crm_sales.domain.products import ProductIn, ProductPatch

Document = dict[str, Any]


class ProductOut(BaseModel):
    id: str
    sku: str
    name: str
    unit: str
    category: str | None = None
    description: str | None = None
    active: bool
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None
    version: int


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None = None
    total: int | None = None


def product_out(doc: Document) -> ProductOut:
    return ProductOut(
        id=doc["_id"],
        sku=doc["sku"],
        name=doc["name"],
        unit=doc["unit"],
        category=doc.get("category"),
        description=doc.get("description"),
        active=bool(doc["active"]),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        updated_by=doc.get("updated_by"),
        version=int(doc["version"]),
    )


def products(request: Request) -> Products:
    found: Products = request.app.state.products
    return found


App = Annotated[Products, Depends(products)]
router = APIRouter(prefix="/v1/products", tags=["products"])


def _product(doc: Document, status: int = 200) -> JSONResponse:
    return versioned(product_out(doc), doc, status, location=f"/v1/products/{doc['_id']}" if status == 201 else None)


@router.post("", status_code=201, response_model=ProductOut, summary="Add a product", responses=problems(409))
async def add_product(body: ProductIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """The SKU is trimmed and upper-cased and must be unique: a SKU already in the catalogue is a
    409 (``sku-taken``) naming the product that holds it. ``unit`` is required (个, 台, 套, 年 ...)."""
    return _product(await app.add(principal, body), 201)


@router.get("", response_model=ProductPage, summary="Products, filtered and paged")
async def list_products(params: Annotated[ProductFilter, Query()], app: App) -> ProductPage:
    """Sort on ``name`` (default, any case), ``sku`` or ``created_at`` (``-`` for descending); ``q``
    finds names or SKUs starting with it; ``category`` and ``active`` filter exactly. Pages by cursor."""
    page = await app.page(params)
    return ProductPage(items=[product_out(d) for d in page.items], next_cursor=page.next_cursor, total=page.total)


@router.get("/{product_id}", response_model=ProductOut, summary="One product", responses=problems(404))
async def get_product(product_id: str, app: App) -> JSONResponse:
    return _product(await app.get(product_id))


@router.patch(
    "/{product_id}",
    response_model=ProductOut,
    summary="Change a product",
    responses=problems(404, 409, 412, 428),
)
async def patch_product(
    product_id: str, body: ProductPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """``If-Match`` required (the ETag of the product read). A new SKU taken by another product: 409."""
    return _product(await app.update(principal, product_id, body, expected_version(request, required=True)))


@router.post(
    "/{product_id}/deactivate",
    response_model=ProductOut,
    summary="Take a product out of sale",
    responses=problems(404, 412),
)
async def deactivate_product(product_id: str, request: Request, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """It stays readable, but goes on no new price list. ``If-Match`` optional. Already deactivated:
    answered as it is (no new version, no event)."""
    return _product(await app.set_active(principal, product_id, False, expected_version(request, required=False)))


@router.post(
    "/{product_id}/activate",
    response_model=ProductOut,
    summary="Put a deactivated product on sale again",
    responses=problems(404, 412),
)
async def activate_product(product_id: str, request: Request, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """``If-Match`` optional. Already active: answered as it is (no new version, no event)."""
    return _product(await app.set_active(principal, product_id, True, expected_version(request, required=False)))
