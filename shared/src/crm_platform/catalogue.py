"""The event catalogue for integrators: every event type of every service, generated from the contracts.

Writes two files, both checked into the repository and compared by a test, so the catalogue
cannot drift from the code:

- ``asyncapi.json``: one AsyncAPI 3.0 document: a channel per topic, a ``send`` operation per
  topic, a message per event type with its CloudEvents envelope schema (the ``data`` schema is
  the contract's pydantic model) and an example;
- ``events.md``: the same for people: a table of contents by topic and, per event, what it
  means, its key, a link to its schema and an example envelope.

Regenerate after changing a contract::

    python -m crm_platform.catalogue docs/            # write
    python -m crm_platform.catalogue docs/ --check    # exit 1 if the files are stale

Examples come from the contract when it names one (``EventType.example``, or ``examples`` in a
model's ``json_schema_extra``), else they are built from the schema with realistic values by
field name, and always validated against the data model.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import crm_platform.contracts as contracts_package
from crm_platform.events import CLOUDEVENTS_CONTENT_TYPE, EventType, registry

ASYNCAPI_FILE = "asyncapi.json"
MARKDOWN_FILE = "events.md"
SCHEMA_REF = "#/components/schemas/{model}"
EXAMPLE_TIME = "2026-11-25T08:00:00Z"
EXAMPLE_DATE = "2026-11-25"


def load_contracts() -> dict[str, str]:
    """Import every contracts module (registering its event types); topic -> the module's docstring."""
    topics: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(contracts_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{contracts_package.__name__}.{info.name}")
        topic = getattr(module, "TOPIC", None)
        if topic:
            topics[topic] = (module.__doc__ or "").strip()
    return topics


def event_types() -> list[EventType[Any]]:
    """The types the contracts define (tests register throw-away types in the same registry)."""
    prefix = contracts_package.__name__ + "."
    return sorted(
        (t for t in registry.all() if t.data_model.__module__.startswith(prefix)), key=lambda t: (t.topic, t.name)
    )


def _message_name(event_type: EventType[Any]) -> str:
    return event_type.envelope_model().__name__


# --- examples --------------------------------------------------------------------------------------

_BY_NAME: dict[str, Any] = {
    "email": "li.lei@example.com",
    "name": "上海星辰科技有限公司",
    "phone": "+8613800138000",
    "amount": "125000.00",
    "quotation_amount": "128000.00",
    "weighted_amount": "62500.00",
    "previous_amount": "100000.00",
    "currency": "CNY",
    "department_path": "/hq/east/sh-team-1",
    "path": "/hq/east/sh-team-1",
    "author_department_path": "/hq/east/sh-team-1",
    "url": "https://hooks.example.com/crm",
    "title": "回访客户，确认报价",
    "summary": "电话沟通了二期需求，客户希望下周看方案。",
    "reason": "no follow-up for 30 days",
    "uscc": "91310000MA1FL8XQ30",
    "industry": "manufacturing",
    "city": "上海",
    "country": "CN",
    "language": "zh-CN",
    "period": "2026-Q4",
    "field": "tier",
    "stage_name": "方案报价",
    "to_stage_name": "方案报价",
    "from_stage_name": "需求确认",
    "customer_name": "上海星辰科技有限公司",
    "tag": "VIP",
    "exempt_tag": "战略客户",
    "document_kind": "contract",
    "document": "contract",
    "description": "客户反映三月发票金额与合同不符，请核对。",
    "participant": "wang.fang@example.com",
    "attendee": "王芳",
    "resolution": "已重开发票并寄出。",
    "reason_text": "30 天未跟进，按公海规则回收",
    "old_path": "/hq/east/sh-team-1",
    "new_path": "/hq/east/sh-team-2",
    "old_name": "华东一组",
    "new_name": "华东销售一组",
    "channel": "phone",
}


def _id_for(name: str) -> str:
    stem = name.removesuffix("_id").removesuffix("_ids").replace("_", "-")
    prefix = {"customer": "c", "opportunity": "o", "user": "u", "owner": "u", "task": "t", "feedback": "f"}
    return f"{prefix.get(stem.split('-')[-1], stem)}-7f3a2b"


def _example(schema: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        if target.get("examples"):
            return target["examples"][0]
        return _example(target, defs, name)
    if schema.get("examples"):
        return schema["examples"][0]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _example(options[0], defs, name) if options else None
    if "allOf" in schema:
        return _example(schema["allOf"][0], defs, name)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            prop: _example(sub, defs, prop)
            for prop, sub in schema.get("properties", {}).items()
            if prop in schema.get("required", []) or "default" not in sub or sub.get("default") not in (None, [], {})
        }
    if kind == "array":
        item = _example(schema.get("items", {}), defs, name.removesuffix("s"))
        return [item] if item is not None else []
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return EXAMPLE_TIME
        if fmt == "date":
            return EXAMPLE_DATE
        if name in _BY_NAME:
            return _BY_NAME[name]
        if name.endswith("_id") or name.endswith("_ids") or name in ("subject",):
            return _id_for(name)
        if name in ("actor", "created_by", "updated_by", "moved_by", "set_by", "reported_by", "completed_by"):
            return "u-1024"
        return schema.get("default") if isinstance(schema.get("default"), str) else f"example {name}".strip()
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return max(int(low), 1 if name != "days_left" else 3)
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return bool(schema.get("default", False))
    return None


def example_envelope(event_type: EventType[Any], schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A complete, valid example CloudEvent of this type."""
    data = event_type.example or _example(schema["properties"]["data"], defs)
    event_type.data_model.model_validate(data)  # an example that does not validate is a bug here
    return {
        "specversion": "1.0",
        "id": "3f1c2b9e-8a4d-4e7a-9b1c-2d3e4f5a6b7c",
        "source": f"/crm/{event_type.topic.split('.')[1]}",
        "type": event_type.name,
        "subject": _subject_of(data),
        "time": EXAMPLE_TIME,
        "datacontenttype": "application/json",
        "schemaversion": event_type.version,
        "aggregateversion": 3,
        "actor": "u-1024",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "clientaddress": "203.0.113.7",
        "data": data,
    }


def _subject_of(data: dict[str, Any]) -> str:
    """The aggregate id the example is about (the Kafka key): ``customer.customer_id`` and the like."""
    for name, value in data.items():
        if isinstance(value, dict) and f"{name}_id" in value:
            return str(value[f"{name}_id"])
    for name, value in data.items():
        if name.endswith("_id") and isinstance(value, str):
            return value
    for value in data.values():
        if isinstance(value, dict):
            for name, inner in value.items():
                if name.endswith("_id") and isinstance(inner, str):
                    return inner
    return "c-7f3a2b"


# --- the AsyncAPI document -------------------------------------------------------------------------


def build_asyncapi(topics: dict[str, str]) -> dict[str, Any]:
    types = event_types()
    models: list[type[BaseModel]] = [t.envelope_model() for t in types]
    keys, schemas = models_json_schema([(m, "validation") for m in models], ref_template=SCHEMA_REF)
    defs: dict[str, Any] = schemas.get("$defs", {})
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in sorted({t.topic for t in types}):
        channel_id = topic.replace(".", "_")
        in_topic = [t for t in types if t.topic == topic]
        channels[channel_id] = {
            "address": topic,
            "title": topic,
            "description": topics.get(topic, ""),
            "messages": {_message_name(t): {"$ref": f"#/components/messages/{_message_name(t)}"} for t in in_topic},
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"The owning service publishes its events on {topic}, keyed by aggregate id.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{_message_name(t)}"} for t in in_topic],
        }
    for event_type, model in zip(types, models, strict=True):
        ref = keys[(model, "validation")]["$ref"]
        schema_name = ref.rsplit("/", 1)[-1]
        messages[_message_name(event_type)] = {
            "name": event_type.name,
            "title": event_type.name,
            "summary": event_type.description or event_type.name,
            "contentType": CLOUDEVENTS_CONTENT_TYPE,
            "payload": {"$ref": ref},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "The aggregate id (the CloudEvent subject)."},
                    "bindingVersion": "0.5.0",
                }
            },
            "examples": [{"name": "example", "payload": example_envelope(event_type, defs[schema_name], defs)}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CRM events",
            "version": "1.0.0",
            "description": "Every domain event of every CRM service: CloudEvents 1.0 in structured JSON mode on "
            "Kafka, one topic per owning service, keyed by aggregate id. Webhook subscribers receive the "
            "same envelopes. Generated by `python -m crm_platform.catalogue docs/`; do not edit by hand.",
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": defs},
    }


# --- the human-readable page --------------------------------------------------------------------------


def _anchor(text: str) -> str:
    return "".join(c for c in text.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def render_markdown(doc: dict[str, Any], topics: dict[str, str]) -> str:
    messages = doc["components"]["messages"]
    out = [
        "# CRM event catalogue",
        "",
        "<!-- Generated by `python -m crm_platform.catalogue docs/` from the contracts in "
        "shared/src/crm_platform/contracts; do not edit by hand. -->",
        "",
        "Every domain event of every service, as integrators receive it: on Kafka (one topic per owning "
        "service, the message key is the aggregate id, so one aggregate's events stay in order) and through "
        "webhooks (the same CloudEvent, POSTed as `application/cloudevents+json`). The machine-readable "
        f"version is [{ASYNCAPI_FILE}]({ASYNCAPI_FILE}) (AsyncAPI 3.0).",
        "",
        "Each event is a CloudEvent 1.0: `id` (unique: deduplicate on it), `source` (the service), `type`, "
        "`subject` (the aggregate id, also the key), `time`, `schemaversion` (of the data), "
        "`aggregateversion` (ignore an event older than what you hold), `actor`, `traceparent`, `clientaddress` "
        "(the address of the client whose request caused it, when a request did) and `data`. "
        "Schemas evolve additively: ignore fields you do not know.",
        "",
        "## Contents",
        "",
    ]
    for channel in doc["channels"].values():
        topic = channel["address"]
        out.append(f"- [{topic}](#{_anchor(topic)})")
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            out.append(f"  - [{message['name']}](#{_anchor(message['name'])})")
    for channel in doc["channels"].values():
        topic = channel["address"]
        out += ["", f"## {topic}", ""]
        if topics.get(topic):
            out += [topics[topic], ""]
        for ref in channel["messages"].values():
            key = ref["$ref"].rsplit("/", 1)[-1]
            message = messages[key]
            schema = message["payload"]["$ref"].rsplit("/", 1)[-1]
            example = json.dumps(message["examples"][0]["payload"], ensure_ascii=False, indent=2)
            out += [
                f"### {message['name']}",
                "",
                f"{message['summary']}",
                "",
                f"- Published on: `{topic}`, when the change above is stored (through the service's outbox).",
                "- Key: the aggregate id (`subject`).",
                f"- Schema: [`{schema}`]({ASYNCAPI_FILE}) (`components.schemas.{schema}` in the AsyncAPI document).",
                "",
                "```json",
                example,
                "```",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def render() -> dict[str, str]:
    """File name -> content of the whole catalogue."""
    topics = load_contracts()
    doc = build_asyncapi(topics)
    return {
        ASYNCAPI_FILE: json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False) + "\n",
        MARKDOWN_FILE: render_markdown(doc, topics),
    }


def stale_files(directory: Path) -> list[str]:
    return [name for name, text in render().items() if _read(directory / name) != text]


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_platform.catalogue", description="Write the event catalogue.")
    parser.add_argument("directory", type=Path, nargs="?", default=Path("docs"))
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.directory)
        for name in stale:
            print(f"{args.directory / name} is stale: run python -m crm_platform.catalogue {args.directory}")
        return 1 if stale else 0
    args.directory.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.directory / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(event_types())} event types to {args.directory} at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
