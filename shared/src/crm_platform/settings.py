"""Settings every service reads from the environment (prefix ``CRM_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common settings; a service subclasses this to add its own and set defaults."""

    model_config = SettingsConfigDict(env_prefix="CRM_", env_file=None, extra="ignore")

    service_name: str = "crm"
    http_host: str = "127.0.0.1"
    http_port: int = 8000

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # Real Kafka supports the idempotent producer; the embedded Tansu broker does not
    # (InitProducerId fails), so it is a setting, and consumers are idempotent anyway.
    kafka_enable_idempotence: bool = False
    kafka_topic_partitions: int = 3

    mongo_url: str = "mongodb://127.0.0.1:27018"
    mongo_database: str = "crm"

    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr = SecretStr("")
    jwt_jwks_url: str | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str = "crm-directory"
    jwt_audience: str = "crm"

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Outbox relay: woken right after a write; the poll is only the fallback.
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_lease_seconds: float = Field(default=30.0, gt=0)
    outbox_batch_size: int = Field(default=200, gt=0)

    # Appended to the consumer group (crm.<service>): lets a second, independent copy of a
    # service (a test, a migration, a rebuild) read the topics without taking partitions
    # from the running one.
    consumer_group_suffix: str = ""

    # Consumers: in-process retries with exponential backoff, then the dead-letter topic.
    consumer_max_attempts: int = Field(default=5, ge=1)
    consumer_batch_size: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Records fetched and handled per offset commit (1: commit after every record).",
    )
    consumer_backoff_initial_seconds: float = Field(default=0.2, ge=0)
    consumer_backoff_max_seconds: float = Field(default=5.0, ge=0)
