"""The sales service in-process, once per test session, against the session's Kafka and MongoDB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import running, service_settings
from crm_sales.main import create_app
from crm_sales.settings import SalesSettings


@pytest.fixture(scope="session")
def sales_settings(backend: Backend) -> SalesSettings:
    return SalesSettings(
        **service_settings(backend, "sales"), consumer_backoff_initial_seconds=0.05, consumer_max_attempts=3
    )


@pytest.fixture(scope="session")
async def sales_app(sales_settings: SalesSettings) -> AsyncIterator[FastAPI]:
    app = create_app(sales_settings)
    async with running(app, "http://sales.test"):
        yield app


@pytest.fixture(scope="session")
async def client(sales_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sales_app), base_url="http://sales.test") as c:
        yield c
