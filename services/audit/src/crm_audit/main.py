"""The audit service's app factory: the consumers, the API and the retention purge."""

from __future__ import annotations

from fastapi import FastAPI

from crm_audit.adapters.repository import AuditRepository
from crm_audit.application.log import AuditLog
from crm_audit.entrypoints import events, http
from crm_audit.settings import AuditSettings
from crm_platform.clock import Clock
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.service import Periodic, ServiceKit

DESCRIPTION = """The audit log, for administrators: sign-ins (success and failure, with the client address),
role and permission changes, imports, purges, merges, exports and webhook changes, each with who, when and from
where. Built only from the other services' events, append-only (an entry is never changed; the retention purge
deletes entries older than `CRM_AUDIT_RETENTION_DAYS`), kept in its own database apart from business history.
Search it (`GET /v1/audit`) or export it as CSV (`GET /v1/audit/export.csv`, itself audited). Publishes no events."""


def create_app(settings: AuditSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or AuditSettings()
    kit = ServiceKit(settings, title="CRM audit", description=DESCRIPTION, clock=clock)
    repo = AuditRepository(kit.db)
    users = DirectoryReadModel(repo.users, repo.departments)
    audit = AuditLog(repo, kit.clock, kit.source)

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await users.ensure_indexes()

    async def purge() -> None:
        await audit.purge(settings.audit_retention_days, settings.audit_purge_batch_size)

    kit.on_startup(setup)
    by_type, unknown = events.handlers(audit, users)
    kit.consume(events.TOPICS, by_type, fallback=unknown)
    if settings.audit_purge_enabled:
        kit.background(Periodic("audit-retention-purge", purge, settings.audit_purge_interval_seconds))
    app = kit.build_app([http.router])
    app.state.settings = settings
    app.state.audit = audit
    app.state.repo = repo
    return app
