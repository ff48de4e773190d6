"""The services' refusals in the user's language.

The services write problem+json (RFC 9457) in English: a ``type`` (``urn:crm:problem:<code>``), a
title and a detail. The console shows a refusal as its own text for the problem's code
(``core.problem.<code>``), or, where the document's extension members say exactly what was
refused (a department that still has users, a customer locked with a reason, a claim in the
cool-down), as a specific text filled with those members (``core.problem.reason.<name>``). A code
the console does not know is shown as the service wrote it. In English the service's detail
follows the console's text, since it names the record; in Chinese it would be the only English
on the page, so it is left out there.

Field errors (``errors[]``) carry a ``code`` and ``params`` where the service knows the kind of
error (``missing``, ``string_too_long`` with ``max_length``…): those reasons are the console's own
text in the user's language (``core.field.<code>``); the others stay the service's words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crm_console.i18n import Catalogue
from crm_console.upstreams import UpstreamProblem

PREFIX = "urn:crm:problem:"

# Every code the platform and the services use (crm_platform.errors and the services' own errors).
KNOWN_CODES = frozenset(
    {
        "bad-request",
        "validation-failed",
        "unauthorized",
        "forbidden",
        "permission-denied",
        "not-found",
        "conflict",
        "duplicate",
        "precondition-failed",
        "locked",
        "precondition-required",
        "unavailable",
        "idempotency-key-reused",
        "too-many-attempts",
        "sign-in-external",
        "stage-requirements-not-met",
        "sku-taken",
        "product-inactive",
        "no-price",
        "quotation-status",
        "contract-status",
        "ticket-status",
    }
)


@dataclass(frozen=True)
class Reason:
    """A refusal recognised by its code and extension members; ``when`` narrows it further."""

    name: str
    code: str
    members: frozenset[str]
    when: Callable[[dict[str, Any]], bool] = lambda extensions: True


REASONS = (
    Reason("department_not_empty", "conflict", frozenset({"sub_departments", "users"})),
    Reason("customer_locked", "locked", frozenset({"locked_by", "lock_reason"})),
    Reason("in_recycle_bin", "conflict", frozenset({"status"}), lambda x: x.get("status") == "deleted"),
    Reason("merged", "conflict", frozenset({"merged_into"})),
    Reason("owner_limit", "conflict", frozenset({"held", "limit"})),
    Reason("claim_cooldown", "conflict", frozenset({"cooldown_days", "claimable_from"})),
    Reason("claim_department_only", "forbidden", frozenset({"claim_scope", "department_path"})),
    Reason("customer_exists", "duplicate", frozenset({"existing"})),
    Reason("stages_in_use", "conflict", frozenset({"stages_in_use"})),
    # Before wrong_status: the payments' plan-required refusal carries current_status too.
    Reason(
        "contract_plan_required",
        "conflict",
        frozenset({"reason", "action"}),
        lambda x: x.get("reason") == "plan-required",
    ),
    Reason("wrong_status", "conflict", frozenset({"current_status"})),
    Reason("quotation_expired", "quotation-status", frozenset({"reason"}), lambda x: x.get("reason") == "expired"),
    Reason(
        "quotation_approval_required",
        "quotation-status",
        frozenset({"reason"}),
        lambda x: x.get("reason") == "approval-required",
    ),
    Reason(
        "quotation_approval_not_needed",
        "quotation-status",
        frozenset({"reason"}),
        lambda x: x.get("reason") == "approval-not-needed",
    ),
)


def code_of(problem: UpstreamProblem) -> str:
    return problem.type.removeprefix(PREFIX) if problem.type.startswith(PREFIX) else ""


def _specific_reason(problem: UpstreamProblem, language: str, catalogue: Catalogue) -> str | None:
    code = code_of(problem)
    for reason in REASONS:
        if reason.code == code and reason.members <= problem.extensions.keys() and reason.when(problem.extensions):
            values = {k: "" if v is None else v for k, v in problem.extensions.items()}
            return catalogue.translate(language, f"core.problem.reason.{reason.name}", **values)
    return None


def explain(problem: UpstreamProblem, language: str, catalogue: Catalogue) -> str:
    """What the page says about ``problem`` in ``language``."""
    code = code_of(problem)
    service_text = problem.detail or problem.title
    specific = _specific_reason(problem, language, catalogue)
    if specific is not None:
        return specific
    if code not in KNOWN_CODES:
        return service_text
    text = catalogue.translate(language, f"core.problem.{code}")
    if language == "en" and problem.detail:
        return f"{text} {problem.detail}"
    return text


def specifics(problem: UpstreamProblem, language: str, catalogue: Catalogue) -> str:
    """What ``problem`` says beyond its kind, for a page whose own heading and text already say
    the kind (the 403 page: "not allowed"): the specific reason, or in English the service's
    detail, or nothing (the code's general text would only repeat the page's)."""
    specific = _specific_reason(problem, language, catalogue)
    if specific is not None:
        return specific
    if code_of(problem) not in KNOWN_CODES:
        return problem.detail or ""
    return (problem.detail or "") if language == "en" else ""


def localise_field_errors(problem: UpstreamProblem, language: str, catalogue: Catalogue) -> None:
    """Each field error's reason in ``language`` where its ``code`` is one the console knows
    (``core.field.<code>``, with the error's ``params``: ``max_length``…); else the service's words."""
    for error in problem.errors:
        code = error.get("code")
        key = f"core.field.{code}"
        if not isinstance(code, str) or not (catalogue.messages.get(language, {}).get(key)):
            continue
        given = error.get("params")
        params: dict[str, Any] = given if isinstance(given, dict) else {}
        try:
            error["reason"] = catalogue.translate(language, key).format(**params)
        except (KeyError, IndexError, ValueError):
            continue  # a text naming a limit the service did not send: its own words then
