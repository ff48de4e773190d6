"""The signed-in person's field rules (field-level permissions), so forms can show a field their
roles make read-only as text and leave out a hidden one, instead of offering an input the
service would refuse.

The session carries the person's role ids; each role's definition, with its ``fields`` rules per
module, is the directory's ``GET /v1/roles/{id}`` (``users:view``, which every person's role
grants). Rules combine as the services combine them (:meth:`FieldPolicy.combine`: the widest
access over the roles wins). One request per role per page (usually one role), read in parallel.
A definition the console cannot read leaves the form as it was without rules: the services still
enforce them (a 403 naming the field, shown at the field).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api
from crm_platform.fieldaccess import FieldPolicy

CUSTOM = "custom."
RoleRules = Sequence[Mapping[str, Mapping[str, str]]]  # per role: module -> field -> hidden | read


@dataclass(frozen=True)
class FormRules:
    """What a form of one module does with each field: ``hidden`` ones are left out, ``read_only``
    ones shown as text. Names as the rules spell them: ``amount``, ``custom.<key>``."""

    hidden: frozenset[str] = field(default_factory=frozenset)
    read_only: frozenset[str] = field(default_factory=frozenset)

    def custom_hidden(self) -> frozenset[str]:
        return frozenset(n[len(CUSTOM) :] for n in self.hidden if n.startswith(CUSTOM))

    def custom_read_only(self) -> frozenset[str]:
        return frozenset(n[len(CUSTOM) :] for n in self.read_only if n.startswith(CUSTOM))


NO_RULES = FormRules()


async def role_rules(client: Api) -> RoleRules | None:
    """Each of the person's roles' field rules; None when a definition cannot be read."""
    user = client.session.user
    if user is None:
        return []

    async def one(role_id: str) -> Mapping[str, Mapping[str, str]]:
        found: dict[str, Any] = await client.get("directory", f"/v1/roles/{role_id}")
        return dict(found.get("fields") or {})

    try:
        return list(await asyncio.gather(*(one(r) for r in user.roles)))
    except (UpstreamProblem, UpstreamUnavailable):
        return None


def for_module(rules: RoleRules | None, module: str) -> FormRules:
    if not rules:
        return NO_RULES
    policy = FieldPolicy.combine(module, [r.get(module) or {} for r in rules])
    return FormRules(hidden=policy.hidden, read_only=policy.read_only)


async def form_rules(client: Api, module: str) -> FormRules:
    return for_module(await role_rules(client), module)
