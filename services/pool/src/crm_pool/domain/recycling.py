"""The recycling rule maths: which rule applies to a customer and when it falls due. Pure, no I/O.

A customer's *clock* is what the pool knows of it from events (owner, since when,
follow-ups, won deals, open opportunities, tags, department). A rule gives, per
department subtree (the most specific path wins, else the global rule), N days
without an interaction by the owner and/or M days without a won opportunity since
the owner got the customer; the earliest of the two is the deadline, K days before
it the owner is warned. Exempt customers, and those without an owner, have none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

Document = dict[str, Any]

#: "No deadline": a real, sortable datetime (the store mishandles null in range queries and sorts).
NEVER = datetime(9999, 1, 1, tzinfo=UTC)

#: The data-scope module the pool honours (see the root README, "Who may do what").
POOL = "pool"


def path_within(path: str | None, scope: str | None) -> bool:
    """True if ``path`` is the department ``scope`` or below it (None scope: the whole company)."""
    if scope is None:
        return True
    if not path:
        return False
    return path == scope or path.startswith(scope.rstrip("/") + "/")


def applicable_rule(rules: Iterable[Document], department_path: str | None) -> Document | None:
    """The live rule whose department path is the longest prefix of ``department_path``; else the global one."""
    best: Document | None = None
    best_depth = -1
    for rule in rules:
        if rule.get("deleted"):
            continue
        scope = rule.get("department_path")
        if not path_within(department_path, scope):
            continue
        depth = 0 if scope is None else len(scope.rstrip("/").split("/"))
        if depth > best_depth:
            best, best_depth = rule, depth
    return best


def ms(value: datetime) -> datetime:
    """Millisecond precision, as the store keeps it, so that compared values are equal after a round trip."""
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def last_owner_interaction(clock: Document) -> datetime | None:
    owner = clock.get("owner_id")
    times = [ms(i["at"]) for i in clock.get("interactions_by_author") or [] if i["author_id"] == owner]
    return max(times) if times else None


def last_interaction(clock: Document) -> datetime | None:
    times = [ms(i["at"]) for i in clock.get("interactions_by_author") or []]
    return max(times) if times else None


@dataclass(frozen=True)
class Due:
    """When a customer falls due under a rule, and why; ``deadline`` is NEVER when it does not."""

    deadline: datetime
    warn_at: datetime
    rule_id: str | None
    reason: str | None  # "no_interaction" | "no_won_opportunity"
    exempt: str | None = None  # why it is exempt, when it is
    last_interaction_at: datetime | None = None
    last_won_at: datetime | None = None

    @property
    def never(self) -> bool:
        return self.deadline >= NEVER


NOT_DUE = Due(NEVER, NEVER, None, None)


@dataclass(frozen=True)
class StagePlace:
    """Where a stage stands: its pipeline and its position there (from ``crm.pipeline.configured``)."""

    pipeline_id: str
    position: int


def exemption(clock: Document, rule: Document, stages: Mapping[str, StagePlace]) -> str | None:
    tags = set(clock.get("tags") or [])
    hit = sorted(tags.intersection(rule.get("exempt_tags") or []))
    if hit:
        return f"tag {hit[0]}"
    stage_id = rule.get("exempt_stage_id")
    if stage_id:
        threshold = stages.get(stage_id)
        for opp in clock.get("open_opportunities") or []:
            place = stages.get(opp.get("stage_id") or "")
            # "At or past" the rule's stage: only in that stage's pipeline (positions of different
            # pipelines do not compare: stage 3 of another pipeline is not past stage 2 of this one).
            if opp.get("stage_id") == stage_id or (
                threshold is not None
                and place is not None
                and place.pipeline_id == threshold.pipeline_id
                and place.position >= threshold.position
            ):
                return f"open opportunity {opp['opportunity_id']} at stage {opp.get('stage_name') or opp['stage_id']}"
    return None


def due(clock: Document, rules: Iterable[Document], stage_positions: Mapping[str, StagePlace]) -> Due:
    """When ``clock``'s customer returns to the pool under the applicable rule (NEVER if it does not)."""
    owner, since = clock.get("owner_id"), clock.get("owner_since")
    if not owner or since is None or clock.get("in_pool") or clock.get("status", "active") != "active":
        return NOT_DUE
    rule = applicable_rule(rules, clock.get("department_path"))
    if rule is None or not rule.get("enabled", True):
        return NOT_DUE
    since = ms(since)
    last_touch = last_owner_interaction(clock)
    won = clock.get("last_won_at")
    won = ms(won) if won is not None else None
    exempt = exemption(clock, rule, stage_positions)
    if exempt:
        return Due(NEVER, NEVER, rule["rule_id"], None, exempt, last_touch, won)
    candidates: list[tuple[datetime, str]] = []
    if rule.get("no_interaction_days"):
        base = max(since, last_touch) if last_touch else since
        candidates.append((base + timedelta(days=rule["no_interaction_days"]), "no_interaction"))
    if rule.get("no_won_days"):
        base = max(since, won) if won else since
        candidates.append((base + timedelta(days=rule["no_won_days"]), "no_won_opportunity"))
    if not candidates:
        return Due(NEVER, NEVER, rule["rule_id"], None, None, last_touch, won)
    deadline, reason = min(candidates)
    warn_at = deadline - timedelta(days=int(rule.get("warn_days") or 0))
    return Due(deadline, warn_at, rule["rule_id"], reason, None, last_touch, won)


def reason_text(reason: str | None, rule: Document | None) -> str:
    rule = rule or {}
    if reason == "no_interaction":
        return f"no follow-up by the owner for {rule.get('no_interaction_days')} days (rule {rule.get('name')})"
    if reason == "no_won_opportunity":
        return (
            f"no won opportunity for {rule.get('no_won_days')} days since claimed or assigned (rule {rule.get('name')})"
        )
    return ""


def days_left(deadline: datetime, now: datetime) -> int:
    """Whole days remaining (rounded up: 'due in 1 day' until it is due)."""
    seconds = (deadline - now).total_seconds()
    return max(0, int(-(-seconds // 86400)))


def effective_recycle_at(clock: Document, result: Due, now: datetime, warn_days: int) -> datetime:
    """When the customer would really go: never before its owner has had K days' warning."""
    if result.never:
        return NEVER
    if clock.get("warned_for") == result.deadline.isoformat() and clock.get("recycle_at") is not None:
        return ms(clock["recycle_at"])
    return max(result.deadline, max(now, result.warn_at) + timedelta(days=warn_days))


def schedule(clock: Document, result: Due) -> Document:
    """Store the due dates on the clock, and what the scheduler still has to do for them.

    ``warn_due``/``release_due`` are the indexed fields the scheduler's range queries read:
    the moment a warning / a decision becomes due, or NEVER when there is nothing to do.
    The owner is always warned first (once per deadline); the release is then due at the
    ``recycle_at`` the warning announced, so nobody loses a customer without notice.
    """
    clock["deadline"] = result.deadline
    clock["warn_at"] = result.warn_at
    clock["rule_id"] = result.rule_id
    clock["reason"] = result.reason
    clock["exempt"] = result.exempt
    clock["last_owner_interaction_at"] = result.last_interaction_at
    clock["last_interaction_at"] = last_interaction(clock)
    key = result.deadline.isoformat()
    if result.never:
        clock["warn_due"], clock["release_due"] = NEVER, NEVER
    elif clock.get("warned_for") == key:
        clock["warn_due"] = NEVER
        clock["release_due"] = (
            NEVER if clock.get("decided_for") == key else (clock.get("recycle_at") or result.deadline)
        )
    else:
        clock["warn_due"], clock["release_due"] = result.warn_at, NEVER
    # The indexed integers the range queries use: on the embedded store an index range over
    # integers is several times faster than over dates (measured: 15 ms against 57 ms at 30k).
    clock["touch_ms"], clock["won_ms"] = bases(clock)
    clock["parked_until_ms"] = 0  # changed: the next run looks at it again
    return clock


NEVER_MS = 253370764800000  # epoch_ms(NEVER), 9999-01-01


def bases(clock: Document) -> tuple[int, int]:
    """The rule-independent starting points of the two clocks, as indexed integers.

    ``touch_ms``: since when the owner has not followed up (the later of owner_since and the
    owner's last interaction); ``won_ms``: since when the customer has had no won deal (the
    later of owner_since and the last won deal). NEVER for customers nobody owns. Any rule's
    due set is then two range queries — base <= moment - (N - K) days — so a rule change
    or a draft rule needs no per-customer recompute.
    """
    owner, since = clock.get("owner_id"), clock.get("owner_since")
    if not owner or since is None or clock.get("in_pool") or clock.get("status", "active") != "active":
        return NEVER_MS, NEVER_MS
    since = ms(since)
    touch = last_owner_interaction(clock)
    won = clock.get("last_won_at")
    return (
        epoch_ms(max(since, touch) if touch else since),
        epoch_ms(max(since, ms(won)) if won is not None else since),
    )


def thresholds(rule: Document, at: datetime) -> dict[str, int]:
    """The base fields at or below which a customer under ``rule`` is due for its warning at ``at``."""
    if rule.get("deleted") or not rule.get("enabled", True):
        return {}
    warn = timedelta(days=int(rule.get("warn_days") or 0))
    out: dict[str, int] = {}
    if rule.get("no_interaction_days"):
        out["touch_ms"] = epoch_ms(at - timedelta(days=rule["no_interaction_days"]) + warn)
    if rule.get("no_won_days"):
        out["won_ms"] = epoch_ms(at - timedelta(days=rule["no_won_days"]) + warn)
    return out


def epoch_ms(value: datetime) -> int:
    return int(ms(value).timestamp() * 1000)
