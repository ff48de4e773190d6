"""Optimistic concurrency over HTTP: versions as ETags, If-Match on writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from crm_platform.errors import FieldError, PreconditionFailed, PreconditionRequired, ValidationFailed


def etag(version: int) -> str:
    return f'"{version}"'


def versioned(
    body: BaseModel, doc: Mapping[str, Any], status_code: int = 200, *, location: str | None = None
) -> JSONResponse:
    """A record's answer: ``body`` as JSON with the ETag of the record ``doc`` (what a client sends
    back in If-Match) and, when given, its ``Location`` (a 201's new record)."""
    headers = {"ETag": etag(int(doc["version"]))}
    if location is not None:
        headers["Location"] = location
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code, headers=headers)


def expected_version(request: Request, *, required: bool) -> int | None:
    """The version the client last saw, from If-Match; None when absent and not required."""
    header = request.headers.get("if-match")
    if header is None:
        if required:
            raise PreconditionRequired(
                "Send If-Match with the ETag you last read, so that you do not overwrite a change you have not seen."
            )
        return None
    value = header.strip()
    if value == "*":
        return None
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise ValidationFailed(
            'If-Match must be an ETag returned by this API, such as "3".',
            errors=[FieldError(field="If-Match", reason="not an ETag of this API", location="header")],
        )
    return int(value)


def stale(current_version: int, expected: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"The record is at version {current_version}; your If-Match says {expected}. Read it again and retry.",
        extra={"current_version": current_version},
        headers={"ETag": etag(current_version)},
    )
