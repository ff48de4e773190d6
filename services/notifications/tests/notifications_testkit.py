"""Helpers of the notifications tests: people, the other services' events, HTTP receivers.

A module of its own (on sys.path through conftest) so that test modules can import it under
``--import-mode=importlib``; the name is unique in the repository on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from crm_notifications.application.subscriptions import resolve
from crm_platform.contracts import customers, interactions, pipeline
from crm_platform.contracts import directory as directory_ev
from crm_platform.events import EventEnvelope, EventType, to_kafka
from crm_platform.testing.fixtures import auth, eventually, unique

PROBLEM = "application/problem+json"


# --- people --------------------------------------------------------------------------------------


@dataclass
class Person:
    id: str
    email: str
    language: str
    department_path: str
    roles: list[str]

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.id, self.roles, self.department_path)

    def match(self, etag: str) -> dict[str, str]:
        return {**self.headers, "If-Match": etag}


@dataclass
class World:
    """The other services as seen from here: events produced to their topics."""

    producer: AIOKafkaProducer
    db: Any
    published: list[EventEnvelope] = field(default_factory=list)

    async def publish(self, envelope: EventEnvelope, topic: str) -> EventEnvelope:
        key, value, headers = to_kafka(envelope.model_dump(mode="json"))
        await self.producer.send_and_wait(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
        return envelope

    async def emit(
        self, event_type: EventType[Any], subject: str, data: Any, *, actor: str | None = None, version: int = 1
    ) -> EventEnvelope:
        envelope = event_type.build(
            source="/crm/test",
            subject=subject,
            data=data,
            aggregate_version=version,
            time=datetime.now(UTC),
            actor=actor,
        )
        return await self.publish(envelope, event_type.topic)

    async def person(
        self, language: str = "zh-CN", department_path: str | None = None, roles: list[str] | None = None
    ) -> Person:
        """A user known to the directory copy (waits until it is there)."""
        user_id = unique("u")
        path = department_path or f"/{unique('d')}"
        now = datetime.now(UTC)
        snapshot = directory_ev.UserSnapshot(
            user_id=user_id,
            email=f"{user_id}@example.com",
            name=f"Name {user_id}",
            language=language,  # type: ignore[arg-type]
            roles=roles or ["rep"],  # type: ignore[arg-type]
            department_id=path.rsplit("/", 1)[-1],
            department_path=path,
            created_at=now,
            updated_at=now,
        )
        await self.emit(directory_ev.USER_CREATED, user_id, directory_ev.UserCreated(user=snapshot))
        await eventually(lambda: self.db["directory_users"].find_one({"_id": user_id}), timeout=30, message="user")
        return Person(user_id, snapshot.email, language, path, list(roles or ["rep"]))

    async def department(self, department_id: str, path: str, manager_id: str | None) -> None:
        now = datetime.now(UTC)
        snapshot = directory_ev.DepartmentSnapshot(
            department_id=department_id,
            name=department_id,
            path=path,
            parent_id=None,
            manager_id=manager_id,
            created_at=now,
            updated_at=now,
        )
        await self.emit(
            directory_ev.DEPARTMENT_CREATED, department_id, directory_ev.DepartmentCreated(department=snapshot)
        )
        await eventually(
            lambda: self.db["directory_departments"].find_one({"_id": department_id}), timeout=30, message="department"
        )

    async def inbox(self, client: httpx.AsyncClient, person: Person, count: int = 1, **params: Any) -> list[Any]:
        """Wait until ``person`` has at least ``count`` notifications; return them (newest first)."""

        async def probe() -> list[Any] | None:
            response = await client.get("/v1/notifications", headers=person.headers, params=params)
            assert response.status_code == 200, response.text
            items: list[Any] = response.json()["items"]
            return items if len(items) >= count else None

        found: list[Any] = await eventually(probe, timeout=30, message=f"{count} notification(s) for {person.id}")
        return found


# --- HTTP receivers for webhooks ----------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


Behaviour = Callable[[Received, int], Awaitable[int]]


class Receiver:
    """A minimal HTTP/1.1 server on a free loopback port; ``behaviour`` picks each response's status."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.received: list[Received] = []
        self._behaviour = behaviour
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            received = Received(headers, body, asyncio.get_running_loop().time())
            self.received.append(received)
            status = await self._behaviour(received, len(self.received)) if self._behaviour else 204
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class ScriptedDns:
    """The service's resolver in tests: real DNS, except for names a test scripts.

    ``script(name, [answers...])`` makes the n-th lookup of ``name`` get the n-th answer (the
    last one repeats): a name that rebinds between two lookups.
    """

    def __init__(self) -> None:
        self._scripts: dict[str, list[list[str]]] = {}
        self.lookups: dict[str, int] = {}

    def script(self, name: str, answers: list[list[str]]) -> None:
        self._scripts[name] = answers
        self.lookups[name] = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        answers = self._scripts.get(host)
        if answers is None:
            return await resolve(host, port)
        n = self.lookups[host]
        self.lookups[host] = n + 1
        return answers[min(n, len(answers) - 1)]


# --- snapshots of other services' aggregates -------------------------------------------------


def now() -> datetime:
    return datetime.now(UTC)


def customer(owner_id: str | None, name: str = "上海星辰科技有限公司") -> customers.CustomerSnapshot:
    return customers.CustomerSnapshot(
        customer_id=unique("c"), kind="company", name=name, owner_id=owner_id, created_at=now(), updated_at=now()
    )


def opportunity(
    owner_id: str, amount: str = "120000.00", department_path: str | None = None
) -> pipeline.OpportunitySnapshot:
    return pipeline.OpportunitySnapshot(
        opportunity_id=unique("o"),
        name="ERP 升级项目",
        customer_id=unique("c"),
        amount=amount,
        currency="CNY",
        probability=100,
        pipeline_id="default",
        stage_id="won",
        stage_name="赢单",
        stage_kind="won",
        stage_entered_at=now(),
        status="won",
        owner_id=owner_id,
        department_path=department_path,
        created_at=now(),
        updated_at=now(),
    )


def move(actor: str) -> pipeline.StageMove:
    return pipeline.StageMove(
        from_stage_id="negotiation",
        from_stage_name="谈判",
        to_stage_id="won",
        to_stage_name="赢单",
        moved_by=actor,
        moved_at=now(),
    )


def task(assignee_id: str, title: str = "回访客户") -> interactions.TaskSnapshot:
    return interactions.TaskSnapshot(
        task_id=unique("t"),
        title=title,
        due_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        assignee_id=assignee_id,
        created_by=assignee_id,
        created_at=now(),
        updated_at=now(),
    )


def feedback(handler_id: str | None, kind: str = "complaint") -> interactions.FeedbackSnapshot:
    return interactions.FeedbackSnapshot(
        feedback_id=unique("f"),
        kind=kind,  # type: ignore[arg-type]
        priority="high",
        title="发票金额有误",
        description="客户反映发票金额与合同不符",
        customer_id=unique("c"),
        status="open",
        reported_by="u-reporter",
        handler_id=handler_id,
        opened_at=now(),
        updated_at=now(),
    )


def in_days(days: int) -> datetime:
    return now() + timedelta(days=days)
