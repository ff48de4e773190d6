"""Pipelines (销售流程) and their stages (销售阶段): plain rules, no I/O.

A stage is identified by its ``stage_id`` for ever: opportunities reference it, so
renaming, reordering or adding stages never touches them. A stage's position is
its index in the pipeline's ``stages`` list.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from crm_pipeline.domain.model import PipelineIn, StageIn
from crm_platform.contracts.pipeline import FieldChange, PipelineSnapshot, StageData
from crm_platform.errors import FieldError, ValidationFailed

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_PIPELINE_ID = "default"


def _stage(
    stage_id: str,
    name: str,
    name_en: str,
    probability: int,
    kind: str = "open",
    fields: tuple[str, ...] = (),
    documents: tuple[str, ...] = (),
    approval: bool = False,
) -> Document:
    return {
        "stage_id": stage_id,
        "name": name,
        "name_en": name_en,
        "probability": probability,
        "kind": kind,
        "requirements": {"fields": list(fields), "documents": list(documents), "approval": approval},
    }


#: The stages the seeds name. A requirements document before leaving "needs confirmed"
#: (so: to enter "proposal"), a recorded quotation to be in "negotiation", and an amount to sign.
DEFAULT_STAGES: list[Document] = [
    _stage("initial_contact", "初步接触", "Initial contact", 10),
    _stage("needs_confirmed", "需求确认", "Needs confirmed", 20),
    _stage("proposal", "方案报价", "Proposal", 40, documents=("requirements",)),
    _stage("negotiation", "谈判", "Negotiation", 60, fields=("quotation_amount",)),
    _stage("won", "签约", "Contract signed", 100, kind="won", fields=("amount",)),
    _stage("lost", "输单", "Lost", 0, kind="lost"),
]


def default_pipeline(now: datetime) -> Document:
    return {
        "_id": DEFAULT_PIPELINE_ID,
        "name": "标准销售流程",
        "name_en": "Standard sales process",
        "is_default": True,
        "default_since": now,
        "stages": [dict(s) for s in DEFAULT_STAGES],
        "created_at": now,
        "created_by": "system:pipeline",
        "updated_at": now,
        "updated_by": "system:pipeline",
    }


def new_pipeline(data: PipelineIn, actor: str, now: datetime, pipeline_id: str | None = None) -> Document:
    return {
        "_id": pipeline_id or str(uuid.uuid4()),
        "name": data.name,
        "name_en": data.name_en,
        "is_default": False,
        "default_since": EPOCH,  # never null: the default is the newest is_default one
        "stages": build_stages(data.stages, []),
        "created_at": now,
        "created_by": actor,
        "updated_at": now,
        "updated_by": actor,
    }


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:30]
    return slug if slug and slug[0].isalpha() else ""


def build_stages(stages_in: list[StageIn], existing: list[Document]) -> list[Document]:
    """Validate a pipeline's stage list and give new stages their ids."""
    errors: list[FieldError] = []
    kinds = [s.kind for s in stages_in]
    if kinds.count("won") != 1:
        errors.append(FieldError(field="stages", reason="a pipeline has exactly one stage of kind 'won'"))
    if kinds.count("lost") != 1:
        errors.append(FieldError(field="stages", reason="a pipeline has exactly one stage of kind 'lost'"))
    if kinds.count("open") < 1:
        errors.append(FieldError(field="stages", reason="a pipeline needs at least one open stage"))
    names: set[str] = set()
    given_ids = [s.stage_id for s in stages_in if s.stage_id]
    taken = set(given_ids) | {s["stage_id"] for s in existing}
    seen_ids: set[str] = set()
    out: list[Document] = []
    for i, stage in enumerate(stages_in):
        where = f"stages[{i}]"
        if stage.name.casefold() in names:
            errors.append(FieldError(field=f"{where}.name", reason=f"two stages are named '{stage.name}'"))
        names.add(stage.name.casefold())
        if stage.stage_id:
            if stage.stage_id in seen_ids:
                errors.append(FieldError(field=f"{where}.stage_id", reason=f"'{stage.stage_id}' is used twice"))
            seen_ids.add(stage.stage_id)
        if stage.kind == "won" and stage.probability != 100:
            errors.append(FieldError(field=f"{where}.probability", reason="a won stage has probability 100"))
        if stage.kind == "lost" and stage.probability != 0:
            errors.append(FieldError(field=f"{where}.probability", reason="a lost stage has probability 0"))
        req = stage.requirements
        if stage.kind == "lost" and (req.fields or req.documents or req.approval):
            errors.append(
                FieldError(
                    field=f"{where}.requirements",
                    reason="losing a deal is always possible: a lost stage has no requirements",
                )
            )
        stage_id = stage.stage_id or _new_stage_id(stage, taken)
        taken.add(stage_id)
        out.append(
            {
                "stage_id": stage_id,
                "name": stage.name,
                "name_en": stage.name_en,
                "probability": stage.probability,
                "kind": stage.kind,
                "requirements": {
                    "fields": list(req.fields),
                    "documents": list(req.documents),
                    "approval": req.approval,
                },
            }
        )
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors[:5]), errors=errors)
    return out


def _new_stage_id(stage: StageIn, taken: set[str]) -> str:
    base = _slug(stage.name_en or "") or "stage"
    candidate = base if base not in taken and base != "stage" else f"{base}_{uuid.uuid4().hex[:6]}"
    while candidate in taken:
        candidate = f"{base}_{uuid.uuid4().hex[:6]}"
    return candidate


# --- reading a pipeline -------------------------------------------------------------------


def stages(pipeline: Document) -> list[Document]:
    return [{**s, "position": i} for i, s in enumerate(pipeline.get("stages") or [])]


def stage_of(pipeline: Document, stage_id: str | None) -> Document | None:
    return next((s for s in stages(pipeline) if s["stage_id"] == stage_id), None)


def open_stages(pipeline: Document) -> list[Document]:
    return [s for s in stages(pipeline) if s["kind"] == "open"]


def first_open_stage(pipeline: Document) -> Document:
    return open_stages(pipeline)[0]


def stage_of_kind(pipeline: Document, kind: str) -> Document:
    return next(s for s in stages(pipeline) if s["kind"] == kind)


def removed_stage_ids(old: Document, new_stages: list[Document]) -> list[str]:
    keep = {s["stage_id"] for s in new_stages}
    return [s["stage_id"] for s in old.get("stages") or [] if s["stage_id"] not in keep]


def changes(old: Document, new: Document) -> list[FieldChange]:
    out: list[FieldChange] = []
    for name in ("name", "name_en", "is_default"):
        if old.get(name) != new.get(name):
            out.append(FieldChange(field=name, old=old.get(name), new=new.get(name)))
    before = {s["stage_id"]: (i, s) for i, s in enumerate(old.get("stages") or [])}
    after = {s["stage_id"]: (i, s) for i, s in enumerate(new.get("stages") or [])}
    for stage_id, (i, stage) in after.items():
        if stage_id not in before:
            out.append(FieldChange(field=f"stages[{stage_id}]", old=None, new=stage))
            continue
        j, prior = before[stage_id]
        if i != j:
            out.append(FieldChange(field=f"stages[{stage_id}].position", old=j, new=i))
        for key in ("name", "name_en", "probability", "kind", "requirements"):
            if prior.get(key) != stage.get(key):
                out.append(FieldChange(field=f"stages[{stage_id}].{key}", old=prior.get(key), new=stage.get(key)))
    for stage_id, (_, prior) in before.items():
        if stage_id not in after:
            out.append(FieldChange(field=f"stages[{stage_id}]", old=prior, new=None))
    return out


def snapshot(pipeline: Document) -> PipelineSnapshot:
    default_since = pipeline.get("default_since")
    return PipelineSnapshot(
        pipeline_id=pipeline["_id"],
        name=pipeline["name"],
        name_en=pipeline.get("name_en"),
        is_default=bool(pipeline.get("is_default")),
        default_since=default_since if pipeline.get("is_default") else None,
        stages=[StageData.model_validate(s) for s in stages(pipeline)],
        updated_at=pipeline["updated_at"],
    )
