"""Stage entry requirements: which stages a move must satisfy, and what is missing.

The rule (decided here, documented in the README):

* A **forward** move checks the requirements of every open stage it passes over
  and of the target itself: jumping from 需求确认 straight to 谈判 still needs the
  requirements document that 方案报价 asks for. Creating an opportunity in a later
  stage is a forward move from before the first stage.
* **Winning** is a forward move to the won stage: every open stage after the
  current one is passed over, so a deal cannot be signed without, say, a quotation.
* A **backward** move (to an earlier open stage) and **losing** check nothing:
  the deal regressed or died, and refusing to record that would leave the
  pipeline wrong.
* **Reopening** a won or lost deal is an explicit decision with a reason and
  checks nothing either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from crm_pipeline.domain import pipelines as pl
from crm_platform.errors import FieldError, ValidationFailed

Document = dict[str, Any]


@dataclass(frozen=True)
class MissingItem:
    stage_id: str
    stage_name: str
    kind: Literal["field", "document", "approval"]
    item: str
    reason: str

    def field_error(self) -> FieldError:
        field = {"field": self.item, "document": "documents", "approval": "approvals"}[self.kind]
        return FieldError(field=field, reason=self.reason)

    def as_dict(self) -> dict[str, str]:
        return {
            "stage_id": self.stage_id,
            "stage_name": self.stage_name,
            "kind": self.kind,
            "item": self.item,
            "reason": self.reason,
        }


class RequirementsNotMet(ValidationFailed):
    code, title = "stage-requirements-not-met", "The stage's entry requirements are not met"

    @classmethod
    def of(cls, missing: list[MissingItem], target: Document) -> RequirementsNotMet:
        names = ", ".join(dict.fromkeys(f"{m.kind} {m.item}" for m in missing))
        return cls(
            f"Cannot enter {target['name']} ({target['stage_id']}): missing {names}.",
            errors=[m.field_error() for m in missing],
            extra={"missing": [m.as_dict() for m in missing], "stage_id": target["stage_id"]},
        )


def path(pipeline: Document, from_stage_id: str | None, target: Document) -> tuple[list[Document], list[str]]:
    """(stages whose requirements apply, ids of open stages passed over) for a move to ``target``."""
    if target["kind"] == "lost":
        return [], []
    current = pl.stage_of(pipeline, from_stage_id)
    # A stage that no longer exists (or none, at creation) counts as "before the first stage".
    current_position = current["position"] if current is not None and current["kind"] == "open" else -1
    if target["kind"] == "open" and current is not None and target["position"] <= current_position:
        return [], []  # backward (or no move)
    limit = target["position"] if target["kind"] == "open" else float("inf")
    passed = [s for s in pl.open_stages(pipeline) if current_position < s["position"] < limit]
    return [*passed, target], [s["stage_id"] for s in passed]


def is_filled(opportunity: Document, field: str) -> bool:
    if field.startswith("custom."):
        value = (opportunity.get("custom") or {}).get(field.removeprefix("custom."))
        return value is not None and value != "" and value != []
    stored = {"amount": "amount_minor", "quotation_amount": "quotation_minor"}.get(field, field)
    value = opportunity.get(stored)
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):
        return bool(value)
    return value is not None


def approval_of(opportunity: Document, stage_id: str) -> Document | None:
    return next((a for a in opportunity.get("approvals") or [] if a["stage_id"] == stage_id), None)


def missing(opportunity: Document, stages: list[Document]) -> list[MissingItem]:
    attached = {d["kind"] for d in opportunity.get("documents") or []}
    out: list[MissingItem] = []
    for stage in stages:
        req = stage.get("requirements") or {}
        label = stage["name"] + (f" ({stage['name_en']})" if stage.get("name_en") else "")
        for field in req.get("fields") or []:
            if not is_filled(opportunity, field):
                out.append(
                    MissingItem(
                        stage["stage_id"], stage["name"], "field", field, f"{label} requires {field} to be filled"
                    )
                )
        for kind in req.get("documents") or []:
            if kind not in attached:
                out.append(
                    MissingItem(
                        stage["stage_id"],
                        stage["name"],
                        "document",
                        kind,
                        f"{label} requires a '{kind}' document attached",
                    )
                )
        if req.get("approval"):
            approval = approval_of(opportunity, stage["stage_id"])
            if approval is None or approval["status"] != "approved":
                state = (
                    "not yet requested"
                    if approval is None
                    else (
                        "waiting for a manager"
                        if approval["status"] == "pending"
                        else f"rejected by {approval.get('decided_by')}"
                    )
                )
                out.append(
                    MissingItem(
                        stage["stage_id"],
                        stage["name"],
                        "approval",
                        stage["stage_id"],
                        f"{label} requires a manager's approval ({state})",
                    )
                )
    return out


def check(opportunity: Document, pipeline: Document, from_stage_id: str | None, target: Document) -> list[str]:
    """Raise :class:`RequirementsNotMet` listing every missing item; return the skipped stage ids."""
    stages, skipped = path(pipeline, from_stage_id, target)
    items = missing(opportunity, stages)
    if items:
        raise RequirementsNotMet.of(items, target)
    return skipped
