"""Settings of the notifications service (environment, prefix ``CRM_``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, SecretStr

from crm_platform.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    service_name: str = "notifications"
    http_port: int = 8005
    mongo_database: str = "crm_notifications"

    # --- inbox ------------------------------------------------------------------------------
    big_deal_amount: Decimal = Field(
        default=Decimal("1000000"), ge=0, description="A won opportunity at or above this amount tells the managers."
    )
    default_language: str = Field(default="zh-CN", description="For recipients the directory copy does not know yet.")
    public_base_url: str = Field(
        default="http://localhost:8080", description="Prefix of the record links in emails (the web app's address)."
    )

    # --- email --------------------------------------------------------------------------------
    display_time_zone: str = Field(
        default="Asia/Shanghai",
        description="Times in notifications and emails are shown in this zone, with the offset.",
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_from: str = "CRM <crm@localhost>"
    smtp_starttls: bool = False
    smtp_use_tls: bool = Field(default=False, description="Implicit TLS (port 465 style).")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    email_enabled: bool = Field(default=True, description="Run the email worker.")
    email_poll_seconds: float = Field(default=2.0, gt=0)
    email_batch_size: int = Field(default=50, ge=1)
    email_max_attempts: int = Field(default=8, ge=1)
    email_retry_initial_seconds: float = Field(default=30.0, ge=0)
    email_retry_max_seconds: float = Field(default=3600.0, ge=0)

    # --- webhooks -------------------------------------------------------------------------------
    webhooks_enabled: bool = Field(default=True, description="Consume every topic and run the delivery worker.")
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow URLs resolving to addresses that are not globally routable (private, loopback, "
        "link-local, CGNAT...): never in production.",
    )
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs allowed despite the rule above, e.g. ['10.20.0.0/16'] for an internal ESB.",
    )
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, description="Per delivery attempt.")
    webhook_concurrency_per_subscription: int = Field(default=4, ge=1)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_batch_size: int = Field(default=200, ge=1)
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    webhook_retry_initial_seconds: float = Field(default=10.0, ge=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, ge=0)
    webhook_retry_period_seconds: float = Field(
        default=86400.0, gt=0, description="After this long since the first attempt a delivery is dead-lettered."
    )
    webhook_disable_after_failures: int = Field(
        default=20, ge=1, description="Failed attempts in a row (any delivery) that disable a subscription."
    )
