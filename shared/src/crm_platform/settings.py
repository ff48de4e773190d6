"""Settings every service reads from the environment (prefix ``CRM_``)."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common settings; a service subclasses this to add its own and set defaults."""

    model_config = SettingsConfigDict(env_prefix="CRM_", env_file=None, extra="ignore")

    service_name: str = "crm"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # The reverse proxies / load balancers in front of the service (addresses or CIDRs), whose
    # X-Forwarded-For and X-Forwarded-Proto are believed. Empty: nobody's; the peer address is
    # the client (else anyone could pick the address that sign-in throttling counts).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Proxies whose forwarded headers are believed: a JSON list or comma-separated, e.g. "10.0.0.0/8".',
    )

    # How long an idle keep-alive connection stays open. uvicorn's default (5 s) equals the idle
    # expiry of common clients (httpx, requests' pools), so a client reusing a connection just as
    # the server closes it meets a dropped request (httpx.ReadError); it must also outlast the
    # idle timeout of a load balancer in front (AWS ALB: 60 s), or the balancer answers 502.
    http_keep_alive_seconds: int = Field(default=75, ge=1)

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # Real Kafka supports the idempotent producer; the embedded Tansu broker does not
    # (InitProducerId fails), so it is a setting, and consumers are idempotent anyway.
    kafka_enable_idempotence: bool = False
    kafka_topic_partitions: int = 3

    mongo_url: str = "mongodb://127.0.0.1:27018"
    mongo_database: str = "crm"
    # Bounds on every wait for the store (PyMongo's defaults: 30 s selection, 20 s connect, no
    # socket timeout), so a request fails with 503 in about 2 s while the store is down instead
    # of hanging, and the service picks the store up again within a second of its return.
    mongo_server_selection_timeout_ms: int = Field(default=2000, ge=100)
    mongo_connect_timeout_ms: int = Field(default=2000, ge=100)
    mongo_socket_timeout_ms: int = Field(
        default=30_000, ge=0, description="Longest wait for one command's answer (0: none)."
    )
    mongo_heartbeat_frequency_ms: int = Field(default=2000, ge=500)
    mongo_max_pool_size: int = Field(default=100, ge=1)
    # Retry-After of the 503 a request gets while the store is unavailable.
    unavailable_retry_after_seconds: int = Field(default=2, ge=0)
    # /readyz's deadline: its checks (store ping, broker, outbox backlog, a service's own probes)
    # run side by side and it answers by then, whatever they still do (crm_platform.readiness).
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)

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
    # Longest pause between relay attempts while the broker or the store is down (it doubles
    # from outbox_poll_seconds): the events of writes made just before the outage wait this
    # long at most after it ends.
    outbox_retry_max_seconds: float = Field(default=5.0, gt=0)

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
    custom_fields_reload_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a replica reloads the custom field definitions it keeps in memory (a request "
        "reads none): a definition changed through another replica reaches this one's writes within this time.",
    )
    roles_reload_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a replica reloads the role definitions from its read copy (crm_platform.roles): "
        "what another replica's consumer applied reaches this one within this time.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        # From the environment: '["10.0.0.0/8", "::1"]' or "10.0.0.0/8, ::1" (empty: none).
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # a ValueError names the bad entry
        return value
