"""Errors as RFC 9457 problem details.

Application code raises a :class:`DomainError` subclass; the handlers installed by
:func:`install_error_handlers` turn it, request-validation failures and anything
unexpected into ``application/problem+json`` with the fields at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)


class FieldError(BaseModel):
    """One offending field: where it is (dotted path, list indexes in brackets) and why.

    ``code`` and ``params``, where known, say the reason for machines (a client showing it in
    another language): the validation error's kind (``missing``, ``string_too_long``,
    ``greater_than``, ``enum``…, pydantic's error types) and its limits (``max_length``, ``gt``…).
    """

    field: str
    reason: str
    location: str = "body"
    code: str | None = None
    params: dict[str, str | int | float | bool] | None = None


class Problem(BaseModel):
    """The problem+json document (RFC 9457) with our ``errors`` extension."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] = []


_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})


def problem_type(code: str) -> str:
    return f"urn:crm:problem:{code}"


class DomainError(Exception):
    """Base of every error the API reports on purpose."""

    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.extra = extra or {}
        self.headers = headers or {}


class ValidationFailed(DomainError):
    status, code, title = 422, "validation-failed", "The request has invalid fields"

    @classmethod
    def for_field(cls, field: str, reason: str, location: str = "body") -> ValidationFailed:
        return cls(f"{field}: {reason}", errors=[FieldError(field=field, reason=reason, location=location)])


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(DomainError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict with the current state"


class Duplicate(Conflict):
    code, title = "duplicate", "The record already exists"


class PreconditionFailed(DomainError):
    status, code, title = 412, "precondition-failed", "The record has changed since you read it"


class Locked(DomainError):
    status, code, title = 423, "locked", "The record is locked"


class PreconditionRequired(DomainError):
    status, code, title = 428, "precondition-required", "If-Match is required"


class ServiceUnavailable(DomainError):
    status, code, title = 503, "unavailable", "A dependency is unavailable"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None,
    request: Request,
    errors: Sequence[FieldError] = (),
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=problem_type(code),
        title=title,
        status=status,
        detail=detail,
        instance=str(request.url.path),
        errors=list(errors),
    ).model_dump(exclude_none=True)
    for key, value in (extra or {}).items():
        # An extension member must not overwrite a standard one (RFC 9457 §3.2): a record's
        # own "status" becomes "current_status" rather than replacing the HTTP status.
        body[f"current_{key}" if key in _STANDARD_MEMBERS else key] = value
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _reason(message: str) -> str:
    # pydantic prefixes our own ValueError messages; the person reading wants just the reason.
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def field_errors_from_pydantic(errors: Sequence[Any], default_location: str = "body") -> list[FieldError]:
    """Map pydantic/FastAPI error entries to our ``FieldError`` list."""
    out: list[FieldError] = []
    for err in errors:
        loc = list(err.get("loc", ()))
        location = default_location
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            location = str(loc.pop(0))
        field = _field_path(loc) or location
        reason = _reason(str(err.get("msg", "invalid")))
        if err.get("type") == "json_invalid":
            field, reason = "body", f"the body is not valid JSON: {err.get('ctx', {}).get('error', reason)}"
        code = str(err["type"]) if err.get("type") else None
        if code in ("value_error", "assertion_error"):
            code = None  # our own validators' messages: only the text says which rule
        params = {
            k: v for k, v in (err.get("ctx") or {}).items() if isinstance(v, str | int | float | bool) and k != "error"
        }
        out.append(FieldError(field=field, reason=reason, location=location, code=code, params=params or None))
    return out


def install_error_handlers(app: FastAPI) -> None:
    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return problem_response(
            exc.status, exc.code, exc.title, exc.detail, request, exc.errors, exc.extra, exc.headers
        )

    async def on_request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = field_errors_from_pydantic(exc.errors())
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
        return problem_response(422, ValidationFailed.code, ValidationFailed.title, detail, request, errors)

    async def on_pydantic_validation(request: Request, exc: Exception) -> JSONResponse:
        # A model built inside a handler (e.g. a CSV row) failed: still the caller's input.
        assert isinstance(exc, ValidationError)
        errors = field_errors_from_pydantic(exc.errors())
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
        return problem_response(422, ValidationFailed.code, ValidationFailed.title, detail, request, errors)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}.get(
            exc.status_code, "HTTP error"
        )
        code = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(exc.status_code, "http-error")
        return problem_response(
            exc.status_code, code, title, str(exc.detail), request, headers=getattr(exc, "headers", None)
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this handler in its ServerErrorMiddleware, which sends our response and
        # then re-raises, so the server (uvicorn) drops the connection afterwards. Saying
        # "Connection: close" lets a keep-alive client know rather than meet a reset socket on
        # its next request.
        log.exception("unhandled error", path=str(request.url.path))
        return problem_response(
            500,
            "internal",
            "Internal error",
            "An unexpected error occurred; it has been logged.",
            request,
            headers={"Connection": "close"},
        )

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(ValidationError, on_pydantic_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
