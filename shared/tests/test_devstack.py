"""The embedded backend really speaks Kafka and MongoDB, and leaves no process behind."""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient

from crm_platform.devstack import (
    DevStackError,
    ManagedProcess,
    PortInUseError,
    ensure_topics,
    find_nx,
    find_tansu,
    find_weed,
    wait_until,
)
from crm_platform.devstack.processes import ensure_ports_free, ephemeral_ports, free_port, free_port_run, group_is_gone
from crm_platform.devstack.services import EMBEDDED_STORE_CONNECTIONS, SERVICES, service_env
from crm_platform.settings import ServiceSettings
from crm_platform.testing import start_backend


@pytest.mark.asyncio
async def test_embedded_backend_round_trips_a_message_and_a_document() -> None:
    backend = start_backend("embedded")
    try:
        assert backend.kafka_enable_idempotence is False  # Tansu fails InitProducerId
        topic = f"test.devstack.{uuid.uuid4().hex[:8]}"
        assert await ensure_topics(backend.kafka_bootstrap, [topic], partitions=3) == [topic]
        assert await ensure_topics(backend.kafka_bootstrap, [topic], partitions=3) == []  # idempotent
        assert await _partition_count(backend.kafka_bootstrap, topic) == 3

        key, value = b"customer-1", b'{"hello": "world"}'
        partition, offset = await _produce(backend.kafka_bootstrap, topic, key, value)
        received = await _consume_one(backend.kafka_bootstrap, topic, partition, offset)
        assert (received.key, received.value) == (key, value)

        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(backend.mongo_url)
        try:
            customers = client["test_devstack"]["customers"]
            await customers.insert_one({"_id": "c-1", "name": "ACME Ltd"})
            assert await customers.find_one({"name": "ACME Ltd"}) == {
                "_id": "c-1",
                "name": "ACME Ltd",
            }
        finally:
            await client.close()
    finally:
        backend.stop()
    assert backend.processes, "the embedded backend runs child processes"
    assert all(not proc.is_running() and group_is_gone(proc.pid) for proc in backend.processes)


def test_services_on_the_embedded_store_keep_few_connections_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store runs commands on 6 threads, one per database at a time: a service's pool is sized
    so its queue waits in the service, not on the store's threads (see EMBEDDED_STORE_CONNECTIONS);
    an operator's CRM_MONGO_MAX_POOL_SIZE still wins."""
    spec = SERVICES[1]
    common = {"kafka_bootstrap": "127.0.0.1:1", "mongo_url": "mongodb://127.0.0.1:2", "jwt_secret": "x" * 32}
    for name, value in service_env(spec, base={}, **common).items():
        monkeypatch.setenv(name, value)
    assert ServiceSettings().mongo_max_pool_size == EMBEDDED_STORE_CONNECTIONS < 6
    told = service_env(spec, base={"CRM_MONGO_MAX_POOL_SIZE": "50"}, **common)
    assert told["CRM_MONGO_MAX_POOL_SIZE"] == "50"


def test_binaries_are_found() -> None:
    for path in (find_tansu(), find_weed(), find_nx()):
        assert path.is_file(), path


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    # A child that ignores SIGTERM and has a grandchild: stop() must still leave nothing.
    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('sig' + 'nals set', flush=True); time.sleep(60)"
    )
    proc = ManagedProcess("stubborn", [sys.executable, "-c", script], tmp_path / "stubborn.log")
    # The marker is built at run time: the log's header line already holds the argv.
    wait_until("child up", lambda: "signals set" in proc.log_tail(), timeout=10, process=proc)
    proc.stop(timeout=0.5)
    assert proc.describe_exit() == "killed by SIGKILL"
    wait_until("group gone", lambda: group_is_gone(proc.pid), timeout=5)


def test_free_ports_are_below_the_range_outgoing_connections_take_theirs_from() -> None:
    """A port handed to a server that binds it later is never one the kernel gives a client
    socket meanwhile (that was a service of `crm up` failing with "address already in use"),
    and never handed out twice by this process."""
    low = ephemeral_ports()[0]
    singles = [free_port() for _ in range(50)]
    assert all(port < low for port in singles) and len(set(singles)) == 50
    first = free_port_run(8)
    assert first + 8 <= low and not set(range(first, first + 8)) & set(singles)
    for port in range(first, first + 8):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free indeed


def test_a_taken_port_is_named_in_the_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"{port} \\(Kafka\\)"):
            ensure_ports_free({"Kafka": port})


def test_a_child_that_dies_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "doomed",
        [sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
        tmp_path / "d.log",
    )
    with pytest.raises(DevStackError, match=r"(?s)exited with code 3.*boom"):
        wait_until("never", lambda: False, timeout=30, process=proc)
    proc.stop()


async def _partition_count(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, value=value, key=key)
        return metadata.partition, metadata.offset
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    # Manual assignment: no consumer-group join to wait for (about 5 s on Tansu).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
