"""Run the pipeline service: ``python -m crm_pipeline`` (settings from CRM_* variables)."""

from __future__ import annotations

import uvicorn

from crm_pipeline.main import create_app
from crm_pipeline.settings import PipelineSettings


def main() -> None:
    settings = PipelineSettings()
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
