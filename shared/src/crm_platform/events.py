"""Domain events as CloudEvents 1.0 (structured JSON mode) on Kafka.

Every event type is declared once, with its pydantic data model, its owning topic
and a schema version (:class:`EventType`). Services build envelopes with
:meth:`EventType.build`, store them in the aggregate's outbox, and the relay puts
them on Kafka with the CloudEvents SDK's structured binding. Consumers get the
envelope back with :func:`decode_event` and the typed data with :meth:`EventType.parse`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, create_model

from crm_platform.clock import Clock
from crm_platform.tracing import current_client_address, current_traceparent

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
DataT = TypeVar("DataT", bound=BaseModel)


class EventEnvelope(BaseModel):
    """A CloudEvent as we publish it. Extension attributes are lower-case, per the spec."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="Unique event id; consumers deduplicate on it.")
    source: str = Field(description="The publishing service, e.g. /crm/customers.")
    type: str = Field(description="crm.<aggregate>.<past-tense verb>, e.g. crm.customer.created.")
    subject: str = Field(description="The aggregate id; also the Kafka message key.")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    schemaversion: int = Field(description="Version of this event type's data schema.")
    aggregateversion: int = Field(description="Aggregate version after the change; consumers ignore older ones.")
    actor: str | None = Field(default=None, description="Id of the user (or system:<name>) who caused it.")
    traceparent: str | None = Field(default=None, description="W3C trace context of the request that caused it.")
    clientaddress: str | None = Field(
        default=None,
        description="The address of the client whose request caused it, as the service saw it through "
        "CRM_TRUSTED_PROXIES; absent for what no request caused (a scheduler, a consequence of another event).",
    )
    data: dict[str, Any]


@dataclass(frozen=True)
class EventType(Generic[DataT]):
    """One event type: its name, data model, topic and schema version."""

    name: str
    data_model: type[DataT]
    topic: str
    version: int = 1
    description: str = ""
    example: dict[str, Any] | None = field(default=None, compare=False)
    #: Delivered to a webhook only when its patterns name it exactly, never through a wildcard
    #: (``crm.*``): for events that carry what an integrator subscribed broadly should not get
    #: unasked, such as the email addresses people typed when signing in.
    exact_only: bool = False

    def build(
        self,
        *,
        source: str,
        subject: str,
        data: DataT,
        aggregate_version: int,
        time: datetime,
        actor: str | None,
        traceparent: str | None = None,
    ) -> EventEnvelope:
        return EventEnvelope(
            id=str(uuid.uuid4()),
            source=source,
            type=self.name,
            subject=subject,
            time=time,
            schemaversion=self.version,
            aggregateversion=aggregate_version,
            actor=actor,
            traceparent=traceparent,
            # The request's client, when a request is being served (the service kit sets it).
            clientaddress=current_client_address.get(),
            data=data.model_dump(mode="json"),
        )

    def parse(self, envelope: EventEnvelope) -> DataT:
        return self.data_model.model_validate(envelope.data)

    def envelope_model(self) -> type[BaseModel]:
        """A concrete envelope model for the event catalogue (AsyncAPI)."""
        class_name = "".join(part.capitalize() for part in self.name.replace("crm.", "").replace("_", ".").split("."))
        # Literal of a runtime value: fine for pydantic, beyond what a type checker can follow.
        type_literal: Any = Literal[self.name]
        version_literal: Any = Literal[self.version]
        return create_model(
            f"{class_name}Event",
            __base__=EventEnvelope,
            __doc__=self.description or self.name,
            type=(type_literal, Field(description=self.description or self.name)),
            schemaversion=(version_literal, self.version),
            data=(self.data_model, ...),
        )


class EventRegistry:
    """All event types known to a process, by name."""

    def __init__(self) -> None:
        self._types: dict[str, EventType[Any]] = {}

    def register(self, event_type: EventType[DataT]) -> EventType[DataT]:
        existing = self._types.get(event_type.name)
        if existing is not None and existing != event_type:
            raise ValueError(f"event type {event_type.name} registered twice with different definitions")
        self._types[event_type.name] = event_type
        return event_type

    def get(self, name: str) -> EventType[Any] | None:
        return self._types.get(name)

    def for_topic(self, topic: str) -> list[EventType[Any]]:
        return [t for t in self._types.values() if t.topic == topic]

    def all(self) -> list[EventType[Any]]:
        return list(self._types.values())


#: The process-wide registry; contracts modules register their types here on import.
registry = EventRegistry()


def define(
    name: str,
    data_model: type[DataT],
    topic: str,
    *,
    version: int = 1,
    description: str = "",
    exact_only: bool = False,
) -> EventType[DataT]:
    return registry.register(EventType(name, data_model, topic, version, description, exact_only=exact_only))


_FORMAT = JSONFormat()


def to_kafka(envelope: dict[str, Any]) -> tuple[bytes, bytes, dict[str, str]]:
    """(key, value, headers) of a stored envelope, in CloudEvents structured mode."""
    attributes = {k: v for k, v in envelope.items() if k != "data" and v is not None}
    if isinstance(attributes.get("time"), str):
        attributes["time"] = datetime.fromisoformat(attributes["time"])
    event = CloudEvent(attributes, envelope.get("data"))
    message = ce_kafka.to_structured_event(event, key_mapper=lambda e: str(e.get_subject()))
    headers = {k: v.decode() for k, v in message.headers.items()}
    if envelope.get("traceparent"):
        headers["traceparent"] = str(envelope["traceparent"])
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return key, message.value, headers


def decode_event(value: bytes) -> EventEnvelope:
    """Parse a structured-mode CloudEvent from a Kafka message value."""
    raw = json.loads(value)
    return EventEnvelope.model_validate(raw)


class EventFactory:
    """Builds a service's outgoing events: the envelope fields every use case fills the same way."""

    def __init__(self, source: str, clock: Clock) -> None:
        self.source = source
        self.clock = clock

    def __call__(
        self,
        event_type: EventType[Any],
        subject: str,
        data: BaseModel,
        version: int,
        actor: str | None,
        traceparent: str | None = None,
    ) -> tuple[str, EventEnvelope]:
        return event_type.topic, event_type.build(
            source=self.source,
            subject=subject,
            data=data,
            aggregate_version=version,
            time=self.clock.now(),
            actor=actor,
            # The request's trace, or the trace of the event that caused this one (a merge, a reminder).
            traceparent=traceparent or current_traceparent.get(),
        )
