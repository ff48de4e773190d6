"""Settings of the audit service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from pydantic import Field

from crm_platform.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    service_name: str = "audit"
    http_port: int = 8008
    mongo_database: str = "crm_audit"

    audit_retention_days: int = Field(
        default=365, ge=1, description="Entries older than this many days are deleted by the retention purge."
    )
    audit_purge_enabled: bool = Field(default=True, description="Run the retention purge periodically.")
    audit_purge_interval_seconds: float = Field(default=3600.0, gt=0, description="How often the purge runs.")
    audit_purge_batch_size: int = Field(default=500, ge=1, le=10000, description="Entries deleted per store command.")
    audit_export_max_rows: int = Field(
        default=50_000,
        ge=1,
        description="An export matching more entries is refused (narrow the filter); it is built in memory.",
    )
