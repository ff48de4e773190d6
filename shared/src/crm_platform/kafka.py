"""The Kafka side: the FastStream broker, topics, and the publish function the relay uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from crm_platform.settings import ServiceSettings

log = structlog.get_logger(__name__)


def topic_for(service: str) -> str:
    """One topic per owning service, versioned: ``crm.customers.v1``."""
    return f"crm.{service}.v1"


def dead_letter_topic(group_id: str) -> str:
    """Where a consumer group parks events it could not handle.

    Group ``crm.customers`` (the customers service's consumers) -> ``crm.customers.v1.dlq``,
    next to the service's own topic ``crm.customers.v1``.
    """
    return f"{group_id}.v1.dlq"


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"crm-{settings.service_name}",
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        logger=logging.getLogger(f"crm.{settings.service_name}.kafka"),
        log_level=logging.DEBUG,
    )


def broker_publisher(broker: KafkaBroker) -> Any:
    """The relay's publish function: sends without waiting and returns the broker's ack."""

    async def publish(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Awaitable[Any]:
        future: asyncio.Future[Any] = await broker.publish(value, topic, key=key, headers=headers, no_confirm=True)
        return future

    return publish


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic for another reason than its existing already."""


_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int = 3, replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); return the ones created.

    An existing topic is left as it is (its partition count included). Tansu reports
    "already exists" as an error code in the response rather than raising, so the
    codes are checked here: a race with another replica is fine, anything else is not.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        if not wanted:
            return []
        try:
            response = await admin.create_topics([NewTopic(t, partitions, replication_factor) for t in wanted])
        except TopicAlreadyExistsError:
            return []  # another replica created them first
        failures = [
            f"{topic}: error {code} {message or ''}".strip()
            for topic, code, message in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise TopicCreationError("could not create topics: " + "; ".join(failures))
        log.info("topics created", topics=wanted)
        return wanted
    finally:
        await admin.close()
