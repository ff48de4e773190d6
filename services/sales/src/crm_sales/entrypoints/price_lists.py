"""The HTTP API of price lists (/v1/price-lists) and of the price look-up (/v1/prices)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import expected_version, versioned
from crm_platform.openapi import problems
from crm_sales.application.price_lists import PriceListFilter, PriceLists
from crm_sales.domain import money
from crm_sales.domain.price_lists import EntryIn, PriceListIn, PriceListPatch, normalise_tier

Document = dict[str, Any]


class EntryOut(BaseModel):
    product_id: str
    unit_price: str = Field(description="Decimal string in the list's currency.")
    min_quantity: str | None = None
    set_at: datetime
    set_by: str | None = None


class PriceListOut(BaseModel):
    id: str
    name: str
    currency: str
    tier: str | None = Field(default=None, description="null: the currency's default list.")
    active: bool
    valid_from: date | None = None
    valid_to: date | None = None
    entry_count: int
    entries: list[EntryOut] | None = Field(default=None, description="On the record; left out of list pages.")
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None
    version: int


class PriceListPage(BaseModel):
    items: list[PriceListOut]
    next_cursor: str | None = None
    total: int | None = None


class PriceOut(BaseModel):
    product_id: str
    sku: str
    product_name: str
    unit: str
    product_active: bool = Field(description="false: the product is deactivated (on no new price list).")
    currency: str
    unit_price: str = Field(description="Decimal string in the currency.")
    min_quantity: str | None = None
    tier: str | None = Field(description="The tier asked for (null: none).")
    price_list_id: str
    price_list_name: str
    price_list_tier: str | None = Field(
        description="The tier of the list the price came from (null: the default list)."
    )
    valid_from: date | None = None
    valid_to: date | None = None
    on: date


def _entry(entry: Document) -> EntryOut:
    return EntryOut(
        product_id=entry["product_id"],
        unit_price=entry["unit_price"],
        min_quantity=entry.get("min_quantity"),
        set_at=entry["set_at"],
        set_by=entry.get("set_by"),
    )


def price_list_out(doc: Document, *, with_entries: bool = True) -> PriceListOut:
    entries = doc.get("entries")
    return PriceListOut(
        id=doc["_id"],
        name=doc["name"],
        currency=doc["currency"],
        tier=doc.get("tier") or None,
        active=bool(doc["active"]),
        valid_from=doc.get("valid_from"),
        valid_to=doc.get("valid_to"),
        entry_count=len(entries or {}) if entries is not None else int(doc.get("entry_count") or 0),
        entries=[_entry(e) for e in sorted((entries or {}).values(), key=lambda e: str(e["product_id"]))]
        if with_entries
        else None,
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        updated_by=doc.get("updated_by"),
        version=int(doc["version"]),
    )


def price_lists(request: Request) -> PriceLists:
    found: PriceLists = request.app.state.price_lists
    return found


App = Annotated[PriceLists, Depends(price_lists)]
router = APIRouter(tags=["price lists"])


def _price_list(doc: Document, status: int = 200) -> JSONResponse:
    return versioned(
        price_list_out(doc), doc, status, location=f"/v1/price-lists/{doc['_id']}" if status == 201 else None
    )


@router.post("/v1/price-lists", status_code=201, response_model=PriceListOut, summary="Create a price list")
async def create_price_list(body: PriceListIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """``currency`` an ISO 4217 code; ``tier`` a customer tier code (absent: the currency's default
    list); ``valid_to`` not before ``valid_from``. Starts without entries."""
    return _price_list(await app.create(principal, body), 201)


@router.get("/v1/price-lists", response_model=PriceListPage, summary="Price lists, filtered and paged")
async def list_price_lists(params: Annotated[PriceListFilter, Query()], app: App) -> PriceListPage:
    """Sort on ``name`` (default), ``created_at`` or ``valid_from``; filters ``currency``, ``tier``
    (``default`` for the default lists) and ``active``. Rows carry ``entry_count``, not the entries."""
    page = await app.page(params)
    items = [price_list_out(d, with_entries=False) for d in page.items]
    return PriceListPage(items=items, next_cursor=page.next_cursor, total=page.total)


@router.get(
    "/v1/price-lists/{price_list_id}",
    response_model=PriceListOut,
    summary="One price list with its entries",
    responses=problems(404),
)
async def get_price_list(price_list_id: str, app: App) -> JSONResponse:
    return _price_list(await app.get(price_list_id))


@router.patch(
    "/v1/price-lists/{price_list_id}",
    response_model=PriceListOut,
    summary="Change a price list",
    responses=problems(404, 412, 428),
)
async def patch_price_list(
    price_list_id: str, body: PriceListPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """``If-Match`` required. ``currency`` only while the list has no entries (422 otherwise)."""
    doc = await app.update(principal, price_list_id, body, expected_version(request, required=True))
    return _price_list(doc)


@router.put(
    "/v1/price-lists/{price_list_id}/entries/{product_id}",
    response_model=PriceListOut,
    summary="Set a product's price on a price list",
    responses=problems(404, 409, 412),
)
async def set_entry(
    price_list_id: str, product_id: str, body: EntryIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """``unit_price`` a decimal string in the list's currency, quantized to its minor unit ("1280.5"
    in CNY is "1280.50"; a digit beyond it, a negative amount or a JSON number: 422 naming
    ``unit_price``). A deactivated product: 409 ``product-inactive``. ``If-Match`` optional."""
    doc = await app.set_entry(principal, price_list_id, product_id, body, expected_version(request, required=False))
    return _price_list(doc)


@router.delete(
    "/v1/price-lists/{price_list_id}/entries/{product_id}",
    response_model=PriceListOut,
    summary="Take a product off a price list",
    responses=problems(404, 412),
)
async def remove_entry(
    price_list_id: str, product_id: str, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """404 when the list holds no price for the product. ``If-Match`` optional."""
    doc = await app.remove_entry(principal, price_list_id, product_id, expected_version(request, required=False))
    return _price_list(doc)


class PriceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=100)
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217, e.g. CNY.")
    tier: str | None = Field(default=None, max_length=64, description="The customer's tier; absent: the default list.")
    on: date | None = Field(default=None, description="The day the price is for (default: today).")
    quantity: str | None = Field(
        default=None, max_length=40, description="Skip prices whose minimum quantity this does not reach."
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        try:
            return money.currency_code(value)
        except money.InvalidMoney as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("tier")
    @classmethod
    def _tier(cls, value: str | None) -> str | None:
        return normalise_tier(value)

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return money.quantity(value)
        except money.InvalidMoney as exc:
            raise ValueError(str(exc)) from exc


@router.get(
    "/v1/prices",
    response_model=PriceOut,
    summary="The price of a product for a currency, a customer tier and a day",
    responses=problems(404),
)
async def resolve_price(params: Annotated[PriceQuery, Query()], app: App) -> PriceOut:
    """The tier's lists first, then the currency's default lists: among the active lists valid on
    the day that hold the product (and whose minimum the ``quantity`` reaches, if given), the one
    whose validity started last. None: 404 ``no-price`` saying what was looked for."""
    quantity = Decimal(params.quantity) if params.quantity is not None else None
    product, found, on = await app.price(params.product_id, params.currency, params.tier, params.on, quantity)
    listed, entry = found.price_list, found.entry
    return PriceOut(
        product_id=product["_id"],
        sku=product["sku"],
        product_name=product["name"],
        unit=product["unit"],
        product_active=bool(product["active"]),
        currency=params.currency,
        unit_price=entry["unit_price"],
        min_quantity=entry.get("min_quantity"),
        tier=params.tier,
        price_list_id=listed["_id"],
        price_list_name=listed["name"],
        price_list_tier=listed.get("tier") or None,
        valid_from=listed.get("valid_from"),
        valid_to=listed.get("valid_to"),
        on=on,
    )
