"""The recycling maths of leads nobody works. Pure, no I/O.

A lead's clock is what the pool knows of it from ``crm.leads.v1``: owner, department, status,
its version, and when it was last *worked*: entered, claimed or assigned (an owner change), moved
to another status, or followed up (``last_followup_at``). A rule's lead settings say: an open
lead (new, contacted, qualified) that its owner has not worked for N days (``lead_no_work_days``)
goes back to the lead pool, and the owner is warned K days ahead (``lead_warn_days``, default 0).
The rule that applies is the one of the lead's department, as for customers (the most specific
path wins, else the global rule); a rule without ``lead_no_work_days`` recycles no lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crm_pool.domain.recycling import NEVER, NEVER_MS, applicable_rule, epoch_ms, ms

Document = dict[str, Any]

#: The statuses a lead is recycled from; disqualified, converting and converted leads never are.
OPEN = ("new", "contacted", "qualified")


def recyclable(clock: Document) -> bool:
    """Owned, open, not deleted: a lead whose clock runs."""
    return (
        bool(clock.get("owner_id"))
        and not clock.get("in_pool")
        and not clock.get("deleted")
        and clock.get("status") in OPEN
        and clock.get("worked_at") is not None
    )


def work_ms(clock: Document) -> int:
    """The indexed, rule-independent base of the sweep: when the lead was last worked (NEVER when its clock
    does not run). Any rule's due set is then one range: ``work_ms <= moment - (N - K) days``."""
    return epoch_ms(clock["worked_at"]) if recyclable(clock) else NEVER_MS


@dataclass(frozen=True)
class LeadDue:
    deadline: datetime
    warn_at: datetime
    rule_id: str | None

    @property
    def never(self) -> bool:
        return self.deadline >= NEVER


NOT_DUE = LeadDue(NEVER, NEVER, None)


def lead_rule(rules: list[Document], department_path: str | None) -> Document | None:
    """The rule governing leads of ``department_path``, if it recycles leads."""
    rule = applicable_rule(rules, department_path)
    if rule is None or not rule.get("enabled", True) or not rule.get("lead_no_work_days"):
        return None
    return rule


def lead_due(clock: Document, rules: list[Document]) -> LeadDue:
    """When the lead returns to the lead pool under the applicable rule (NEVER if it does not)."""
    if not recyclable(clock):
        return NOT_DUE
    rule = lead_rule(rules, clock.get("department_path"))
    if rule is None:
        return NOT_DUE
    deadline = ms(clock["worked_at"]) + timedelta(days=int(rule["lead_no_work_days"]))
    warn_at = deadline - timedelta(days=int(rule.get("lead_warn_days") or 0))
    return LeadDue(deadline, warn_at, rule["rule_id"])


def lead_threshold(rule: Document, at: datetime) -> int | None:
    """The ``work_ms`` at or below which a lead under ``rule`` is due for its warning at ``at``."""
    if rule.get("deleted") or not rule.get("enabled", True) or not rule.get("lead_no_work_days"):
        return None
    warn = timedelta(days=int(rule.get("lead_warn_days") or 0))
    return epoch_ms(at - timedelta(days=int(rule["lead_no_work_days"])) + warn)


def recycle_at(result: LeadDue, now: datetime, warn_days: int) -> datetime:
    """When a lead warned ``now`` goes: never before its owner has had K days' warning."""
    return max(result.deadline, ms(now) + timedelta(days=warn_days))


def decision_key(result: LeadDue, version: int) -> str:
    """One decision per deadline and lead version: a lead changed in a way that is not work (an edit)
    voids a decision at the leads service, and is decided again at its new version."""
    return f"{result.deadline.isoformat()}@v{version}"


def reason_text(rule: Document) -> str:
    return f"not worked by the owner for {rule.get('lead_no_work_days')} days (rule {rule.get('name')})"
