"""Run the pool service: ``python -m crm_pool`` (settings from CRM_* variables).

``python -m crm_pool rebuild`` resets the clocks and replays the topics from the beginning.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from crm_pool.main import create_app, rebuild
from crm_pool.settings import PoolSettings


def main() -> None:
    settings = PoolSettings()
    if sys.argv[1:] == ["rebuild"]:
        count = asyncio.run(rebuild(settings))
        print(f"rebuilt {count} customer clocks")
        return
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
