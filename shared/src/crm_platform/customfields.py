"""Custom fields defined by administrators: the definition, and the validation of values (no I/O).

A service that owns a module (customers: ``customers``) owns that module's field definitions and
validates every write against them in the same database. A record keeps its values under
``custom: {key: value}``; a bad value is refused with the field named ``custom.<key>`` and the
reason, before anything is written.

Stored forms (what the API returns and the events carry):

* ``text``: a string (``validation.max_length``, default 1,000; optional ``validation.pattern``,
  matched whole);
* ``number``: a JSON number (``validation.min``/``max``; ``validation.decimals``, default 0, the
  digits allowed after the point: 0 stores integers);
* ``money``: ``{"amount": "1234.50", "currency": "CNY"}``: the amount a decimal *string* (a float
  cannot hold every cent), at most two decimals, the currency an ISO 4217 code
  (``validation.currencies`` may list the allowed ones);
* ``date``: an ISO date string, ``2026-12-31`` (so its order is the string's);
* ``choice``: one option key; ``multi_choice``: a list of distinct option keys. Options have
  zh-CN/en labels; they can be added or deactivated (no new writes may pick them; stored values
  stay), never re-keyed or removed;
* ``user``: a user id; ``boolean``: true or false.

A definition is never deleted: archiving takes it out of forms, filters and new writes, and the
values already stored stay where they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crm_platform.errors import FieldError, ValidationFailed

FieldType = Literal["text", "number", "money", "date", "choice", "multi_choice", "user", "boolean"]
FIELD_TYPES: tuple[FieldType, ...] = ("text", "number", "money", "date", "choice", "multi_choice", "user", "boolean")
#: Types a list can filter on (a multi-choice is an array: equality on an array field scans on the
#: embedded store, so it is not offered).
FILTERABLE_TYPES: frozenset[str] = frozenset({"text", "number", "money", "date", "choice", "user", "boolean"})
#: Types a list can sort on: one scalar each (a multi-choice is a list, money a pair).
SORTABLE_TYPES: frozenset[str] = frozenset({"text", "number", "date", "choice", "user", "boolean"})
#: Types a list filters on through a copy kept beside the sort keys (``s.cfq_<key>``), not the
#: value itself: the embedded store compares an ISO date string through a function no index
#: serves, so a date is copied as the integer ``YYYYMMDD``; money is a pair, copied as one string
#: that orders by amount within a currency (:func:`filter_copy`).
COPIED_FILTER_TYPES: frozenset[str] = frozenset({"date", "money"})
FILTER_COPY_PREFIX = "cfq_"
#: The copies' format: a marker of a backfill done names it, so a change of format backfills again.
COPY_FORMAT = 2  # 1: sort copies only, a date as its ISO string; 2: a date as YYYYMMDD, filter copies
#: At most this many active sortable fields per module: each costs every write of a record an
#: index per visibility scope (409 beyond).
MAX_SORTABLE = 5
#: Where a record's sort copy of a sortable field lives (``s.cf_<key>``), and what a record
#: without a value holds there, per type: below every value, so value-less records sort first
#: ascending and last descending, for every type.
SORT_COPY_PREFIX = "cf_"
NO_SORT_VALUE: dict[str, Any] = {"number": -(10**16), "boolean": -1, "date": -1}
Status = Literal["active", "archived"]

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
TEXT_MAX_DEFAULT = 1000
TEXT_MAX_LIMIT = 10000
MAX_OPTIONS = 200
MONEY_DECIMALS = 2
#: Numbers and amounts stay below this in size: a double holds every integer up to it exactly.
LARGEST = 10**15
#: Where a record keeps its values, and the prefix of their names in errors and filters.
PREFIX = "custom"


def field_name(key: str) -> str:
    return f"{PREFIX}.{key}"


class Labels(BaseModel):
    """A text in both of the console's languages."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    zh_cn: str = Field(alias="zh-CN", min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=200)


class HelpText(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    zh_cn: str | None = Field(default=None, alias="zh-CN", max_length=1000)
    en: str | None = Field(default=None, max_length=1000)


OptionKey = Annotated[str, Field(pattern=KEY_PATTERN)]


class Option(BaseModel):
    """One option of a choice or multi-choice: a stable key, labels, and whether new writes may pick it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: OptionKey
    labels: Labels
    active: bool = True


class Validation(BaseModel):
    """The per-type rules; a rule that does not apply to the field's type is refused."""

    model_config = ConfigDict(extra="forbid")

    max_length: int | None = Field(default=None, ge=1, le=TEXT_MAX_LIMIT, description="text")
    pattern: str | None = Field(default=None, max_length=500, description="text: a regular expression, matched whole")
    min: Decimal | None = Field(default=None, description="number")
    max: Decimal | None = Field(default=None, description="number")
    decimals: int | None = Field(default=None, ge=0, le=6, description="number: digits after the point (default 0)")
    currencies: list[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] | None = Field(
        default=None, max_length=50, description="money: the ISO 4217 codes allowed (default: any)"
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


_RULES_BY_TYPE: Mapping[str, frozenset[str]] = {
    "text": frozenset({"max_length", "pattern"}),
    "number": frozenset({"min", "max", "decimals"}),
    "money": frozenset({"currencies"}),
}


class DefinitionFields(BaseModel):
    """What an administrator may set on a definition (the key and the type are fixed once defined)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    labels: Labels
    help: HelpText | None = None
    required: bool = False
    default: Any = Field(default=None, description="Set on create when the field is not given; validated.")
    validation: Validation = Validation()
    options: Annotated[list[Option], Field(max_length=MAX_OPTIONS)] = []
    filterable: bool = Field(default=False, description="Lists may filter on it (an index is kept for it).")
    sortable: bool = Field(
        default=False, description=f"Lists may sort on it (indexes are kept for it; at most {MAX_SORTABLE} per module)."
    )
    position: int = Field(default=0, ge=0, le=10000, description="Order in forms (then the key).")


class DefinitionIn(DefinitionFields):
    """A new field, as ``POST /v1/fields/{module}`` takes it."""

    key: str = Field(pattern=KEY_PATTERN, description="a-z, 0-9 and _, starting with a letter; fixed once defined")
    type: FieldType


class DefinitionPatch(BaseModel):
    """Only what is sent changes. Options: send the whole list; existing keys must all stay."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    labels: Labels | None = None
    help: HelpText | None = None
    required: bool | None = None
    default: Any = None
    validation: Validation | None = None
    options: Annotated[list[Option], Field(max_length=MAX_OPTIONS)] | None = None
    filterable: bool | None = None
    sortable: bool | None = None
    position: int | None = Field(default=None, ge=0, le=10000)

    @model_validator(mode="after")
    def _no_nulls(self) -> DefinitionPatch:
        for name in ("labels", "required", "validation", "options", "filterable", "sortable", "position"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class Definition(DefinitionIn):
    """A stored definition (``_id`` is ``<module>.<key>``)."""

    module: str
    status: Status = "active"
    version: int = 1


def definition_id(module: str, key: str) -> str:
    return f"{module}.{key}"


# --- definitions: their own rules --------------------------------------------------------------


def check_definition(
    definition: Mapping[str, Any], builtin: Iterable[str], previous: Mapping[str, Any] | None = None
) -> None:
    """Refuse a definition that cannot work, naming the field: a key that is a built-in field's, a
    rule for another type, a choice without options, options re-keyed or dropped, a default that
    is not a valid value. ``previous``: the stored definition a change starts from."""
    errors: list[FieldError] = []
    key, type_ = definition["key"], definition["type"]
    if previous is None and key in set(builtin):
        errors.append(FieldError(field="key", reason=f"'{key}' is a built-in field of this module"))
    rules = {k for k, v in (definition.get("validation") or {}).items() if v is not None}
    for rule in sorted(rules - _RULES_BY_TYPE.get(type_, frozenset())):
        errors.append(FieldError(field=f"validation.{rule}", reason=f"does not apply to a {type_} field"))
    validation = definition.get("validation") or {}
    low, high = validation.get("min"), validation.get("max")
    if low is not None and high is not None and Decimal(str(low)) > Decimal(str(high)):
        errors.append(FieldError(field="validation.max", reason="must not be below validation.min"))
    options = definition.get("options") or []
    if type_ in ("choice", "multi_choice"):
        if not options:
            errors.append(FieldError(field="options", reason=f"a {type_} field needs at least one option"))
        keys = [o["key"] for o in options]
        for i, option_key in enumerate(keys):
            if option_key in keys[:i]:
                errors.append(FieldError(field=f"options[{i}].key", reason=f"'{option_key}' is named twice"))
        if previous is not None:
            missing = [o["key"] for o in previous.get("options") or [] if o["key"] not in keys]
            if missing:
                errors.append(
                    FieldError(
                        field="options",
                        reason="options are never removed or re-keyed (stored values use them): keep "
                        f"{', '.join(missing)} (set active: false to stop new writes picking them)",
                    )
                )
    elif options:
        errors.append(FieldError(field="options", reason=f"a {type_} field has no options"))
    if definition.get("filterable") and type_ not in FILTERABLE_TYPES:
        errors.append(FieldError(field="filterable", reason=f"a {type_} field cannot be filtered on"))
    if definition.get("sortable") and type_ not in SORTABLE_TYPES:
        errors.append(FieldError(field="sortable", reason=f"a {type_} field cannot be sorted on"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    if definition.get("default") is not None:
        try:
            coerce(definition, definition["default"])
        except InvalidValue as exc:
            raise ValidationFailed.for_field("default", exc.reason) from exc


# --- values ----------------------------------------------------------------------------------------


class InvalidValue(ValueError):
    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _active_options(definition: Mapping[str, Any]) -> dict[str, bool]:
    return {o["key"]: bool(o.get("active", True)) for o in definition.get("options") or []}


def _option(definition: Mapping[str, Any], value: Any, kept: Iterable[Any] = ()) -> str:
    options = _active_options(definition)
    if not isinstance(value, str):
        raise InvalidValue("must be an option key (a string)", "string_type")
    if value not in options:
        raise InvalidValue(f"'{value}' is not an option; use one of {', '.join(options)}", "enum")
    if not options[value] and value not in set(kept):
        raise InvalidValue(f"the option '{value}' is no longer offered", "enum")
    return value


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or (isinstance(value, float) and what == "an amount"):
        raise InvalidValue(f'must be {what} as a decimal string, e.g. "1234.50"', "decimal_type")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise InvalidValue(f"'{value}' is not {what}", "decimal_parsing") from exc
    if not number.is_finite():
        raise InvalidValue(f"'{value}' is not {what}", "decimal_parsing")
    if abs(number) >= LARGEST:
        # Beyond what a 64-bit integer or a double holds exactly (and what the stores keep).
        raise InvalidValue(f"must be below {LARGEST:,} in size", "less_than")
    return number


def _places(number: Decimal) -> int:
    exponent = number.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def coerce(definition: Mapping[str, Any], value: Any, kept: Any = None) -> Any:
    """``value`` in the field's stored form, or :class:`InvalidValue` saying why not.

    ``kept``: the record's current value; a deactivated option it already holds may stay.
    """
    type_ = definition["type"]
    rules = definition.get("validation") or {}
    if type_ == "text":
        if not isinstance(value, str):
            raise InvalidValue("must be text", "string_type")
        limit = rules.get("max_length") or TEXT_MAX_DEFAULT
        if len(value) > limit:
            raise InvalidValue(f"at most {limit} characters", "string_too_long")
        pattern = rules.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            raise InvalidValue(f"does not match the pattern {pattern}", "string_pattern_mismatch")
        return value
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidValue("must be a number", "decimal_type")
        number = _decimal(value, "a number")
        decimals = rules.get("decimals") or 0
        if _places(number) > decimals:
            raise InvalidValue(f"at most {decimals} digits after the point", "decimal_max_places")
        for bound, test, words in (("min", number.__lt__, "at least"), ("max", number.__gt__, "at most")):
            if rules.get(bound) is not None and test(Decimal(str(rules[bound]))):
                raise InvalidValue(
                    f"must be {words} {rules[bound]}", "greater_than_equal" if bound == "min" else "less_than_equal"
                )
        return int(number) if decimals == 0 else float(number)
    if type_ == "money":
        if not isinstance(value, Mapping) or set(value) - {"amount", "currency"}:
            raise InvalidValue('must be {"amount": "<decimal string>", "currency": "<ISO 4217 code>"}', "model_type")
        amount = _decimal(value.get("amount"), "an amount")
        if _places(amount) > MONEY_DECIMALS:
            raise InvalidValue(f"at most {MONEY_DECIMALS} digits after the point", "decimal_max_places")
        currency = value.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            raise InvalidValue("currency must be an ISO 4217 code such as CNY", "string_pattern_mismatch")
        allowed = rules.get("currencies")
        if allowed and currency not in allowed:
            raise InvalidValue(f"currency must be one of {', '.join(allowed)}", "enum")
        return {"amount": f"{amount.quantize(Decimal('0.01'))}", "currency": currency}
    if type_ == "date":
        if not isinstance(value, str):
            raise InvalidValue("must be an ISO date, e.g. 2026-12-31", "date_type")
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError as exc:
            raise InvalidValue(f"'{value}' is not an ISO date (YYYY-MM-DD)", "date_parsing") from exc
    if type_ == "choice":
        return _option(definition, value, [kept])
    if type_ == "multi_choice":
        if not isinstance(value, list):
            raise InvalidValue("must be a list of option keys", "list_type")
        held = kept if isinstance(kept, list) else []
        picked = [_option(definition, v, held) for v in value]
        return list(dict.fromkeys(picked))
    if type_ == "user":
        if not isinstance(value, str) or not value.strip() or len(value) > 100:
            raise InvalidValue("must be a user id (1 to 100 characters)", "string_type")
        return value.strip()
    if type_ == "boolean":
        if not isinstance(value, bool):
            raise InvalidValue("must be true or false", "bool_type")
        return value
    raise InvalidValue(f"unknown field type {type_}")


def value_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{field: custom.<key>, old, new}]`` of the values that differ, for a record's change event."""
    return [
        {"field": field_name(key), "old": old.get(key), "new": new.get(key)}
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


_TRUE = {"true", "1", "yes", "y", "是", "真"}
_FALSE = {"false", "0", "no", "n", "否", "假"}


def day_number(value: Any) -> int | None:
    """An ISO date as the integer ``YYYYMMDD`` (which orders as the dates do), or None."""
    if not isinstance(value, str):
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day.year * 10000 + day.month * 100 + day.day


#: Cents are offset by this before they are written out, so negative amounts order too.
_CENTS_OFFSET = 10**18
_CENTS_DIGITS = 19


def money_key(currency: str, amount: Decimal) -> str:
    """An amount as one string that orders by amount within its currency: ``CNY:`` and the cents,
    offset and zero-padded to a fixed width."""
    cents = int((amount * 100).to_integral_value())
    return f"{currency}:{cents + _CENTS_OFFSET:0{_CENTS_DIGITS}d}"


def sort_copy(definition: Mapping[str, Any], value: Any) -> Any:
    """A value as a list sorts on it, never null: the value itself (text, option key, user id,
    number), a date as the integer ``YYYYMMDD`` (a range on an ISO date string is not index-served
    on the embedded store, and a page after the first is a range), a boolean as 0 or 1; a missing
    value (or one of another type, stored before a change of rules) is :data:`NO_SORT_VALUE` of
    the type ("" for the text-like ones)."""
    type_ = definition["type"]
    if type_ == "boolean":
        return int(value) if isinstance(value, bool) else NO_SORT_VALUE["boolean"]
    if type_ == "date":
        day = day_number(value)
        return NO_SORT_VALUE["date"] if day is None else day
    if type_ == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return value if ok else NO_SORT_VALUE["number"]
    return value if isinstance(value, str) else ""


def filter_copy(definition: Mapping[str, Any], value: Any) -> Any:
    """What a list filters on for a field of :data:`COPIED_FILTER_TYPES`: a date as ``YYYYMMDD``,
    money as :func:`money_key`; None without a value (which no filter matches)."""
    if definition["type"] == "date":
        return day_number(value)
    if definition["type"] == "money" and isinstance(value, Mapping):
        try:
            return money_key(str(value["currency"]), Decimal(str(value["amount"])))
        except (KeyError, InvalidOperation):
            return None
    return None


def copies(definition: Mapping[str, Any], value: Any) -> dict[str, Any]:
    """The copies a record keeps beside its sort keys (under ``s``) of one field's value: the sort
    copy (``cf_<key>``) of a sortable field, the filter copy (``cfq_<key>``) of a filterable one
    of :data:`COPIED_FILTER_TYPES`."""
    out: dict[str, Any] = {}
    if definition.get("sortable"):
        out[SORT_COPY_PREFIX + definition["key"]] = sort_copy(definition, value)
    if needs_filter_copy(definition):
        out[FILTER_COPY_PREFIX + definition["key"]] = filter_copy(definition, value)
    return out


def needs_filter_copy(definition: Mapping[str, Any]) -> bool:
    return bool(definition.get("filterable")) and definition["type"] in COPIED_FILTER_TYPES


def has_copies(definition: Mapping[str, Any]) -> bool:
    """Whether records keep a copy of the field's values (and so need a backfill when it is flagged)."""
    return bool(definition.get("sortable")) or needs_filter_copy(definition)


def filter_path(definition: Mapping[str, Any]) -> str:
    """Where a list's filter on the field looks: the value (``custom.<key>``), or its copy."""
    if definition["type"] in COPIED_FILTER_TYPES:
        return f"s.{FILTER_COPY_PREFIX}{definition['key']}"
    return field_name(definition["key"])


def from_text(definition: Mapping[str, Any], text: str) -> Any:
    """A value as a person types it in a CSV cell or a query string, in the form :func:`coerce`
    takes: numbers and dates as typed, booleans as true/false (是/否, 1/0), a multi-choice as keys
    separated by ``;``, money as ``1234.50 CNY``. An empty cell is None (no value)."""
    text = text.strip()
    if not text:
        return None
    type_ = definition["type"]
    if type_ == "boolean":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise InvalidValue(f"'{text}' is not true or false", "bool_parsing")
    if type_ == "multi_choice":
        return [part.strip() for part in text.split(";") if part.strip()]
    if type_ == "money":
        parts = text.split()
        if len(parts) != 2:
            raise InvalidValue(f"'{text}' is not an amount and a currency, e.g. 1234.50 CNY", "model_type")
        return {"amount": parts[0], "currency": parts[1].upper()}
    return text


def to_text(definition: Mapping[str, Any], value: Any) -> str:
    """The inverse of :func:`from_text`, for CSV exports."""
    if value is None:
        return ""
    type_ = definition["type"]
    if type_ == "boolean":
        return "true" if value else "false"
    if type_ == "multi_choice":
        return ";".join(str(v) for v in value)
    if type_ == "money":
        return f"{value.get('amount')} {value.get('currency')}"
    return str(value)


#: Types a list filter may give a range for, and how: ``<low>..<high>`` (money: ``<low>..<high> CNY``).
RANGE_TYPES = frozenset({"number", "date", "money"})
RANGE = ".."


def _day(text: str) -> int:
    day = day_number(text)
    if day is None:
        raise InvalidValue(f"'{text}' is not an ISO date (YYYY-MM-DD)", "date_parsing")
    return day


def _currency(definition: Mapping[str, Any], text: str) -> tuple[str, str]:
    """``<amounts> <currency>`` split; the currency must be one the field allows."""
    amounts, _, currency = text.strip().rpartition(" ")
    currency = currency.upper()
    if not amounts.strip() or not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidValue(f"'{text}' needs an amount and a currency, e.g. 1000..5000 CNY", "model_type")
    allowed = (definition.get("validation") or {}).get("currencies")
    if allowed and currency not in allowed:
        raise InvalidValue(f"currency must be one of {', '.join(allowed)}", "enum")
    return amounts.strip(), currency


def _bound(type_: str, text: str, currency: str = "") -> Any:
    if type_ == "date":
        return _day(text)
    if type_ == "money":
        return money_key(currency, _decimal(text, "an amount"))
    number = _decimal(text, "a number")
    return int(number) if number == number.to_integral_value() else float(number)


def _range(type_: str, text: str, currency: str = "") -> dict[str, Any]:
    """``<low>..<high>`` as a store query (either end may be left open, not both). A money range
    stays within its currency: an open end is the currency's first or last key."""
    low, _, high = (part.strip() for part in text.partition(RANGE))
    bounds: dict[str, Any] = {}
    if low:
        bounds["$gte"] = _bound(type_, low, currency)
    if high:
        bounds["$lte"] = _bound(type_, high, currency)
    if not bounds:
        raise InvalidValue("give at least one end of the range, e.g. 10..100 or ..100", "missing")
    if type_ == "money":
        bounds.setdefault("$gte", f"{currency}:")
        bounds.setdefault("$lte", f"{currency}:{'9' * _CENTS_DIGITS}")
    return bounds


@dataclass(frozen=True)
class FieldSet:
    """A module's definitions as a write sees them: the active ones by key, and the archived keys."""

    active: Mapping[str, Mapping[str, Any]]
    archived: frozenset[str] = frozenset()

    @classmethod
    def of(cls, definitions: Iterable[Mapping[str, Any]]) -> FieldSet:
        active: dict[str, Mapping[str, Any]] = {}
        archived: set[str] = set()
        for d in definitions:
            if d.get("status", "active") == "active":
                active[d["key"]] = d
            else:
                archived.add(d["key"])
        return cls(active, frozenset(archived))

    def ordered(self) -> list[Mapping[str, Any]]:
        return sorted(self.active.values(), key=lambda d: (d.get("position", 0), d["key"]))

    def validate(
        self,
        values: Mapping[str, Any] | None,
        current: Mapping[str, Any] | None = None,
        *,
        location: str = "body",
        prefix: str = "",
    ) -> dict[str, Any]:
        """The record's ``custom`` after a write that sends ``values``.

        On create (``current`` None): every key must be an active field, defaults fill what is not
        given, and every required field must have a value. On a change, only the keys sent change;
        null clears a value, except of a required field. Values of archived fields stay as stored
        and cannot be written. Every problem is reported at once, each naming ``custom.<key>``
        (after ``prefix``: ``contacts[0].`` for a contact in a customer's body).
        """
        creating = current is None
        out: dict[str, Any] = dict(current or {})
        errors: list[FieldError] = []
        sent = dict(values or {})
        for key, raw in sent.items():
            name = prefix + field_name(key)
            definition = self.active.get(key)
            if definition is None:
                reason = (
                    "the field is archived: it takes no new values"
                    if key in self.archived
                    else "no such custom field for this module"
                )
                errors.append(FieldError(field=name, reason=reason, location=location))
                continue
            if raw is None:
                if definition.get("required"):
                    errors.append(FieldError(field=name, reason="required", location=location, code="missing"))
                else:
                    out.pop(key, None)
                continue
            try:
                out[key] = coerce(definition, raw, (current or {}).get(key))
            except InvalidValue as exc:
                errors.append(FieldError(field=name, reason=exc.reason, location=location, code=exc.code))
        if creating:
            for key, definition in self.active.items():
                if key in sent:
                    continue
                if definition.get("default") is not None:
                    out[key] = coerce(definition, definition["default"])
                elif definition.get("required"):
                    errors.append(
                        FieldError(field=prefix + field_name(key), reason="required", location=location, code="missing")
                    )
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
        return out

    def sortable(self) -> list[Mapping[str, Any]]:
        """The active fields lists may sort on."""
        return [d for d in self.ordered() if d.get("sortable")]

    def copies(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
        """A record's copies (under its ``s``) of every field that keeps them (:func:`copies`)."""
        out: dict[str, Any] = {}
        for definition in self.ordered():
            out.update(copies(definition, (values or {}).get(definition["key"])))
        return out

    def filter_path(self, key: str) -> str:
        """Where a filter on ``custom.<key>`` looks (see :func:`filter_path`)."""
        definition = self.active.get(key)
        return field_name(key) if definition is None else filter_path(definition)

    def conditions(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """A list's ``custom.<key>`` filters (as :func:`query_filters` read them) as store conditions."""
        return {self.filter_path(key): value for key, value in filters.items()}

    def sort_field(self, key: str) -> str:
        """The stored sort copy of ``sort=custom.<key>``, or 422 naming ``sort`` for a field that is
        unknown, archived or not sortable."""
        definition = self.active.get(key)
        if definition is None:
            raise ValidationFailed.for_field("sort", f"no custom field '{key}' to sort on", "query")
        if not definition.get("sortable"):
            raise ValidationFailed.for_field("sort", f"the custom field '{key}' is not sortable", "query")
        return f"s.{SORT_COPY_PREFIX}{key}"

    def filter_value(self, key: str, text: str) -> Any:
        """A list filter ``custom.<key>=<text>``: the stored value to match, or 422 naming it.

        A number or date field also takes a range, ``<low>..<high>`` with either end left open
        (``10..100``, ``..100``, ``2026-01-01..2026-03-31``): both ends included. Money is an
        amount or a range and its currency (``1000 CNY``, ``1000..5000 CNY``, ``..5000 CNY``). A
        date or money filter matches the records' copies (:meth:`filter_path`)."""
        name = field_name(key)
        definition = self.active.get(key)
        if definition is None:
            raise ValidationFailed.for_field(name, "no such custom field for this module", "query")
        if not definition.get("filterable"):
            raise ValidationFailed.for_field(name, "this field is not filterable", "query")
        type_ = definition["type"]
        try:
            if type_ == "money":
                amounts, currency = _currency(definition, text)
                if RANGE in amounts:
                    return _range(type_, amounts, currency)
                return money_key(currency, _decimal(amounts, "an amount"))
            if type_ in RANGE_TYPES and RANGE in text:
                return _range(type_, text)
            if type_ == "date":
                return _day(text.strip())
            raw = from_text(definition, text)
            if raw is None:
                raise InvalidValue("give a value")
            # Any option, also a deactivated one: records may still hold it.
            return coerce(definition, raw, raw)
        except InvalidValue as exc:
            raise ValidationFailed(
                f"{name}: {exc.reason}",
                errors=[FieldError(field=name, reason=exc.reason, location="query", code=exc.code)],
            ) from exc


def query_filters(fields: FieldSet, query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The ``custom.<key>=<value>`` filters of a list's query string, by key, as the stored values
    (or ranges) to match; 422 naming ``custom.<key>`` for a field that is unknown, archived or not
    filterable, a value it cannot hold, or a key given twice. Other parameters are left alone."""
    prefix = field_name("")
    out: dict[str, Any] = {}
    for name, text in query:
        if name.startswith(prefix):
            key = name.removeprefix(prefix)
            if key in out:
                raise ValidationFailed.for_field(name, "give one value", "query")
            out[key] = fields.filter_value(key, text)
    return out
