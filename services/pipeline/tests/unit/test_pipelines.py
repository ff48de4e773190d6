import pytest

from crm_pipeline.domain import pipelines as pl
from crm_pipeline.domain.model import PipelineIn
from crm_platform.errors import ValidationFailed


def pipeline_in(*stages: dict) -> PipelineIn:
    return PipelineIn.model_validate({"name": "Projects", "stages": list(stages)})


OPEN = {"name": "Lead", "name_en": "Lead", "probability": 10}
WON = {"name": "Signed", "probability": 100, "kind": "won"}
LOST = {"name": "Lost", "probability": 0, "kind": "lost"}


def test_new_stages_get_stable_ids_and_existing_ids_are_kept():
    stages = pl.build_stages(pipeline_in(OPEN, {**WON, "stage_id": "signed"}, LOST).stages, [])
    assert stages[0]["stage_id"] == "lead" and stages[1]["stage_id"] == "signed"
    assert stages[2]["stage_id"].startswith("stage_")


@pytest.mark.parametrize(
    ("stages", "field"),
    [
        ((OPEN, OPEN | {"name": "Other"}, LOST), "stages"),  # no won stage
        ((OPEN, WON, WON | {"name": "Again"}, LOST), "stages"),
        ((OPEN, OPEN | {"name": "lead"}, WON, LOST), "stages[1].name"),
        ((OPEN | {"stage_id": "a"}, OPEN | {"name": "B", "stage_id": "a"}, WON, LOST), "stages[1].stage_id"),
        ((OPEN, WON | {"probability": 90}, LOST), "stages[1].probability"),
        ((OPEN, WON, LOST | {"requirements": {"fields": ["amount"]}}), "stages[2].requirements"),
    ],
)
def test_invalid_stage_lists_are_refused_naming_the_field(stages, field):
    with pytest.raises(ValidationFailed) as caught:
        pl.build_stages(pipeline_in(*stages).stages, [])
    assert field in {e.field for e in caught.value.errors}


def test_changes_name_renames_moves_additions_and_removals():
    old = {
        "name": "P",
        "stages": [
            {"stage_id": "a", "name": "A", "probability": 10, "kind": "open"},
            {"stage_id": "b", "name": "B", "probability": 20, "kind": "open"},
        ],
    }
    new = {
        "name": "P",
        "stages": [
            {"stage_id": "b", "name": "B2", "probability": 20, "kind": "open"},
            {"stage_id": "c", "name": "C", "probability": 30, "kind": "open"},
        ],
    }
    fields = {c.field for c in pl.changes(old, new)}
    assert fields == {"stages[b].position", "stages[b].name", "stages[c]", "stages[a]"}
    assert pl.removed_stage_ids(old, new["stages"]) == ["a"]
