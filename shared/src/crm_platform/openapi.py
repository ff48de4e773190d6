"""Every error a route can answer, declared in its OpenAPI document as RFC 9457 problem+json.

The kit documents, on every route, the statuses any route can give (a refused or missing token
and a role without the permission on non-public routes, invalid input, throttling, an internal
error, an unavailable store), ``404`` wherever the path names a record and ``400`` wherever a body
may fail to parse. A route adds what only
it can answer where it is defined: ``@router.post(..., responses=problems(409, 412, 428))``. Every
error status then gets the ``Problem`` schema as ``application/problem+json``, replacing FastAPI's
own 422 schema (which the error handlers never send).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm_platform.errors import PROBLEM_JSON, FieldError, Problem

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Authentication required: no access token, or an invalid or expired one",
    403: "Not allowed: the role lacks the permission, or the record is outside the caller's scope",
    404: "Not found (or not visible to the caller)",
    409: "Conflict with the current state",
    412: "If-Match names an older version: read the record again",
    413: "The request is too large",
    415: "Unsupported content type",
    422: "The request has invalid fields (listed in errors)",
    423: "The record is locked",
    428: "If-Match is required",
    429: "Too many requests: wait for Retry-After",
    500: "Internal error",
    503: "A dependency (store or broker) is unavailable",
}

ALWAYS = (422, 429, 500, 503)
AUTHENTICATED = (401, 403)
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The extra error statuses of one route, for its decorator's ``responses=``."""
    return {status: {"description": TITLES.get(status, "Error")} for status in statuses}


def _is_placeholder(content: dict[str, Any] | None) -> bool:
    """True for what FastAPI writes when a route declares no content of its own for an error."""
    if not content:
        return True
    if set(content) != {"application/json"}:
        return False
    schema = content["application/json"].get("schema", {})
    return not schema or schema.get("$ref") == _FASTAPI_VALIDATION


def document_problems(schema: dict[str, Any], is_public: Callable[[str, str], bool]) -> dict[str, Any]:
    """Add the standard and declared error responses to every operation of ``schema`` (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["FieldError"] = FieldError.model_json_schema()
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    problem.pop("$defs", None)
    components["Problem"] = problem
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            statuses = set(ALWAYS)
            if not is_public(method, path):
                statuses.update(AUTHENTICATED)
            if "{" in path:
                statuses.add(404)
            if "requestBody" in operation:
                statuses.add(400)  # a body that does not parse as its content type
            for status in statuses:
                responses.setdefault(str(status), {"description": TITLES[status]})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and _is_placeholder(response.get("content")):
                    response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
    # FastAPI's validation-error shapes are referenced by nothing any more.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema
