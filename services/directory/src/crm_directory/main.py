"""The directory service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from crm_directory.adapters.signing import public_pem
from crm_directory.application.bootstrap import bootstrap_admin
from crm_directory.application.directory import Directory
from crm_directory.entrypoints import http
from crm_directory.settings import DirectorySettings
from crm_platform.clock import Clock
from crm_platform.contracts import directory as _directory_events  # noqa: F401  (registers the event types)
from crm_platform.service import Periodic, ServiceKit

DESCRIPTION = """Users (name, email, phone, language, roles, department), departments as a tree (公司 / 区域 /
团队, each with a manager), roles (which permissions and data scopes each grants; admin, manager, rep
and integrator are built in and editable), and sign-in: email and password give a short-lived JWT access token, which
every service verifies locally, and a rotating refresh token. Every change is published on Kafka topic
`crm.directory.v1` as a CloudEvent with the full snapshot (see /asyncapi), so other services keep read copies."""


def _settings_for_verification(settings: DirectorySettings) -> DirectorySettings:
    """With RS256 and our own private key, verify our own tokens with its public half."""
    key = settings.directory_jwt_private_key
    if settings.jwt_algorithm == "RS256" and key and not (settings.jwt_public_key or settings.jwt_jwks_url):
        return settings.model_copy(update={"jwt_public_key": public_pem(key.get_secret_value())})
    return settings


def create_app(settings: DirectorySettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = _settings_for_verification(settings or DirectorySettings())
    kit = ServiceKit(settings, title="CRM directory", description=DESCRIPTION, clock=clock)
    directory = Directory(kit.db, kit.clock, settings, kit.source, kit.wake_relay)
    kit.outbox(directory.repo.users)
    kit.outbox(directory.repo.departments)
    kit.outbox(directory.repo.roles)
    kit.outbox(directory.repo.sign_in_events)
    # Sign-in records are append-only, each under an id of its own: a restore leaves them as the
    # backup had them (users and departments still refuse a restore past their published versions).
    kit.restate(directory.repo.sign_in_events, "crm.directory.sign", None)

    async def start(_: ServiceKit) -> None:
        await directory.ensure_indexes()
        # The built-in roles' definitions (first start), before any user can be given one.
        await directory.roles.seed()
        # Finish department moves a crashed process left half done, then the first admin.
        await directory.departments.repair()
        await bootstrap_admin(directory)

    async def purge_records() -> None:
        await directory.repo.purge_sign_in_records(settings.record_retention_days, settings.record_purge_batch_size)

    kit.on_startup(start)
    if settings.record_purge_enabled:
        # Sign-in records, once the audit log has long had their events (CRM_RECORD_RETENTION_DAYS).
        kit.background(Periodic("record-retention-purge", purge_records, settings.record_purge_interval_seconds))
    app = kit.build_app(http.ROUTERS)
    app.state.directory = directory
    return app
