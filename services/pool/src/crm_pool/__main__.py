"""Run the pool service: ``python -m crm_pool`` (settings from CRM_* variables).

``python -m crm_pool rebuild`` resets the clocks and replays the topics from the beginning.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pymongo import AsyncMongoClient

from crm_platform.clock import SystemClock
from crm_platform.serving import serve
from crm_pool.application.rebuilds import Rebuilds
from crm_pool.main import create_app, rebuild
from crm_pool.settings import PoolSettings


async def rebuild_now(settings: PoolSettings) -> dict[str, Any]:
    """The same rebuild as ``POST /v1/pool/rebuilds``, under the same lease (the replicas' schedulers pause)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    try:
        jobs = client[settings.mongo_database]["rebuilds"]
        rebuilds = Rebuilds(
            jobs,
            SystemClock(),
            lambda: rebuild(settings, timeout=settings.rebuild_timeout_seconds),
            lease_seconds=settings.rebuild_timeout_seconds + 60,
        )
        job = await rebuilds.begin("cli")
        await rebuilds.settle()
        return await rebuilds.get(job["rebuild_id"])
    finally:
        await client.close()


def main() -> None:
    settings = PoolSettings()
    if sys.argv[1:] == ["rebuild"]:
        job = asyncio.run(rebuild_now(settings))
        outcome = job.get("error") or f"{job.get('clocks')} customer clocks"
        print(f"rebuild {job['rebuild_id']}: {job['status']}, {outcome}")
        sys.exit(0 if job["status"] == "succeeded" else 1)
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
