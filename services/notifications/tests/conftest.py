"""The notifications service in-process, once per test session, against the session's Kafka and MongoDB,
with a local SMTP sink (aiosmtpd) and local HTTP receivers for webhooks.

Users, departments and the events people are told about reach it the only way they can in
production: as events on the other services' topics, built with the contracts and produced
here with a plain aiokafka producer. Webhook retries use short real-time settings (tens of
milliseconds) instead of a manual clock: the delivery worker is a real background loop.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_notifications.main import create_app
from crm_notifications.settings import NotificationSettings
from crm_notifications.smtp_sink import SmtpSink
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import database, running, service_settings

sys.path.insert(0, str(Path(__file__).parent))
from notifications_testkit import ScriptedDns, World


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink("127.0.0.1", 0)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def notifications_settings(backend: Backend, smtp_sink: SmtpSink) -> NotificationSettings:
    return NotificationSettings(
        **service_settings(backend, "notifications"),
        consumer_backoff_initial_seconds=0.05,
        consumer_max_attempts=3,
        smtp_port=smtp_sink.port,
        email_poll_seconds=0.1,
        email_retry_initial_seconds=0.05,
        big_deal_amount="500000",  # type: ignore[arg-type]
        # The receivers run on this machine: loopback is allowed explicitly, nothing else private.
        webhook_allowed_networks=["127.0.0.0/8"],
        webhook_poll_seconds=0.1,
        webhook_timeout_seconds=1.0,
        webhook_retry_initial_seconds=0.05,
        webhook_retry_max_seconds=0.2,
        webhook_retry_period_seconds=0.6,
        webhook_concurrency_per_subscription=2,
        webhook_disable_after_failures=8,
    )


@pytest.fixture(scope="session")
def dns() -> ScriptedDns:
    return ScriptedDns()


@pytest.fixture(scope="session")
async def app(notifications_settings: NotificationSettings, dns: ScriptedDns) -> AsyncIterator[FastAPI]:
    application = create_app(notifications_settings, resolver=dns)
    async with running(application, "http://notifications.test") as c:
        application.state.test_client = c
        yield application


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> httpx.AsyncClient:
    c: httpx.AsyncClient = app.state.test_client
    return c


@pytest.fixture(scope="session")
async def db(backend: Backend, notifications_settings: NotificationSettings) -> AsyncIterator[Any]:
    async with database(backend.mongo_url, notifications_settings.mongo_database) as db_:
        yield db_


@pytest.fixture
async def world(producer: AIOKafkaProducer, db: Any, app: FastAPI) -> World:
    return World(producer, db)
