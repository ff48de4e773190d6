"""What the audit service consumes: every topic whose events name an auditable action.

The directory's user and department events also keep the read copy of users (the actor's
name on each entry), before the entry is made. Types on these topics that the rules do not
name reach :func:`record_unknown`: ``crm.role.*`` (administrator-defined roles, whatever
verbs that branch of the directory publishes) is kept generically, the rest ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from crm_audit.application.log import AuditLog
from crm_audit.domain.entries import RULES
from crm_platform.consumer import Handler
from crm_platform.contracts import customers, directory, interactions, notifications, pipeline
from crm_platform.events import EventEnvelope
from crm_platform.readmodels.directory import DirectoryReadModel

#: The pipeline's and interactions' topics for their custom field definitions' events (the
#: catalogue declares those on the customers topic, but each owning service publishes its own).
TOPICS = [customers.TOPIC, directory.TOPIC, notifications.TOPIC, pipeline.TOPIC, interactions.TOPIC]


def handlers(audit: AuditLog, users: DirectoryReadModel) -> tuple[Mapping[str, Handler], Handler]:
    """The handlers by event type, and the one for types they do not name."""
    kept = set(users.handlers())

    async def record(envelope: EventEnvelope) -> None:
        if envelope.type in kept:
            await users.store(envelope)
        await audit.record(envelope)

    async def record_unknown(envelope: EventEnvelope) -> None:
        await audit.record(envelope)  # entry_for keeps crm.role.* generically and nothing else

    return {t: record for t in {*RULES, *kept}}, record_unknown
