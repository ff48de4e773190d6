"""Run the pipeline service: ``python -m crm_pipeline`` (settings from CRM_* variables)."""

from __future__ import annotations

from crm_pipeline.main import create_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.serving import serve


def main() -> None:
    settings = PipelineSettings()
    serve(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


if __name__ == "__main__":
    main()
