"""The event catalogue in docs/ is what the contracts generate today: it cannot drift from the code."""

from __future__ import annotations

import json
from pathlib import Path

from crm_platform import catalogue

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_checked_in_catalogue_matches_the_contracts() -> None:
    stale = catalogue.stale_files(DOCS)
    assert not stale, f"{stale} are stale: run `python -m crm_platform.catalogue docs/` and commit the result"


def test_every_event_type_is_documented_with_a_valid_example() -> None:
    files = catalogue.render()
    doc = json.loads(files[catalogue.ASYNCAPI_FILE])
    assert doc["asyncapi"] == "3.0.0"
    messages = {m["name"]: m for m in doc["components"]["messages"].values()}
    assert set(messages) == {t.name for t in catalogue.event_types()}
    assert len(messages) >= 58
    topics = {c["address"] for c in doc["channels"].values()}
    assert {"crm.customers.v1", "crm.pipeline.v1", "crm.interactions.v1", "crm.directory.v1", "crm.pool.v1"} <= topics
    assert "crm.notifications.v1" in topics
    for event_type in catalogue.event_types():
        message = messages[event_type.name]
        example = message["examples"][0]["payload"]
        assert example["type"] == event_type.name
        event_type.data_model.model_validate(example["data"])
        schema_name = message["payload"]["$ref"].rsplit("/", 1)[-1]
        assert schema_name in doc["components"]["schemas"]
        assert f"### {event_type.name}" in files[catalogue.MARKDOWN_FILE]
