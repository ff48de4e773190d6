"""What a person sees when something goes wrong: a page in their language, never a traceback.

- not signed in (or the sign-in ended) → the login page, coming back here afterwards;
- a service cannot be reached → "unavailable" (503) naming it; the console's own session store too;
- 403 / 404 from a service → "not allowed" / "not found";
- 412 → "someone changed this meanwhile: reload";
- another problem → its title and detail; a failed CSRF check → 403;
- anything else → a plain 500 page; the traceback goes to the log.

Field errors (422) are not handled here: the page that sent the form shows them next to each field
(catch :class:`UpstreamProblem` and pass ``problem.field_errors()`` to the template).
For htmx requests the error page replaces ``<main>`` (HX-Retarget), so it is seen, not swallowed.
"""

from __future__ import annotations

from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import CsrfRefused, NotSignedIn, current_session, is_htmx, problem_text, refusal_specifics, render

log = structlog.get_logger(__name__)


def error_page(request: Request, status: int, title_key: str, message_key: str, **values: object) -> Response:
    headers = {"HX-Retarget": "#main", "HX-Reswap": "innerHTML"} if is_htmx(request) else None
    template = "error_fragment.html" if is_htmx(request) else "error.html"
    context = {"status": status, "title_key": title_key, "message_key": message_key, "values": values}
    return render(request, template, context, status_code=status, headers=headers)


async def _not_signed_in(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target if request.method == 'GET' else '/')}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": location})
    response = RedirectResponse(location, status_code=303)
    return response


async def _unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UpstreamUnavailable)
    log.warning("upstream unavailable", service=exc.service, reason=exc.reason)
    await current_session(request)  # so the page still has its menu and language
    response = error_page(request, 503, "core.error.unavailable.title", "core.error.unavailable", service=exc.service)
    response.headers["Retry-After"] = "5"
    return response


async def _store_down(request: Request, exc: Exception) -> Response:
    log.warning("session store unavailable", error=type(exc).__name__)
    request.state.session = None  # unknown: render without it
    response = error_page(request, 503, "core.error.unavailable.title", "core.error.unavailable", service="console")
    response.headers["Retry-After"] = "5"
    return response


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UpstreamProblem)
    await current_session(request)
    if exc.status == 403:
        detail = refusal_specifics(request, exc)
        return error_page(request, 403, "core.error.forbidden.title", "core.error.forbidden", detail=detail)
    if exc.status == 404:
        return error_page(request, 404, "core.error.not_found.title", "core.error.not_found")
    if exc.status == 412:
        return error_page(request, 412, "core.error.changed.title", "core.error.changed")
    return error_page(
        request,
        exc.status,
        "core.error.problem.title",
        "core.error.problem",
        title=problem_text(request, exc),
        detail="",
    )


async def _csrf(request: Request, exc: Exception) -> Response:
    await current_session(request)
    return error_page(request, 403, "core.error.csrf.title", "core.error.csrf")


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    await current_session(request)
    if exc.status_code == 404:
        return error_page(request, 404, "core.error.not_found.title", "core.error.not_found")
    return error_page(
        request, exc.status_code, "core.error.problem.title", "core.error.problem", title=str(exc.detail), detail=""
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", path=request.url.path)
    return error_page(request, 500, "core.error.internal.title", "core.error.internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(UpstreamUnavailable, _unavailable)
    app.add_exception_handler(UpstreamProblem, _problem)
    app.add_exception_handler(PyMongoError, _store_down)
    app.add_exception_handler(CsrfRefused, _csrf)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
