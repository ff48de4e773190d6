"""The notifications service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from crm_notifications.adapters.mailer import Mailer
from crm_notifications.adapters.repository import Repository
from crm_notifications.application.deliveries import Deliveries, DeliveryWorker, Fanout
from crm_notifications.application.email_worker import EmailWorker
from crm_notifications.application.inbox import Inbox
from crm_notifications.application.preferences import Preferences
from crm_notifications.application.subscriptions import Resolver, Subscriptions, resolve
from crm_notifications.domain.webhooks import AddressPolicy
from crm_notifications.entrypoints import events, http
from crm_notifications.settings import NotificationSettings
from crm_platform.clock import Clock
from crm_platform.contracts import customers, directory, interactions, notifications, pipeline, pool  # noqa: F401
from crm_platform.events import EventFactory
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.service import Periodic, ServiceKit

DESCRIPTION = """Each user's inbox (filled from the other services' events, in the user's language), email over
SMTP per the user's preferences, and signed webhooks for integrators with retries, a dead-letter list and replay.
Events on `crm.notifications.v1` (webhook subscriptions): see /asyncapi."""


def create_app(
    settings: NotificationSettings | None = None, clock: Clock | None = None, resolver: Resolver = resolve
) -> FastAPI:
    settings = settings or NotificationSettings()
    kit = ServiceKit(settings, title="CRM notifications", description=DESCRIPTION, clock=clock)
    repo = Repository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(repo.webhooks)
    people = kit.read_copy(DirectoryReadModel(repo.users, repo.departments))
    preferences = Preferences(repo, kit.clock)
    inbox = Inbox(repo, people, preferences, kit.clock, settings, kit.roles)
    policy = AddressPolicy(settings.webhook_allow_private, settings.webhook_allowed_networks)
    subscriptions = Subscriptions(repo, kit.clock, EventFactory(kit.source, kit.clock), policy, kit.event_log, resolver)
    worker = DeliveryWorker(repo, subscriptions, inbox, kit.clock, settings, resolver)
    deliveries = Deliveries(repo, subscriptions, kit.clock, worker.wake)
    email = EmailWorker(repo, Mailer(settings), kit.clock, settings)

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await people.ensure_indexes()

    kit.on_startup(setup)
    conversions = kit.db["lead_conversions"]  # who asked for each lead conversion (entrypoints/leads.py)
    handlers = events.inbox_handlers(inbox, people, settings.big_deal_amount, conversions, kit.roles)
    kit.consume([directory.TOPIC, *events.INBOX_TOPICS], handlers)
    if settings.webhooks_enabled:
        # Its own consumer group: a flood of events for webhooks never delays the inbox.
        kit.consume(
            events.webhook_topics(),
            events.webhook_handlers(Fanout(repo, kit.clock, worker.wake, kit.roles)),
            group_suffix=".webhooks",
        )
        kit.background(worker)
    if settings.email_enabled:
        kit.background(Periodic("email-sender", email.run, settings.email_poll_seconds))
    app = kit.build_app([http.router])
    app.state.repo = repo
    app.state.inbox = inbox
    app.state.preferences = preferences
    app.state.subscriptions = subscriptions
    app.state.deliveries = deliveries
    app.state.delivery_worker = worker
    app.state.email_worker = email
    return app
