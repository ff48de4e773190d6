"""Every service in-process at once, for the tests that go over every route of every service
(the permission matrix, the OpenAPI fuzz run): built as each service's own tests build it,
each with its own database and consumer group, its schedulers and workers off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from fastapi import FastAPI

from crm_audit.main import create_app as audit_app
from crm_audit.settings import AuditSettings
from crm_customers.main import create_app as customers_app
from crm_customers.settings import CustomersSettings
from crm_directory.main import create_app as directory_app
from crm_directory.settings import DirectorySettings
from crm_interactions.main import create_app as interactions_app
from crm_interactions.settings import InteractionsSettings
from crm_leads.main import create_app as leads_app
from crm_leads.settings import LeadsSettings
from crm_notifications.main import create_app as notifications_app
from crm_notifications.settings import NotificationSettings
from crm_pipeline.main import create_app as pipeline_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.replay import caught_up
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import eventually, service_settings
from crm_pool.main import create_app as pool_app
from crm_pool.settings import PoolSettings
from crm_reporting.main import create_app as reporting_app
from crm_reporting.settings import ReportingSettings
from crm_sales.main import create_app as sales_app
from crm_sales.settings import SalesSettings

SERVICES: dict[str, tuple[Callable[..., FastAPI], type[Any], dict[str, Any]]] = {
    "customers": (customers_app, CustomersSettings, {}),
    "directory": (
        directory_app,
        DirectorySettings,
        {"directory_argon2_time_cost": 1, "directory_argon2_memory_kib": 256, "directory_argon2_parallelism": 1},
    ),
    "pipeline": (pipeline_app, PipelineSettings, {}),
    "interactions": (interactions_app, InteractionsSettings, {}),
    "pool": (pool_app, PoolSettings, {"scheduler_enabled": False}),
    # No mail and no webhook deliveries: these tests look at the HTTP API only.
    "notifications": (notifications_app, NotificationSettings, {"email_enabled": False, "webhooks_enabled": False}),
    "reporting": (reporting_app, ReportingSettings, {}),
    "audit": (audit_app, AuditSettings, {"audit_purge_enabled": False}),
    "leads": (leads_app, LeadsSettings, {}),
    "sales": (sales_app, SalesSettings, {}),
}


@pytest.fixture(scope="session")
async def service_apps(backend: Backend) -> AsyncIterator[dict[str, FastAPI]]:
    """The ten apps, started (lifespans entered) and with their consumers caught up."""
    async with AsyncExitStack() as stack:
        apps: dict[str, FastAPI] = {}
        for name, (create, settings_type, extra) in SERVICES.items():
            settings = settings_type(
                **service_settings(backend, name),
                consumer_backoff_initial_seconds=0.05,
                consumer_max_attempts=3,
                **extra,
            )
            app = create(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            apps[name] = app
        # Partitions come about 5 s after a group starts: wait for every service's at once.
        consumers = [c for app in apps.values() for c in app.state.kit.consumers]
        await eventually(lambda: all(c.assigned() for c in consumers), timeout=60, message="consumers assigned")
        await caught_up(consumers, timeout=300)
        yield apps
