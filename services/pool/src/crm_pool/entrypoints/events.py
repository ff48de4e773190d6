"""What the pool service does with the customers, pipeline and interactions events."""

from __future__ import annotations

from collections.abc import Mapping

from crm_platform.consumer import Handler
from crm_platform.contracts import interactions, pipeline
from crm_platform.readmodels.customers import CustomerReadModel
from crm_pool.application.clocks import ClockProjection


def handlers(clocks: ClockProjection, customers: CustomerReadModel) -> Mapping[str, Handler]:
    # The shared read copy stores the customer; its "changed" hook (added in main) moves the clock.
    out: dict[str, Handler] = dict(customers.handlers())
    out.update({t.name: clocks.on_opportunity for t in pipeline.OPPORTUNITY_EVENTS})
    out[pipeline.PIPELINE_CONFIGURED.name] = clocks.on_pipeline_configured
    out[interactions.INTERACTION_LOGGED.name] = clocks.on_interaction_logged
    out[interactions.INTERACTION_UPDATED.name] = clocks.on_interaction_updated
    return out
