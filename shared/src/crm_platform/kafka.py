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
    """Where a consumer group parks events it could not handle: ``<group>.dlq``."""
    return f"{group_id}.dlq"


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
        future: asyncio.Future[Any] = await broker.publish(
            value, topic, key=key, headers=headers, no_confirm=True
        )
        return future

    return publish


async def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int = 3) -> None:
    """Create the topics this service publishes to, if they are missing (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another replica created it first
            log.info("topics created", topics=[t.name for t in missing])
    finally:
        await admin.close()
