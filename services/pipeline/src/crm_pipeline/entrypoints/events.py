"""What the pipeline service consumes: the customers service's events, into its customer read copy.

The read model (crm_platform.readmodels.customers) applies each event to the copy
by version; its hooks let opportunities follow their customer (see
application/customer_events.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from crm_pipeline.application.customer_events import CustomerReactions
from crm_platform.consumer import Handler
from crm_platform.readmodels.customers import CustomerReadModel, HookName


def customer_handlers(read_model: CustomerReadModel, reactions: CustomerReactions) -> Mapping[str, Handler]:
    read_model.add_hook("merged", reactions.merged)
    read_model.add_hook("merged_away", reactions.merged_away)
    recycle_bin: tuple[HookName, ...] = ("deleted", "restored", "purged")
    for name in recycle_bin:
        read_model.add_hook(name, reactions.visibility)
    return read_model.handlers()
