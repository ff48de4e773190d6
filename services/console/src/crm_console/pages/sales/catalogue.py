"""Products (``/products``) and price lists (``/price-lists``) over the sales service's catalogue.

Everyone with ``products:view`` reads them; ``products:manage`` adds and changes products (the
edit form sends ``If-Match``), takes them out of sale and back, creates price lists and sets or
removes a product's price on one. Prices are the API's decimal strings with the list's currency,
never numbers. A refusal (422, 409 ``sku-taken`` or ``product-inactive``) is shown at its input.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.lists import list_page, require
from crm_console.pages.sales.common import product_by_sku
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

catalogue_router = APIRouter()
Client = Annotated[Api, Depends(api)]
PAGE_SIZE = 50
PRODUCT_FIELDS = ("sku", "name", "unit", "category", "description")
LIST_FIELDS = ("name", "currency", "tier", "valid_from", "valid_to")
SHOWN_STATUSES = (409, 422)


def _refusal(client: Api, problem: UpstreamProblem) -> tuple[dict[str, str], str]:
    if problem.status not in SHOWN_STATUSES:
        raise problem
    errors = problem.field_errors()
    if problem.extensions.get("existing_product_id") and "sku" not in errors:
        errors["sku"] = client.problem_text(problem)
    return errors, client.problem_text(problem)


# --- products ------------------------------------------------------------------------------------


@catalogue_router.get("/products", include_in_schema=False)
async def products(request: Request, client: Client) -> HTMLResponse:
    page = await list_page(request, client, "sales", "/v1/products", ("q", "active"), PAGE_SIZE)
    context = page.context() | {"q": page.filters.get("q", ""), "active": page.filters.get("active", "")}
    return render(request, "sales/products.html", context)


def _product_form(
    request: Request,
    product: dict[str, Any] | None,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    refused: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    context = {"product": product, "values": values, "field_errors": errors or {}, "refused": refused, "done": ""}
    return render(request, "sales/product.html", context, status_code=status_code)


def _managing(client: Api) -> None:
    """The forms that change the catalogue are for ``products:manage`` (the service refuses the
    rest anyway; this gives the 403 page before a form is typed in vain)."""
    require(client, "products:manage")


@catalogue_router.get("/products/new", include_in_schema=False)
async def new_product(request: Request, client: Client) -> HTMLResponse:
    _managing(client)
    return _product_form(request, None, dict.fromkeys(PRODUCT_FIELDS, ""))


@catalogue_router.post("/products/new", include_in_schema=False)
async def create_product(request: Request, client: Client) -> Response:
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in PRODUCT_FIELDS}
    body = {name: value for name, value in values.items() if value}
    try:
        answer = await client.send("sales", "POST", "/v1/products", json=body)
    except UpstreamProblem as problem:
        errors, refused = _refusal(client, problem)
        return _product_form(request, None, values, errors, refused, problem.status)
    return RedirectResponse(f"/products/{answer.json()['id']}?done=created", status_code=303)


@catalogue_router.get("/products/{product_id}", include_in_schema=False)
async def product(request: Request, product_id: str, client: Client, done: str = "") -> HTMLResponse:
    answer = await client.send("sales", "GET", f"/v1/products/{product_id}")
    shown = answer.json() | {"etag": answer.headers.get("ETag", "")}
    values = {name: str(shown.get(name) or "") for name in PRODUCT_FIELDS}
    return render(
        request,
        "sales/product.html",
        {"product": shown, "values": values, "field_errors": {}, "refused": "", "done": done},
    )


@catalogue_router.post("/products/{product_id}", include_in_schema=False)
async def save_product(request: Request, product_id: str, client: Client) -> Response:
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in PRODUCT_FIELDS}
    was = {name: str(form.get(f"was.{name}") or "") for name in PRODUCT_FIELDS}
    body = {name: value or None for name, value in values.items() if value != was[name]}
    etag = str(form.get("etag") or "")
    try:
        await client.send("sales", "PATCH", f"/v1/products/{product_id}", json=body, headers={"If-Match": etag})
    except UpstreamProblem as problem:
        errors, refused = _refusal(client, problem)
        shown = {
            "id": product_id,
            "etag": etag,
            "sku": was["sku"],
            "name": was["name"],
            "active": form.get("active") == "true",
        }
        return _product_form(request, shown, values, errors, refused, problem.status)
    return RedirectResponse(f"/products/{product_id}?done=saved", status_code=303)


@catalogue_router.post("/products/{product_id}/{move}", include_in_schema=False)
async def move_product(request: Request, product_id: str, move: str, client: Client) -> Response:
    if move not in ("activate", "deactivate"):
        return Response(status_code=404)
    form = await request.form()
    headers = {"If-Match": str(form["etag"])} if form.get("etag") else None
    await client.send("sales", "POST", f"/v1/products/{product_id}/{move}", headers=headers)
    return RedirectResponse(f"/products/{product_id}?done={move}d", status_code=303)


# --- price lists ---------------------------------------------------------------------------------


@catalogue_router.get("/price-lists", include_in_schema=False)
async def price_lists(request: Request, client: Client, cursor: str = "") -> HTMLResponse:
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if cursor:
        params["cursor"] = cursor
    page = await client.get("sales", "/v1/price-lists", params=params)
    context = {
        "items": page.get("items") or [],
        "next_cursor": page.get("next_cursor") or "",
        "values": {"currency": "CNY"},
        "field_errors": {},
        "refused": "",
    }
    return render(request, "sales/price_lists.html", context)


@catalogue_router.post("/price-lists/new", include_in_schema=False)
async def create_price_list(request: Request, client: Client) -> Response:
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in LIST_FIELDS}
    body = {name: value for name, value in values.items() if value}
    try:
        answer = await client.send("sales", "POST", "/v1/price-lists", json=body)
    except UpstreamProblem as problem:
        errors, refused = _refusal(client, problem)
        page = await client.get("sales", "/v1/price-lists", params={"limit": PAGE_SIZE})
        context = {
            "items": page.get("items") or [],
            "next_cursor": page.get("next_cursor") or "",
            "values": values,
            "field_errors": errors,
            "refused": refused,
        }
        return render(request, "sales/price_lists.html", context, status_code=problem.status)
    return RedirectResponse(f"/price-lists/{answer.json()['id']}?done=created", status_code=303)


async def _price_list_page(
    request: Request,
    client: Api,
    list_id: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    refused: str = "",
    done: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    price_list = await client.get("sales", f"/v1/price-lists/{list_id}")
    names: dict[str, dict[str, Any]] = {}
    for entry in price_list.get("entries") or []:
        try:
            names[entry["product_id"]] = await client.get("sales", f"/v1/products/{entry['product_id']}")
        except UpstreamProblem:
            continue
    context = {
        "price_list": price_list,
        "products": names,
        "values": values or {},
        "field_errors": errors or {},
        "refused": refused,
        "done": done,
    }
    return render(request, "sales/price_list.html", context, status_code=status_code)


@catalogue_router.get("/price-lists/{list_id}", include_in_schema=False)
async def price_list(request: Request, list_id: str, client: Client, done: str = "") -> HTMLResponse:
    return await _price_list_page(request, client, list_id, done=done)


@catalogue_router.post("/price-lists/{list_id}/entries", include_in_schema=False)
async def set_price(request: Request, list_id: str, client: Client) -> Response:
    """Set a product's price: the product typed by its SKU, the price as a decimal string."""
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in ("sku", "unit_price", "min_quantity")}
    found = await product_by_sku(client, values["sku"])
    if found is None:
        unknown = client.console.catalogue.translate(client.session.language, "sales.unknown_sku")
        return await _price_list_page(request, client, list_id, values=values, errors={"sku": unknown}, status_code=422)
    body = {"unit_price": values["unit_price"]}
    if values["min_quantity"]:
        body["min_quantity"] = values["min_quantity"]
    try:
        await client.send("sales", "PUT", f"/v1/price-lists/{list_id}/entries/{found['id']}", json=body)
    except UpstreamProblem as problem:
        errors, refused = _refusal(client, problem)
        if problem.status == 409 and "sku" not in errors:
            errors["sku"] = refused
        return await _price_list_page(
            request, client, list_id, values=values, errors=errors, refused=refused, status_code=problem.status
        )
    return RedirectResponse(f"/price-lists/{list_id}?done=price_set", status_code=303)


@catalogue_router.post("/price-lists/{list_id}/entries/{product_id}/remove", include_in_schema=False)
async def remove_price(request: Request, list_id: str, product_id: str, client: Client) -> Response:
    await client.send("sales", "DELETE", f"/v1/price-lists/{list_id}/entries/{product_id}")
    return RedirectResponse(f"/price-lists/{list_id}?done=price_removed", status_code=303)
