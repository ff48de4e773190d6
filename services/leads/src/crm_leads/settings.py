"""Settings of the leads service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from pydantic import Field

from crm_platform.settings import ServiceSettings


class LeadsSettings(ServiceSettings):
    service_name: str = "leads"
    http_port: int = 8009
    mongo_database: str = "crm_leads"

    # CSV import (POST /v1/leads/import).
    import_max_rows: int = Field(default=5_000, ge=1, description="Rows one lead import may hold.")
    import_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1, description="Bytes one lead import file may hold.")

    # Public web-to-lead (POST /v1/web-to-lead/{key}): fixed-window rate limits, counted in the store
    # (one document per address or key and window) so every replica counts the same.
    web_form_window_seconds: int = Field(default=60, ge=1, description="Length of a rate-limit window.")
    web_form_max_per_address: int = Field(default=10, ge=1, description="Posts one client address may make per window.")
    web_form_max_per_key: int = Field(default=120, ge=1, description="Posts one form key may take per window.")
    web_form_max_bytes: int = Field(default=16 * 1024, ge=256, description="Largest body a web-to-lead post may have.")

    #: Lead scoring: the model trains only on at least this many converted and as many disqualified leads.
    scoring_min_per_class: int = 30
    #: At most this many leads of each class are read for a training.
    scoring_max_history: int = 20_000
    #: Leads read per page of that history.
    scoring_history_page: int = 500
    #: The background re-score: leads per page, pages per tick, seconds between ticks.
    scoring_rescore_page: int = 200
    scoring_rescore_pages_per_tick: int = 25
    scoring_rescore_interval_seconds: float = 2.0
