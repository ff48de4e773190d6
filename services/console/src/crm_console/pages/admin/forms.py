"""Small helpers the admin forms share: reading a form, lists typed as comma-separated text, the
ETag of a version, the department tree as select options."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from crm_console.web import Api
from crm_platform.concurrency import etag


async def form_of(request: Request) -> dict[str, Any]:
    """Single fields as strings, repeated ones (checkboxes) as lists."""
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form:
        values = [str(v) for v in form.getlist(key)]
        out[key] = values if len(values) > 1 else values[0]
    return out


def listed(value: Any) -> list[str]:
    """A checkbox group (absent, one value or several) as a list."""
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def comma_list(text: str) -> list[str]:
    """ "a, b，c" → ["a", "b", "c"] (Chinese commas too)."""
    return [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]


def number_or_none(text: str) -> int | str | None:
    """A number field: empty → None; something else is passed on for the service to refuse at the field."""
    text = text.strip()
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def if_match(version: Any) -> dict[str, str]:
    return {"If-Match": etag(int(version))}


def flatten(nodes: list[dict[str, Any]], depth: int = 0) -> list[dict[str, Any]]:
    """The department tree in tree order, each node with its depth."""
    out: list[dict[str, Any]] = []
    for node in nodes:
        out.append({**node, "depth": depth})
        out.extend(flatten(node.get("children") or [], depth + 1))
    return out


async def departments(client: Api) -> list[dict[str, Any]]:
    tree: list[dict[str, Any]] = await client.get("directory", "/v1/departments/tree")
    return flatten(tree)


class Loose(dict[str, Any]):
    """Form values for a template: a field the dict lacks reads as None (the templates run with
    StrictUndefined, and a new or refused form has only the fields it has)."""

    def __missing__(self, key: str) -> None:
        return None


def loose(value: Any) -> Any:
    """``value`` with every dict in it (stages, requirements) made :class:`Loose`."""
    if isinstance(value, dict):
        return Loose({k: loose(v) for k, v in value.items()})
    if isinstance(value, list):
        return [loose(v) for v in value]
    return value
