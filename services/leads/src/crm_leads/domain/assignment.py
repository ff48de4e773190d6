"""Assignment rules of the lead pool and the pool's claim scope (rules only, no I/O).

A rule has a scope (a department and those below it), a condition on the lead (region,
industry, source or campaign in a list of values, or any lead), a method (``round_robin`` over
its users, or ``least_loaded``) and a capacity per user (most open leads a user may own). Rules
are tried in ascending ``position``; the first that matches a pool lead decides who gets it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from crm_leads.domain.model import LeadStatus
from crm_platform.auth import Principal
from crm_platform.contracts import leads as ev

Document = dict[str, Any]
MODULE = "leads"

#: A lead a user is working: what the capacity counts.
OPEN_STATUSES = (LeadStatus.new.value, LeadStatus.contacted.value, LeadStatus.qualified.value)
ConditionField = Literal["any", "region", "industry", "source", "campaign_id"]
Method = Literal["round_robin", "least_loaded"]
ClaimScope = Literal["department", "company"]
EDITABLE = ("name", "position", "department_id", "condition", "method", "users", "capacity", "enabled")


def _strip(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_strip)]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: ConditionField = "any"
    values: list[Text] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _values_fit_the_field(self) -> Condition:
        if self.field == "any" and self.values:
            raise ValueError("values: must be empty when field is 'any'")
        if self.field != "any" and not self.values:
            raise ValueError(f"values: at least one {self.field} is needed")
        self.values = list(dict.fromkeys(self.values))
        return self


class RuleIn(BaseModel):
    """A new assignment rule. ``department_id``: its scope (that department and those below it)."""

    model_config = ConfigDict(extra="forbid")

    name: Text
    position: int = Field(default=100, ge=0, le=1_000_000)
    department_id: Text
    condition: Condition = Field(default_factory=Condition)
    method: Method = "round_robin"
    users: list[Text] = Field(min_length=1, max_length=100)
    capacity: int | None = Field(
        default=None, ge=1, le=100_000, description="Most open leads per user; none: no limit."
    )
    enabled: bool = True


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    department_id: Text | None = None
    condition: Condition | None = None
    method: Method | None = None
    users: list[Text] | None = Field(default=None, min_length=1, max_length=100)
    capacity: int | None = Field(default=None, ge=1, le=100_000)
    enabled: bool | None = None


class PoolSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claim_scope: ClaimScope


# --- the pool per department ------------------------------------------------------------------


def within(path: str | None, scope_path: str | None) -> bool:
    """True if department ``path`` is ``scope_path`` or below it."""
    if not path or not scope_path:
        return False
    path, scope_path = path.rstrip("/"), scope_path.rstrip("/")
    return path == scope_path or path.startswith(scope_path + "/")


def pool_visible(principal: Principal, doc: Document, company_wide: bool) -> bool:
    """May ``principal`` see (and claim) the pool lead ``doc``? Its department's members, whoever's
    ``leads`` scope reaches its department, and with a company-wide pool everyone with a leads scope."""
    if principal.scope(MODULE) is None:
        return False
    if company_wide or principal.reaches_all(MODULE):
        return True
    path = doc.get("department_path")
    mine = (principal.department_path or "").rstrip("/")
    if path and mine and path.rstrip("/") == mine:
        return True
    return principal.reaches_path(path, MODULE)


def pool_branch(principal: Principal) -> Document | None:
    """The list branch of the department pool a principal belongs to (None: they belong to none)."""
    mine = (principal.department_path or "").rstrip("/")
    return {"in_pool": True, "department_path": mine} if mine else None


# --- rules --------------------------------------------------------------------------------------


def matches(rule: Document, lead: Document) -> bool:
    """Does the enabled rule ``rule`` apply to the pool lead ``lead``?"""
    if rule.get("deleted") or not rule.get("enabled", True):
        return False
    if not within(lead.get("department_path"), rule.get("department_path")):
        return False
    condition = rule.get("condition") or {}
    field = condition.get("field", "any")
    if field == "any":
        return True
    return lead.get(field) in set(condition.get("values") or [])


def first_match(rules: Sequence[Document], lead: Document) -> Document | None:
    """The rule that decides for ``lead``: the first matching one in ``position`` order."""
    ordered = sorted(rules, key=lambda r: (int(r.get("position", 0)), r.get("created_ms", 0), r["_id"]))
    return next((r for r in ordered if matches(r, lead)), None)


def round_robin_order(users: Sequence[str], ticket: int) -> list[str]:
    """The users in the order a round-robin turn ``ticket`` tries them: the turn's user first,
    then the next ones (skipping a user who is full or gone gives the lead to the next in line)."""
    if not users:
        return []
    start = ticket % len(users)
    return [*users[start:], *users[:start]]


def least_loaded_order(users: Sequence[str], loads: Mapping[str, int]) -> list[str]:
    """The users from the fewest open leads to the most; ties in the rule's order."""
    return sorted(users, key=lambda u: (loads.get(u, 0), users.index(u)))


def has_room(open_leads: int, capacity: int | None) -> bool:
    return capacity is None or open_leads < capacity


def new_rule(rule_id: str, data: RuleIn, department_path: str, principal: Principal, now: datetime) -> Document:
    values = data.model_dump(mode="json")
    values["users"] = list(dict.fromkeys(values["users"]))
    return {
        "_id": rule_id,
        **values,
        "department_path": department_path,
        "deleted": False,
        "live": True,
        "created_at": now,
        "created_ms": int(now.timestamp() * 1000),
        "created_by": principal.user_id,
        "updated_at": now,
    }


def apply_values(doc: Document, values: Document) -> list[ev.FieldChange]:
    changes: list[ev.FieldChange] = []
    for name in (*EDITABLE, "department_path"):
        if name not in values:
            continue
        new = values[name]
        if name == "users":
            new = list(dict.fromkeys(new))
        old = doc.get(name)
        if old != new:
            changes.append(ev.FieldChange(field=name, old=old, new=new))
            doc[name] = new
    return changes


def snapshot(doc: Document) -> ev.AssignmentRuleSnapshot:
    return ev.AssignmentRuleSnapshot(
        rule_id=doc["_id"],
        name=doc["name"],
        position=int(doc["position"]),
        department_id=doc["department_id"],
        department_path=doc["department_path"],
        condition=ev.AssignmentCondition(**doc["condition"]),
        method=doc["method"],
        users=list(doc["users"]),
        capacity=doc.get("capacity"),
        enabled=bool(doc.get("enabled", True)),
        deleted=bool(doc.get("deleted")),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
    )
