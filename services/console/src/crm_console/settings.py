"""Settings of the console (environment, prefix ``CRM_``).

The console owns no CRM data: it calls each service's public API with the signed-in user's
bearer token. Its only storage is its sessions, in its own MongoDB database.
"""

from __future__ import annotations

from pydantic import Field

from crm_platform.settings import ServiceSettings

UPSTREAMS = (
    "customers",
    "pipeline",
    "interactions",
    "pool",
    "notifications",
    "reporting",
    "directory",
    "audit",
    "leads",
    "sales",
)


class ConsoleSettings(ServiceSettings):
    service_name: str = "console"
    http_port: int = 8000
    mongo_database: str = "crm_console"

    # Where each service's public API is (CRM_CONSOLE_<SERVICE>_URL); loopback as `crm up` runs them.
    console_customers_url: str = "http://127.0.0.1:8001"
    console_pipeline_url: str = "http://127.0.0.1:8002"
    console_interactions_url: str = "http://127.0.0.1:8003"
    console_pool_url: str = "http://127.0.0.1:8004"
    console_notifications_url: str = "http://127.0.0.1:8005"
    console_reporting_url: str = "http://127.0.0.1:8006"
    console_directory_url: str = "http://127.0.0.1:8007"
    console_audit_url: str = "http://127.0.0.1:8008"
    console_leads_url: str = "http://127.0.0.1:8009"
    console_sales_url: str = "http://127.0.0.1:8010"
    console_upstream_timeout_seconds: float = Field(default=10.0, gt=0, description="Longest wait for one API call.")

    # Sessions: a random id in an HttpOnly, SameSite=Lax cookie; the tokens stay on the server.
    console_cookie_name: str = "crm_console_session"
    console_cookie_secure: bool = Field(
        default=False, description="Send the cookie over HTTPS only (set in production)."
    )
    console_session_idle_hours: float = Field(default=12, gt=0, description="A session unused this long ends.")
    console_anonymous_session_minutes: float = Field(default=60, gt=0, description="Before sign-in (the login form).")
    # Refresh the access token when it has less than this left, so a call never carries an expired one.
    console_refresh_margin_seconds: float = Field(default=30, ge=0)

    console_default_language: str = "zh-CN"
    console_default_timezone: str = Field(
        default="Asia/Shanghai", description="Until the user picks one (the directory holds no time zone)."
    )

    def upstream_urls(self) -> dict[str, str]:
        return {name: str(getattr(self, f"console_{name}_url")).rstrip("/") for name in UPSTREAMS}
