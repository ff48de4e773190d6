"""Settings of the leads service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from crm_platform.settings import ServiceSettings


class LeadsSettings(ServiceSettings):
    service_name: str = "leads"
    http_port: int = 8009
    mongo_database: str = "crm_leads"
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
