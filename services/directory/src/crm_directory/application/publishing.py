"""Building the (topic, envelope) pairs that go into an aggregate's outbox."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from crm_platform.clock import Clock
from crm_platform.events import EventEnvelope, EventType
from crm_platform.tracing import current_traceparent

Outgoing = tuple[str, EventEnvelope]


class EventFactory:
    def __init__(self, source: str, clock: Clock) -> None:
        self.source = source
        self.clock = clock

    def __call__(
        self, event_type: EventType[Any], subject: str, data: BaseModel, version: int, actor: str | None
    ) -> Outgoing:
        return event_type.topic, event_type.build(
            source=self.source,
            subject=subject,
            data=data,
            aggregate_version=version,
            time=self.clock.now(),
            actor=actor,
            traceparent=current_traceparent.get(),
        )
