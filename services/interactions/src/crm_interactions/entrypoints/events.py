"""What the interactions service consumes: other services' events, into its read copies.

* ``crm.customers.v1`` -> the customer copy (crm_platform.readmodels.customers), whose
  hooks let interactions, tasks and feedback follow merges, deletes and restores, and
  interactions and feedback their customer's owner (application/customer_events.py);
* ``crm.pipeline.v1`` -> the opportunity copy (crm_platform.readmodels.opportunities);
* ``crm.directory.v1`` -> the user copy, for the departments of task assignees and
  feedback handlers (crm_platform.readmodels.directory).
"""

from __future__ import annotations

from collections.abc import Mapping

from crm_interactions.application.customer_events import CustomerReactions
from crm_platform.consumer import Handler
from crm_platform.readmodels.customers import CustomerReadModel, HookName
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.readmodels.opportunities import OpportunityReadModel


def handlers(
    customers: CustomerReadModel,
    reactions: CustomerReactions,
    opportunities: OpportunityReadModel,
    directory: DirectoryReadModel,
) -> Mapping[str, Handler]:
    customers.add_hook("merged", reactions.merged)
    customers.add_hook("merged_away", reactions.merged_away)
    recycle_bin: tuple[HookName, ...] = ("deleted", "restored", "purged")
    for name in recycle_bin:
        customers.add_hook(name, reactions.visibility)
    customers.add_hook("changed", reactions.changed)
    # Event type names are unique across topics, so one map serves one consumer group.
    return {**customers.handlers(), **opportunities.handlers(), **directory.handlers()}
