"""Custom fields in the console: where each module's definitions live, their labels in the user's
language, a stored value as a person reads it, and the customer forms' inputs (one per active
field, named ``custom.<key>`` like the API's errors) turned into the API's ``custom`` object.

Values are typed as the CSV columns take them (:func:`crm_platform.customfields.from_text`):
numbers and dates as typed, money as ``150000.00 CNY``, booleans chosen as true/false; a
multi-choice is a multiple select. The service validates and names what it refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crm_console.web import Api
from crm_platform.customfields import InvalidValue, from_text, to_text

#: Each module's definitions are the owning service's: ``/v1/fields/<module>`` there.
MODULE_SERVICE: dict[str, str] = {
    "customers": "customers",
    "contacts": "customers",
    "opportunities": "pipeline",
    "interactions": "interactions",
    "tasks": "interactions",
    "feedback": "interactions",
}
PREFIX = "custom."
#: Where the edit form keeps the value it showed, to send only what the person changed.
WAS = "was."


async def definitions(client: Api, module: str, *, include_archived: bool = False) -> list[dict[str, Any]]:
    params = {"include_archived": "true"} if include_archived else None
    found: list[dict[str, Any]] = await client.get(MODULE_SERVICE[module], f"/v1/fields/{module}", params)
    return found


def text_in(texts: Mapping[str, Any] | None, language: str) -> str:
    """A ``{"zh-CN": ..., "en": ...}`` text in ``language``, else the other one, else empty."""
    texts = texts or {}
    return str(texts.get(language) or texts.get("zh-CN") or texts.get("en") or "")


def option_label(definition: Mapping[str, Any], key: Any, language: str) -> str:
    for option in definition.get("options") or []:
        if option["key"] == key:
            return text_in(option.get("labels"), language)
    return str(key)


def display(definition: Mapping[str, Any], value: Any, language: str, names: Mapping[str, str]) -> str:
    """A stored value as the customer page shows it: options by their labels, money with its
    currency, a user by name (``names``), yes/no in the user's language."""
    if value is None or value == [] or value == "":
        return "—"
    kind = definition["type"]
    if kind == "choice":
        return option_label(definition, value, language)
    if kind == "multi_choice":
        return "、".join(option_label(definition, v, language) for v in value)
    if kind == "boolean":
        return ("是" if value else "否") if language == "zh-CN" else ("Yes" if value else "No")
    if kind == "user":
        return names.get(str(value), str(value))
    return to_text(definition, value)


def active(definitions: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The definitions a form offers: archived fields take no new values, so they get no input."""
    return [d for d in definitions if d.get("status", "active") == "active"]


def lines(
    definitions: Iterable[Mapping[str, Any]],
    custom: Mapping[str, Any] | None,
    language: str,
    names: Mapping[str, str] | None = None,
) -> list[tuple[str, str, str]]:
    """``[(key, label, text)]`` of the custom values a record holds, as a card or a row shows them
    (archived fields too: their values stay on the record; a hidden one is not in the record)."""
    custom = custom or {}
    return [
        (d["key"], text_in(d["labels"], language), display(d, custom[d["key"]], language, names or {}))
        for d in shown(definitions, custom)
    ]


def shown(definitions: Iterable[Mapping[str, Any]], custom: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The definitions of the values a record holds, in the definitions' order. A field the
    caller's roles hide is absent from the record, so it is absent here too."""
    custom = custom or {}
    return [d for d in definitions if d["key"] in custom and custom[d["key"]] not in (None, "", [])]


def form_values(definitions: Iterable[Mapping[str, Any]], custom: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record's values as the form's inputs (``custom.<key>``; multi-choices as lists)."""
    custom = custom or {}
    out: dict[str, Any] = {}
    for definition in definitions:
        value = custom.get(definition["key"])
        name = PREFIX + definition["key"]
        out[name] = list(value or []) if definition["type"] == "multi_choice" else to_text(definition, value)
    return out


def posted(definitions: Iterable[Mapping[str, Any]], form: Any) -> dict[str, Any]:
    """The form's custom inputs as they were typed (multi-choices as lists), and what the edit
    form showed before (``was.custom.<key>``), to re-render the form after a refusal."""
    out: dict[str, Any] = {}
    for definition in definitions:
        for name in (PREFIX + definition["key"], WAS + PREFIX + definition["key"]):
            if definition["type"] == "multi_choice" and not name.startswith(WAS):
                out[name] = [str(v) for v in form.getlist(name) if str(v)]
            else:
                out[name] = str(form.get(name) or "")
    return out


def _typed(definition: Mapping[str, Any], raw: Any) -> Any:
    if definition["type"] == "multi_choice":
        return list(raw) or None
    try:
        return from_text(definition, str(raw))
    except InvalidValue:
        return str(raw).strip()  # as typed: the service refuses it at custom.<key>, saying why


def body(definitions: Iterable[Mapping[str, Any]], values: Mapping[str, Any], *, for_patch: bool) -> dict[str, Any]:
    """The API's ``custom`` object. A create sends the fields given a value (an empty one gets
    the field's default, or is refused when required). A patch sends only what changed from the
    value the form showed (``null`` clears it): a field the person did not touch is not written,
    so one their role may only read does not refuse the whole change."""
    out: dict[str, Any] = {}
    for definition in definitions:
        name = PREFIX + definition["key"]
        raw = values.get(name, [] if definition["type"] == "multi_choice" else "")
        if for_patch:
            before = values.get(WAS + name, "")
            now = ";".join(raw) if isinstance(raw, list) else str(raw).strip()
            if now == before:
                continue
        value = _typed(definition, raw)
        if value is not None or for_patch:
            out[definition["key"]] = value
    return out


def was(values: Mapping[str, Any]) -> dict[str, str]:
    """The edit form's hidden ``was.custom.<key>`` inputs from its values (multi-choices joined by ;)."""
    return {
        WAS + name: ";".join(value) if isinstance(value, list) else str(value)
        for name, value in values.items()
        if name.startswith(PREFIX)
    }
