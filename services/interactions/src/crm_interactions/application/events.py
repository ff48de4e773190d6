"""Building this service's outgoing events: the envelope fields every use case fills the same way."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from crm_platform.clock import Clock
from crm_platform.events import EventEnvelope, EventType
from crm_platform.tracing import current_traceparent


class EventFactory:
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
