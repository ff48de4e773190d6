"""Run the reporting service: ``python -m crm_reporting`` (settings from CRM_* variables).

``crm-reporting rebuild`` re-reads every topic from the beginning into a new set of read
models and switches to it when caught up; the running service keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import sys

from crm_platform.errors import Conflict
from crm_platform.serving import serve
from crm_reporting.main import create_app, rebuild
from crm_reporting.settings import ReportingSettings


def main() -> None:
    settings = ReportingSettings()
    if sys.argv[1:] == ["rebuild"]:
        try:
            result = asyncio.run(rebuild(settings))
        except Conflict as exc:  # another replica or command line is rebuilding
            print(exc.detail, file=sys.stderr)
            sys.exit(1)
        print(
            f"rebuilt the read models into generation {result.generation}: {result.facts} facts in {result.seconds} s"
        )
        return
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
