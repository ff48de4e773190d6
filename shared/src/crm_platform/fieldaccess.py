"""Field-level permissions: which fields of a module a role hides or makes read-only.

An administrator's role definition (the directory's ``/v1/roles``) may restrict fields per
module: ``{"customers": {"phones": "hidden", "tier": "read"}, "contacts": {"phones": "hidden"}}``.

* ``hidden``: the field is not in anything the holder receives (records, lists, lookups,
  exports, history), and filtering or sorting on it is refused (403 ``field-hidden``);
* ``read``: the holder sees it but may not set it (403 ``field-read-only`` on a create,
  patch or import that sets it);
* not listed: read-write (still subject to the module's action permissions).

Roles combine as permissions and scopes do: the widest access over the holder's roles wins
(a field hidden by one role and writable through another is writable). The built-in roles
restrict nothing until an administrator edits them.

Which fields may be restricted is declared here per module (:data:`PROTECTED_FIELDS`), so
the directory can refuse a name no service would honour; custom fields are ``custom.<key>``.
The services apply a :class:`FieldPolicy`, resolved once per request from their read copy of
the role definitions (:meth:`crm_platform.roles.RoleBook.field_policy`), at their presenters
and query parsers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from crm_platform.errors import FieldError, Forbidden
from crm_platform.history import HistoryEntry

Access = Literal["hidden", "read", "write"]
ACCESS: tuple[Access, ...] = ("hidden", "read", "write")
"""From narrowest to widest; a definition lists only ``hidden`` and ``read`` (write is the default)."""

#: Per module, the fields a role may hide or make read-only: the record's business data. Ids,
#: names, ownership, status and timestamps are not among them: without them nothing works.
PROTECTED_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "customers": frozenset(
        {
            "uscc",
            "industry",
            "size",
            "address",
            "source",
            "tier",
            "lifecycle_stage",
            "tags",
            "phones",
            "emails",
            "website",
            "description",
        }
    ),
    "contacts": frozenset({"role", "title", "phones", "emails", "notes"}),
    "opportunities": frozenset(
        {"amount", "quotation_amount", "probability", "expected_close_date", "source_campaign", "products", "notes"}
    ),
    # What was said and agreed: an interaction's text, who took part, where and how long; not
    # its channel, direction or platform (how the timeline, lists and stats tell them apart).
    "interactions": frozenset(
        {
            "summary",
            "duration_seconds",
            "key_points",
            "objections",
            "subject",
            "participants",
            "body_excerpt",
            "attendees",
            "location",
            "minutes",
            "content",
        }
    ),
    # A task's title names it (as a customer's name does); its notes are the content.
    "tasks": frozenset({"notes"}),
    # Feedback's title names it; what the customer said, how it was resolved and their rating.
    "feedback": frozenset({"description", "resolution", "satisfaction"}),
    # Other modules come when their services enforce them: a module is listed here only once
    # every read, list, filter, sort and export of it honours it.
}

#: Event type prefix -> the module whose fields its ``changes`` name (the first match wins).
_CHANGES_MODULE: Final[tuple[tuple[str, str], ...]] = (
    ("crm.customer.contact_changed", "contacts"),
    ("crm.customer.", "customers"),
    ("crm.opportunity.", "opportunities"),
    ("crm.interaction.", "interactions"),
    ("crm.task.", "tasks"),
    ("crm.feedback.", "feedback"),
)

#: Fields computed from a protected one go with it: hiding an opportunity's amount hides its
#: weighted amount and its products' prices too.
DERIVED: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    # A customer event's snapshot lists every phone and email of the customer and its contacts
    # (what duplicate checks compare): hidden with the customer's (and, below, the contacts').
    "customers": {"phones": ("match_phones",), "emails": ("match_emails",)},
    "opportunities": {
        # Line items carry unit prices and totals (lines_total, each line's): hidden with the amount
        # in events and history; the pipeline's HTTP answer keeps the lines without their prices.
        "amount": ("weighted_amount", "quotation_amount", "products", "lines", "lines_total"),
        "probability": ("weighted_amount", "probability_overridden"),
    },
}

_CUSTOM = re.compile(r"^custom\.[a-z][a-z0-9_]{0,39}$")


class FieldHidden(Forbidden):
    """A filter or sort named a field the caller's roles hide."""

    code, title = "field-hidden", "A field you may not see"


class FieldReadOnly(Forbidden):
    """A write set a field the caller's roles make read-only (or hide)."""

    code, title = "field-read-only", "A field you may not change"


def validate_field_rules(values: Mapping[str, Mapping[str, str]], field_name: str = "fields") -> list[FieldError]:
    """What is wrong with a role definition's field rules (empty when nothing is)."""
    errors: list[FieldError] = []
    for module, rules in values.items():
        known = PROTECTED_FIELDS.get(module)
        if known is None:
            errors.append(
                FieldError(
                    field=f"{field_name}.{module}",
                    reason=f"'{module}' has no field-level permissions ({', '.join(sorted(PROTECTED_FIELDS))})",
                )
            )
            continue
        if not isinstance(rules, Mapping):
            errors.append(FieldError(field=f"{field_name}.{module}", reason="give an object: field -> hidden | read"))
            continue
        for name, access in rules.items():
            where = f"{field_name}.{module}.{name}"
            if name not in known and not _CUSTOM.match(name):
                errors.append(
                    FieldError(
                        field=where,
                        reason=f"'{name}' cannot be restricted; use one of {', '.join(sorted(known))} or custom.<key>",
                    )
                )
            elif access not in ("hidden", "read"):
                errors.append(FieldError(field=where, reason=f"'{access}' is not hidden or read"))
    return errors


@dataclass(frozen=True)
class FieldPolicy:
    """What one caller may do with the fields of one module."""

    module: str
    hidden: frozenset[str] = field(default_factory=frozenset)
    read_only: frozenset[str] = field(default_factory=frozenset)  # read-only and visible

    @property
    def unrestricted(self) -> bool:
        return not self.hidden and not self.read_only

    @classmethod
    def combine(cls, module: str, per_role: Iterable[Mapping[str, str]]) -> FieldPolicy:
        """The widest access over the roles' rules for ``module`` (a role without rules: all writable)."""
        rank: dict[str, int] = {a: i for i, a in enumerate(ACCESS)}
        rules = [{n: a for n, a in r.items() if a in ("hidden", "read")} for r in per_role]
        if not rules:
            return cls(module=module)
        # A field some role does not restrict is writable through that role.
        names = set.intersection(*(set(r) for r in rules))
        widest = {n: max((r[n] for r in rules), key=rank.__getitem__) for n in names}
        derived = DERIVED.get(module, {})
        hidden = {n for n, a in widest.items() if a == "hidden"}
        hidden |= {d for n in hidden for d in derived.get(n, ())}
        read_only = {n for n, a in widest.items() if a == "read"}
        read_only |= {d for n in read_only for d in derived.get(n, ())}
        return cls(module=module, hidden=frozenset(hidden), read_only=frozenset(read_only - hidden))

    # --- what a response may carry ------------------------------------------------------

    def hides(self, name: str) -> bool:
        return name in self.hidden

    def redact(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """``doc`` without the hidden fields (``custom.<key>`` removes the key from ``custom``)."""
        out = dict(doc)
        if not self.hidden:
            return out
        for name in self.hidden:
            if name.startswith("custom."):
                custom = out.get("custom")
                if isinstance(custom, Mapping) and name[7:] in custom:
                    out["custom"] = {k: v for k, v in custom.items() if k != name[7:]}
            else:
                out.pop(name, None)
        return out

    def top_level_hidden(self) -> set[str]:
        """Hidden names that are top-level fields (for ``model_dump(exclude=...)``)."""
        return {n for n in self.hidden if not n.startswith("custom.")}

    # --- what a request may ask ------------------------------------------------------------

    def ensure_visible(self, names: Iterable[str], usage: str) -> None:
        """Refuse (403) a filter or sort on hidden fields, naming each one."""
        refused = sorted({n for n in names if n in self.hidden})
        if refused:
            raise FieldHidden(
                f"Your role does not let you see {', '.join(refused)}, so you cannot {usage} on it.",
                errors=[FieldError(field=n, reason=f"hidden from your role: cannot {usage} on it") for n in refused],
                extra={"module": self.module},
            )

    def ensure_writable(self, names: Iterable[str]) -> None:
        """Refuse (403) a write that sets read-only or hidden fields, naming each one."""
        refused = sorted({n for n in names if n in self.hidden or n in self.read_only})
        if refused:
            raise FieldReadOnly(
                f"Your role does not let you change {', '.join(refused)}.",
                errors=[
                    FieldError(
                        field=n, reason="hidden from your role" if n in self.hidden else "read-only for your role"
                    )
                    for n in refused
                ],
                extra={"module": self.module},
            )


def written_fields(values: Mapping[str, Any], *, creating: bool) -> list[str]:
    """The fields a create or patch body sets, as field rules name them: a custom value is
    ``custom.<key>``. On a create only those given a value count (an empty one sets nothing)."""

    def given(value: Any) -> bool:
        return not creating or value not in (None, "", [], {})

    out: list[str] = []
    for name, value in values.items():
        if name == "custom" and isinstance(value, Mapping):
            out.extend(f"custom.{key}" for key, item in value.items() if given(item))
        elif given(value):
            out.append(name)
    return out


def redact_history(entries: list[HistoryEntry], policy: FieldPolicy) -> list[HistoryEntry]:
    """A record's history without changes to fields ``policy`` hides.

    An entry whose every change was hidden is left out (its summary would name it); a
    "changed a, b" summary names only the fields that remain.
    """
    if not policy.hidden:
        return entries
    out: list[HistoryEntry] = []
    for entry in entries:
        changes = [c for c in entry.changes if not policy.hides(str(c.get("field", "")))]
        if entry.changes and not changes:
            continue
        summary = entry.summary
        if len(changes) != len(entry.changes) and summary.startswith("changed "):
            summary = "changed " + ", ".join(str(c["field"]) for c in changes)
        out.append(entry.model_copy(update={"changes": changes, "summary": summary}))
    return out


def redact_event_data(event_type: str, data: Mapping[str, Any], policy: Callable[[str], FieldPolicy]) -> dict[str, Any]:
    """An event's data as a reader whose roles give ``policy(module)`` may receive it (a webhook
    subscriber, a history): the customer, contact, opportunity, interaction, task and feedback
    snapshots it carries without their hidden fields, no change to a hidden field, and none of
    the values a feedback event repeats beside its snapshot (``resolution``, ``satisfaction``)."""
    out = dict(data)
    customer = out.get("customer")
    if isinstance(customer, Mapping):
        contacts = policy("contacts")
        customer = policy("customers").redact(customer)
        for name, merged in (("phones", "match_phones"), ("emails", "match_emails")):
            if contacts.hides(name):  # the merged list holds the contacts' values too
                customer.pop(merged, None)
        if isinstance(customer.get("contacts"), list):
            customer["contacts"] = [contacts.redact(c) if isinstance(c, Mapping) else c for c in customer["contacts"]]
        out["customer"] = customer
    if isinstance(out.get("contacts"), list):
        contacts = policy("contacts")
        out["contacts"] = [contacts.redact(c) if isinstance(c, Mapping) else c for c in out["contacts"]]
    for key, module in (
        ("contact", "contacts"),
        ("opportunity", "opportunities"),
        ("interaction", "interactions"),
        ("task", "tasks"),
        ("feedback", "feedback"),
    ):
        if isinstance(out.get(key), Mapping):
            out[key] = policy(module).redact(out[key])
    if event_type.startswith("crm.feedback."):
        # crm.feedback.resolved repeats the resolution and rating next to the snapshot.
        feedback = policy("feedback")
        for name in ("resolution", "satisfaction"):
            if feedback.hides(name):
                out.pop(name, None)
    if event_type.startswith("crm.lead."):
        return _redact_lead_event(out, policy)
    if isinstance(out.get("changes"), list):
        changes_of = next((m for prefix, m in _CHANGES_MODULE if event_type.startswith(prefix)), None)
        if changes_of is None:
            return out
        changed = policy(changes_of)
        out["changes"] = [
            c for c in out["changes"] if not (isinstance(c, Mapping) and changed.hides(str(c.get("field", ""))))
        ]
    return out


#: A lead's phones and emails (its snapshot, a conversion's, changes to them) follow the customers'
#: field rules (a lead is a customer to be), the contact a conversion makes the contacts' rules.
_LEAD_REACH: Final = ("phones", "emails")


def _without_hidden(values: Mapping[str, Any], policy: FieldPolicy) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not (k in _LEAD_REACH and policy.hides(k))}


def _redact_lead_event(out: dict[str, Any], policy: Callable[[str], FieldPolicy]) -> dict[str, Any]:
    customers = policy("customers")
    if isinstance(out.get("lead"), Mapping):
        out["lead"] = _without_hidden(out["lead"], customers)
    conversion = out.get("conversion")
    if isinstance(conversion, Mapping):
        conversion = _without_hidden(conversion, customers)
        if isinstance(conversion.get("contact"), Mapping):
            conversion["contact"] = _without_hidden(conversion["contact"], policy("contacts"))
        out["conversion"] = conversion
    if isinstance(out.get("changes"), list):
        out["changes"] = [
            c
            for c in out["changes"]
            if not (isinstance(c, Mapping) and c.get("field") in _LEAD_REACH and customers.hides(str(c["field"])))
        ]
    return out


UNRESTRICTED: Final = FieldPolicy(module="*")
