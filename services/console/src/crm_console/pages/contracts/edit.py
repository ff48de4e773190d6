"""Changing a draft contract from its page (``PATCH /v1/contracts/{id}`` with the page's
``If-Match``): title, amount, currency, signatory, term, document and notes.

The form is shown on ``/contracts/{id}`` while the contract is a draft, to those who hold
``contracts:manage``. It sends every field it shows (a blank optional field clears it; title,
amount and currency cannot be cleared: the service's 422 says so at the field). A refusal keeps
what was typed: 422 at the field it names, 409 (no longer a draft, its customer deleted) and 412
(someone changed it meanwhile: the page then holds the new version, so saving again applies the
typed values over it) at the top.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from crm_console.lists import require
from crm_console.pages.contracts.routes import _page as page_of
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api

router = APIRouter(prefix="/contracts")
Client = Annotated[Api, Depends(api)]
#: The ``ContractPatch`` fields the form shows, in its order; the first three cannot be cleared.
EDIT_FIELDS = (
    "title",
    "amount",
    "currency",
    "customer_signatory",
    "start_date",
    "end_date",
    "signed_document",
    "notes",
)
REQUIRED = ("title", "amount", "currency")


def can_edit(contract: dict[str, Any], user: Any) -> bool:
    """The edit form is shown: a draft, and the person may manage contracts."""
    return contract.get("status") == "draft" and may(user, "contracts:manage")


def edit_body(posted: dict[str, str]) -> dict[str, Any]:
    """The PATCH body from the posted ``edit.<field>`` inputs: blanks clear the optional fields."""
    body: dict[str, Any] = {}
    for name in EDIT_FIELDS:
        value = posted.get(f"edit.{name}", "")
        body[name] = value if value or name in REQUIRED else None
    return body


@router.post("/{contract_id}/edit", include_in_schema=False)
async def edit_contract(request: Request, contract_id: str, client: Client) -> Response:
    require(client, "contracts:manage")
    form = await request.form()
    posted = {f"edit.{name}": str(form.get(f"edit.{name}") or "").strip() for name in EDIT_FIELDS}
    headers = {"If-Match": str(form.get("etag") or "")}
    try:
        await client.send("sales", "PATCH", f"/v1/contracts/{contract_id}", json=edit_body(posted), headers=headers)
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 412, 422, 428):
            raise
        errors = {f"edit.{name}": reason for name, reason in problem.field_errors().items()}
        return await page_of(
            request,
            client,
            contract_id,
            errors=errors,
            refused=client.problem_text(problem),
            posted=posted,
            extra={"edit_refused": True, "edit_stale": problem.status in (412, 428)},
            status_code=problem.status,
        )
    return RedirectResponse(f"/contracts/{contract_id}?done=edited", status_code=303)
