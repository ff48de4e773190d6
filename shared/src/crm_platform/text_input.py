"""Control characters are refused in every request: body, path and query, every service.

A NUL or an escape sequence in a name breaks exports, terminals, logs and other systems that
read our events, and is never what a person meant to type. Refusing them once here, as an
app-wide FastAPI dependency the service kit installs, covers every route of every service
(present and future) without touching each request model: the dependency runs after routing,
so it can name the path and query parameter at fault, and before the body is validated.

In JSON bodies tab, line feed and carriage return stay allowed, since multi-line text fields
(descriptions, notes, email bodies) legitimately hold them; single-line fields are normalised
by their own rules. Path and query values are never multi-line, so there every control
character is refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

from crm_platform.errors import FieldError, ValidationFailed

# Unicode category Cc: C0 (U+0000-U+001F), DEL (U+007F) and C1 (U+0080-U+009F).
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, LF, CR allowed
# In valid JSON a C0 character can only appear escaped (\u0000, \b, \f; \t \n \r are allowed
# anyway), while DEL and C1 may also come raw (UTF-8 C2 80-9F): a body with none of these
# needs no parsing.
_MAYBE_CONTROL = re.compile(rb"\\[ubf]|\x7f|\xc2[\x80-\x9f]")


def control_character(text: str, *, multi_line: bool) -> str | None:
    """Why ``text`` is refused (naming the first control character), or None."""
    found = (_CONTROL_BUT_LINE_BREAKS if multi_line else _ANY_CONTROL).search(text)
    if found is None:
        return None
    return f"contains the control character U+{ord(found.group()):04X}; remove it"


def _walk(value: Any, path: str, out: list[FieldError]) -> None:
    if isinstance(value, str):
        reason = control_character(value, multi_line=True)
        if reason:
            out.append(FieldError(field=path or "body", reason=reason))
    elif isinstance(value, dict):
        for key, item in value.items():
            reason = control_character(str(key), multi_line=False)
            child = f"{path}.{key}" if path else str(key)
            if reason:
                out.append(FieldError(field=path or "body", reason=f"a member name {reason}"))
                continue
            _walk(item, child, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", out)


async def refuse_control_characters(request: Request) -> None:
    """422 naming every field (body, path or query) that holds a control character."""
    errors: list[FieldError] = []
    for name, value in request.path_params.items():
        reason = control_character(str(value), multi_line=False)
        if reason:
            errors.append(FieldError(field=name, reason=reason, location="path"))
    for name, value in request.query_params.multi_items():
        reason = control_character(name, multi_line=False) or control_character(value, multi_line=False)
        if reason:
            errors.append(FieldError(field=name, reason=reason, location="query"))
    content_type = request.headers.get("content-type", "")
    if not content_type or "json" in content_type:  # FastAPI reads a body without a type as JSON too
        raw = await request.body()  # Starlette keeps it: the route reads the same bytes again
        if _MAYBE_CONTROL.search(raw):
            try:
                document = json.loads(raw)
            except ValueError:
                document = None  # FastAPI reports the broken JSON itself
            _walk(document, "", errors)
    if errors:
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
        raise ValidationFailed(detail, errors=errors)
