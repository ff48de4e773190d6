"""Events of the public-pool service, on ``crm.pool.v1``.

Rule events are keyed by the rule id and carry the full :class:`PoolRuleSnapshot`
(consumers keep a read copy applied by ``aggregateversion``). ``claim_rules_changed``
carries only the claim part, for the customers service which enforces it.
Scheduler events are keyed by the customer id: ``recycle_warning`` tells the owner
K days ahead, ``release_decided`` asks the customers service (the only writer of
ownership) to release the customer, with the basis the decision was made on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from crm_platform.events import define

TOPIC = "crm.pool.v1"
SYSTEM_ACTOR = "system:pool"

ClaimScope = Literal["department", "company"]
RecycleReason = Literal["no_interaction", "no_won_opportunity"]


class ClaimRules(BaseModel):
    """Who may claim what from the pool, for one scope (global, or a department subtree)."""

    rule_id: str
    department_path: str | None = Field(default=None, description="None: the global rule.")
    cooldown_days: int = Field(ge=0, description="Days before the previous owner may claim the customer back.")
    claim_scope: ClaimScope = Field(
        description="'department': only customers within the rep's department; 'company': all."
    )
    max_held: int | None = Field(
        default=None,
        ge=1,
        description="How many active customers one owner in this scope may hold; None: the limit of the next "
        "rule up (else the customers service's default). Optional: added without a new schema version.",
    )
    deleted: bool = False


class PoolRuleSnapshot(BaseModel):
    rule_id: str
    name: str
    department_path: str | None = Field(default=None, description="None: the global rule; else a department subtree.")
    enabled: bool = True
    no_interaction_days: int | None = Field(
        default=None, description="N: recycle after N days without an interaction by the owner."
    )
    no_won_days: int | None = Field(
        default=None, description="M: recycle after M days without a won opportunity since claimed/assigned."
    )
    warn_days: int = Field(ge=0, description="K: warn the owner K days before.")
    exempt_stage_id: str | None = Field(
        default=None, description="An open opportunity at or past this stage exempts the customer."
    )
    exempt_tags: list[str] = Field(default_factory=list)
    cooldown_days: int = 0
    claim_scope: ClaimScope = "department"
    max_held: int | None = Field(
        default=None, description="The holding limit per owner in this scope (None: inherited)."
    )
    deleted: bool = False
    updated_at: datetime
    updated_by: str
    # Added without a new schema version (additive): recycling of leads nobody works (unset: not recycled).
    lead_no_work_days: int | None = Field(
        default=None,
        description="Recycle an open lead its owner has not worked (claimed, moved, followed up) for so many days.",
    )
    lead_warn_days: int | None = Field(default=None, description="Warn the lead's owner so many days before (None: 0).")


class FieldChange(BaseModel):
    field: str
    old: object = None
    new: object = None


class RulesChanged(BaseModel):
    rule: PoolRuleSnapshot
    action: Literal["created", "changed", "deleted"]
    changes: list[FieldChange] = Field(default_factory=list)


class ClaimRulesChanged(BaseModel):
    claim_rules: ClaimRules


class RecycleBasis(BaseModel):
    """What the decision was made on: the customers service releases only if nothing changed since."""

    owner_since: datetime
    last_interaction_at: datetime | None = Field(default=None, description="The last follow-up (any author) known.")


class RecycleWarning(BaseModel):
    customer_id: str
    customer_name: str | None = None
    owner_id: str
    recycle_at: datetime = Field(description="When the customer will return to the pool unless someone acts.")
    reason: RecycleReason
    rule_id: str
    days_left: int


class ReleaseDecided(BaseModel):
    customer_id: str
    owner_id: str = Field(description="The owner expected; another owner means the decision is void.")
    basis: RecycleBasis
    reason: RecycleReason
    reason_text: str
    rule_id: str
    deadline: datetime


class LeadRecycleWarning(BaseModel):
    lead_id: str
    company_name: str | None = None
    owner_id: str
    recycle_at: datetime = Field(description="When the lead will return to the lead pool unless someone works it.")
    rule_id: str
    days_left: int


class LeadReleaseDecided(BaseModel):
    lead_id: str
    owner_id: str = Field(description="The owner expected; another owner means the decision is void.")
    lead_version: int = Field(description="The lead's version the decision was made on: a lead changed since stays.")
    last_worked_at: datetime = Field(description="When the lead was last worked (claimed, moved, followed up).")
    reason_text: str
    rule_id: str
    deadline: datetime


RULES_CHANGED = define(
    "crm.pool.rules_changed",
    RulesChanged,
    TOPIC,
    description="A recycling rule (global or per department) was created, changed or deleted (subject: rule id).",
)
CLAIM_RULES_CHANGED = define(
    "crm.pool.claim_rules_changed",
    ClaimRulesChanged,
    TOPIC,
    description="The claim rules of a scope changed: cool-down, which pool reps may claim from, and how many "
    "customers one owner may hold (subject: rule id).",
)
RECYCLE_WARNING = define(
    "crm.pool.recycle_warning",
    RecycleWarning,
    TOPIC,
    description="The owner is warned that the customer will return to the pool at recycle_at (subject: customer id).",
)
RELEASE_DECIDED = define(
    "crm.pool.release_decided",
    ReleaseDecided,
    TOPIC,
    description="The pool decided the customer is due for the pool; the customers service applies it only if the "
    "owner and the follow-ups are unchanged since the basis (subject: customer id).",
)
LEAD_RECYCLE_WARNING = define(
    "crm.pool.lead_recycle_warning",
    LeadRecycleWarning,
    TOPIC,
    description="The owner is warned that the lead will return to the lead pool at recycle_at (subject: lead id).",
)
LEAD_RELEASE_DECIDED = define(
    "crm.pool.lead_release_decided",
    LeadReleaseDecided,
    TOPIC,
    description="The pool decided the lead nobody worked is due for the lead pool; the leads service applies it "
    "only if the lead is still at lead_version (subject: lead id).",
)
