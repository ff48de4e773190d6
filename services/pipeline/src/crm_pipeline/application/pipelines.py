"""Use cases of pipeline configuration (admins), one method each."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from crm_pipeline.adapters.repository import Repository
from crm_pipeline.domain import pipelines as pl
from crm_pipeline.domain.model import PipelineIn
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import pipeline as ev
from crm_platform.customfield_store import CustomFields
from crm_platform.customfields import FieldSet
from crm_platform.errors import Conflict, FieldError, NotFound, ValidationFailed
from crm_platform.events import EventFactory
from crm_platform.permissions import Permission
from crm_platform.store import Change

Document = dict[str, Any]
SYSTEM = "system:pipeline"


#: The module of custom fields opportunities carry (and stages may require).
MODULE = "opportunities"


class Pipelines:
    def __init__(
        self, repo: Repository, clock: Clock, events: EventFactory, fields: CustomFields | None = None
    ) -> None:
        self.repo = repo
        self.clock = clock
        self.event = events
        self.fields = fields

    async def fieldset(self) -> FieldSet:
        """The opportunities' custom fields as writes validate against them."""
        return await self.fields.fieldset(MODULE) if self.fields is not None else FieldSet({})

    async def _check_custom_requirements(self, data: PipelineIn) -> None:
        """A stage may require ``custom.<key>`` only of an active custom field of opportunities."""
        active = (await self.fieldset()).active
        errors = [
            FieldError(
                field=f"stages[{i}].requirements.fields[{j}]",
                reason=f"no active custom field '{name.removeprefix('custom.')}' of opportunities",
            )
            for i, stage in enumerate(data.stages)
            for j, name in enumerate(stage.requirements.fields)
            if name.startswith("custom.") and name.removeprefix("custom.") not in active
        ]
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)

    def _configured(
        self, doc: Document, action: str, version: int, actor: str, changes: list[ev.FieldChange] | None = None
    ) -> Any:
        data = ev.PipelineConfigured(pipeline=pl.snapshot(doc), action=action, changes=changes or [])  # type: ignore[arg-type]
        return self.event(ev.PIPELINE_CONFIGURED, doc["_id"], data, version, actor)

    async def seed_default(self) -> bool:
        """Create the default pipeline on first start; idempotent, also with several replicas racing."""
        if await self.repo.pipeline(pl.DEFAULT_PIPELINE_ID) is not None:
            return False
        doc = pl.default_pipeline(self.clock.now())
        try:
            await self.repo.pipeline_store.insert(doc, [self._configured(doc, "created", 1, SYSTEM)])
        except DuplicateKeyError:
            return False  # another replica seeded it first: one insert wins on _id
        return True

    async def list(self) -> list[Document]:
        return await self.repo.all_pipelines()

    async def get(self, pipeline_id: str) -> Document:
        doc = await self.repo.pipeline(pipeline_id)
        if doc is None:
            raise NotFound(f"No pipeline with id {pipeline_id}.")
        return doc

    async def resolve(self, pipeline_id: str | None) -> Document:
        """The pipeline an opportunity names, or the default one; a bad reference is the caller's field error."""
        doc = await (self.repo.pipeline(pipeline_id) if pipeline_id else self.repo.default_pipeline())
        if doc is None:
            if pipeline_id:
                raise ValidationFailed.for_field("pipeline_id", f"no pipeline with id {pipeline_id}")
            raise Conflict("No default pipeline is configured; ask an admin to make one the default.")
        return doc

    async def create(self, principal: Principal, data: PipelineIn) -> Document:
        principal.require(Permission.pipelines_configure)
        await self._check_custom_requirements(data)
        doc = pl.new_pipeline(data, principal.user_id, self.clock.now())
        return await self.repo.pipeline_store.insert(doc, [self._configured(doc, "created", 1, principal.user_id)])

    async def update(
        self, principal: Principal, pipeline_id: str, data: PipelineIn, expected_version: int | None
    ) -> Document:
        """Rename, reorder, add, change or remove stages; a stage in use cannot be removed (409)."""
        principal.require(Permission.pipelines_configure)
        await self._check_custom_requirements(data)

        async def decide(doc: Document, version: int) -> Change:
            new_stages = pl.build_stages(data.stages, doc.get("stages") or [])
            removed = pl.removed_stage_ids(doc, new_stages)
            in_use = await self.repo.stages_in_use(pipeline_id, removed)
            if in_use:
                names = {s["stage_id"]: s["name"] for s in doc["stages"]}
                listed = ", ".join(f"{names[s]} ({s}): {n}" for s, n in sorted(in_use.items()))
                raise Conflict(
                    f"Stages with opportunities in them cannot be removed; move those opportunities first. {listed}",
                    extra={"stages_in_use": in_use},
                )
            before = dict(doc)
            doc.update(name=data.name, name_en=data.name_en, stages=new_stages)
            changes = pl.changes(before, doc)
            if not changes:
                return Change(None)
            doc["updated_at"], doc["updated_by"] = self.clock.now(), principal.user_id
            return Change(doc, [self._configured(doc, "changed", version, principal.user_id, changes)])

        return await self.repo.pipeline_store.mutate(pipeline_id, decide, expected_version=expected_version)

    async def make_default(self, principal: Principal, pipeline_id: str) -> Document:
        """Two writes, each with its event; the newest ``default_since`` decides if a crash splits them."""
        principal.require(Permission.pipelines_configure)
        now = self.clock.now()

        def promote(doc: Document, version: int) -> Change:
            if doc.get("is_default"):
                return Change(None)
            doc["is_default"], doc["default_since"] = True, now
            doc["updated_at"], doc["updated_by"] = now, principal.user_id
            change = ev.FieldChange(field="is_default", old=False, new=True)
            return Change(doc, [self._configured(doc, "made_default", version, principal.user_id, [change])])

        promoted = await self.repo.pipeline_store.mutate(pipeline_id, promote)
        for other in await self.repo.all_pipelines():
            if other["_id"] == pipeline_id or not other.get("is_default"):
                continue

            def demote(doc: Document, version: int) -> Change:
                if not doc.get("is_default") or doc.get("default_since", pl.EPOCH) > now:
                    return Change(None)
                doc["is_default"], doc["default_since"] = False, pl.EPOCH
                doc["updated_at"], doc["updated_by"] = now, principal.user_id
                change = ev.FieldChange(field="is_default", old=True, new=False)
                return Change(doc, [self._configured(doc, "default_removed", version, principal.user_id, [change])])

            await self.repo.pipeline_store.mutate(other["_id"], demote)
        return promoted
