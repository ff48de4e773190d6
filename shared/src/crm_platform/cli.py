"""The ``crm`` command: run the local stack, mint tokens, watch the event stream."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from crm_platform.auth import Role, mint_token

app = typer.Typer(help="CRM platform tools.", no_args_is_help=True, add_completion=False)
events_app = typer.Typer(help="Read the event stream.", no_args_is_help=True)
app.add_typer(events_app, name="events")
console = Console()


@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(help="Where data lives (default: ./var in the repository).")] = None,
    memory: Annotated[
        bool, typer.Option("--memory", help="Keep Kafka in memory (events are lost on restart).")
    ] = False,
    kafka_port: Annotated[int, typer.Option(help="Kafka port.")] = 19092,
    mongo_port: Annotated[int, typer.Option(help="MongoDB port.")] = 27018,
) -> None:
    """Start Kafka, MongoDB and every service on this machine; Ctrl-C stops them all."""
    from crm_platform.devstack.runner import default_data_dir, run_up

    run_up((data_dir or default_data_dir()), durable=not memory, kafka_port=kafka_port, mongo_port=mongo_port)


@app.command()
def token(
    user: Annotated[str, typer.Option(help="User id (the token's subject).")],
    role: Annotated[list[Role], typer.Option(help="Role; repeat for several.")] = [Role.rep],  # noqa: B006
    department: Annotated[str | None, typer.Option(help="Department id.")] = None,
    department_path: Annotated[str | None, typer.Option(help="Department path from the root, e.g. /hq/east.")] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    hours: Annotated[float, typer.Option(help="Lifetime in hours.")] = 8.0,
    secret: Annotated[
        str | None, typer.Option(help="HS256 secret (default: CRM_JWT_SECRET, else the local stack's).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="The local stack's data directory.")] = None,
) -> None:
    """Mint an access token for local use (HS256, the embedded default)."""
    key = secret or os.environ.get("CRM_JWT_SECRET")
    if not key:
        from crm_platform.devstack.runner import default_data_dir, load_or_create_jwt_secret

        key = load_or_create_jwt_secret(data_dir or default_data_dir())
    typer.echo(
        mint_token(
            secret_or_private_key=key,
            user_id=user,
            roles=[r.value for r in role],
            department_id=department,
            department_path=department_path or (f"/{department}" if department else None),
            name=name,
            issuer=os.environ.get("CRM_JWT_ISSUER", "crm-directory"),
            audience=os.environ.get("CRM_JWT_AUDIENCE", "crm"),
            ttl=timedelta(hours=hours),
        )
    )


@events_app.command("tail")
def tail(
    topic: Annotated[list[str], typer.Option(help="Topic; repeat for several.")] = ["crm.customers.v1"],  # noqa: B006
    bootstrap: Annotated[
        str, typer.Option(envvar="CRM_KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")
    ] = "127.0.0.1:19092",
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest event.")] = False,
    count: Annotated[int, typer.Option(help="Stop after this many events (0: never).")] = 0,
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds without an event (0: never).")] = 0,
) -> None:
    """Print events as JSON lines, one per event (pipe it into jq)."""
    asyncio.run(_tail(topic, bootstrap, from_beginning, count, timeout))


async def _tail(topics: list[str], bootstrap: str, from_beginning: bool, count: int, timeout: float) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen = 0
    try:
        while count == 0 or seen < count:
            batch = await consumer.getmany(timeout_ms=int(timeout * 1000) if timeout else 1000)
            if not batch and timeout:
                break
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value) if record.value else None
                    print(
                        json.dumps(
                            {
                                "topic": record.topic,
                                "partition": record.partition,
                                "offset": record.offset,
                                "key": record.key.decode() if record.key else None,
                                "event": value,
                            },
                            ensure_ascii=False,
                        ),
                        flush=True,
                    )
                    seen += 1
    finally:
        await consumer.stop()


if __name__ == "__main__":
    app()
