"""The ``crm`` command: run the local stack, mint tokens, watch the event stream."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

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
    http_port_base: Annotated[
        int | None,
        typer.Option(
            help="Services listen on BASE+1 … BASE+8 (default: 8001 … 8007, the console 8000), for a second stack."
        ),
    ] = None,
    smtp_port: Annotated[int, typer.Option(help="The local SMTP sink's port.")] = 8025,
    restart_backoff: Annotated[
        float,
        typer.Option(help="Seconds before restarting a child that died; doubles for each restart in a row, max 30."),
    ] = 1.0,
) -> None:
    """Start Kafka, MongoDB and every service on this machine; a child that dies is restarted; Ctrl-C stops them all."""
    from crm_platform.devstack.runner import default_data_dir, run_up
    from crm_platform.devstack.services import SERVICES
    from crm_platform.devstack.supervisor import Backoff

    specs = list(SERVICES)
    if http_port_base is not None:
        specs = [dataclasses.replace(spec, http_port=http_port_base + i) for i, spec in enumerate(specs, start=1)]
    run_up(
        (data_dir or default_data_dir()),
        durable=not memory,
        kafka_port=kafka_port,
        mongo_port=mongo_port,
        services=specs,
        smtp_port=smtp_port,
        backoff=Backoff(initial=restart_backoff, cap=max(30.0, restart_backoff)),
    )


@app.command()
def status(
    data_dir: Annotated[Path | None, typer.Option(help="The local stack's data directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status file as it is.")] = False,
) -> None:
    """What `crm up` is running: each child's state, pid, restarts and last exit. Exit code 1 if not all run."""
    from rich.table import Table
    from rich.text import Text

    from crm_platform.devstack.runner import StackLayout, default_data_dir
    from crm_platform.devstack.supervisor import read_status

    layout = StackLayout((data_dir or default_data_dir()).resolve())
    found = read_status(layout.status_file)
    if found is None:
        console.print(f"no status at {layout.status_file}: `crm up` has not run with this data dir")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        alive = "running" if found["running"] else "[red]not running[/red] (last seen)"
        console.print(f"crm up (pid {found['supervisor_pid']}): {alive}, as of {found['updated_at']}")
        table = Table()
        for column in ("child", "state", "pid", "port", "restarts", "up (s)", "last exit", "last error"):
            table.add_column(column)
        for name, child in found["children"].items():
            table.add_row(
                name,
                child["state"] if child["state"] == "running" else f"[yellow]{child['state']}[/yellow]",
                str(child["pid"] or ""),
                str(child["port"] or ""),
                str(child["restarts"]),
                str(child["up_seconds"] or ""),
                # Text, not markup: errors and exits may hold [brackets].
                Text(f"{child['last_exit'] or ''} {child['last_exit_at'] or ''}".strip()),
                Text(child["last_error"] or ""),
            )
        console.print(table)
    everything_runs = found["running"] and all(c["state"] == "running" for c in found["children"].values())
    if not everything_runs:
        raise typer.Exit(1)


@app.command()
def token(
    user: Annotated[str, typer.Option(help="User id (the token's subject).")],
    role: Annotated[
        list[str],
        typer.Option(help="Role id: admin, manager, rep, integrator or one defined at /v1/roles; repeat for several."),
    ] = [Role.rep.value],  # noqa: B006
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
            roles=list(role),
            department_id=department,
            department_path=department_path or (f"/{department}" if department else None),
            name=name,
            issuer=os.environ.get("CRM_JWT_ISSUER", "crm-directory"),
            audience=os.environ.get("CRM_JWT_AUDIENCE", "crm"),
            ttl=timedelta(hours=hours),
        )
    )


def _backup_target(service: str, service_url: str | None) -> tuple[Any, Any]:
    """The service's app, built from its own settings (CRM_* variables) but not started, and its target."""
    import importlib

    from crm_platform.backup import target_of
    from crm_platform.devstack.services import SERVICES

    specs = {s.name: s for s in SERVICES if not s.web}
    if service not in specs:
        console.print(f"[red]{service!r} is not a service with a database of its own: one of {', '.join(specs)}[/red]")
        raise typer.Exit(2)
    # The app is only read (its database, topics, consumer groups), never served: a token secret is
    # not needed, but building it checks one is there.
    if os.environ.get("CRM_JWT_ALGORITHM", "HS256") == "HS256":
        os.environ.setdefault("CRM_JWT_SECRET", "not-used-by-crm-backup")
    app = importlib.import_module(f"{specs[service].module}.main").create_app()
    target = target_of(app)
    if service_url is not None:
        target = dataclasses.replace(target, url=service_url)
    return app, target


@app.command()
def backup(
    service: Annotated[str, typer.Argument(help="The service whose data to back up, e.g. customers.")],
    to: Annotated[Path, typer.Option("--to", help="A new (or empty) directory for the backup.")],
) -> None:
    """Dump a service's database (every collection, its indexes) with its topic and consumer offsets.

    Reads the service's own settings (CRM_MONGO_URL, CRM_MONGO_DATABASE, CRM_KAFKA_BOOTSTRAP_SERVERS...),
    so run it with the service's environment. The service may keep running.
    """
    from crm_platform.backup import BackupError
    from crm_platform.backup import backup as take_backup

    app, target = _backup_target(service, None)

    async def run() -> dict[str, Any]:
        try:
            return await take_backup(target, to)
        finally:
            await app.state.kit.mongo.close()

    try:
        manifest = asyncio.run(run())
    except BackupError as exc:
        console.print(f"backup refused: {exc}", style="red", markup=False)
        raise typer.Exit(2) from exc
    counts = ", ".join(f"{c['name']} {c['documents']}" for c in manifest["collections"])
    console.print(f"backed up {service} ({manifest['database']}) into {to}: {counts}")
    console.print(f"offsets: {json.dumps(manifest['offsets'], sort_keys=True)}", markup=False)


@app.command()
def restore(
    service: Annotated[str, typer.Argument(help="The service whose data to restore, e.g. customers.")],
    from_: Annotated[Path, typer.Option("--from", help="The backup's directory (made by `crm backup`).")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore even though something answers on the service's URL (/healthz)."),
    ] = False,
    service_url: Annotated[
        str | None,
        typer.Option(help="Where the service would answer (default: http://CRM_HTTP_HOST:CRM_HTTP_PORT)."),
    ] = None,
) -> None:
    """Replace a service's database with a backup, set its consumer groups back, restate what it published since.

    Stop every replica of the service first. Refused, with nothing changed, when the backup does not
    check out, the service answers, or aggregates published since the backup cannot be restated.
    """
    from crm_platform.backup import BackupError
    from crm_platform.backup import restore as run_restore

    app, target = _backup_target(service, service_url)

    async def run() -> Any:
        try:
            return await run_restore(target, from_, force=force)
        finally:
            await app.state.kit.mongo.close()

    try:
        report = asyncio.run(run())
    except BackupError as exc:
        console.print(f"restore refused: {exc}", style="red", markup=False)
        raise typer.Exit(2) from exc
    for line in report.lines():
        console.print(line, markup=False)


@app.command("rebuild-copies")
def rebuild_copies(
    service: Annotated[str, typer.Argument(help="The service whose read copies to rebuild, e.g. pipeline.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Rebuild even though something answers on the service's URL (/healthz)."),
    ] = False,
    service_url: Annotated[
        str | None,
        typer.Option(help="Where the service would answer (default: http://CRM_HTTP_HOST:CRM_HTTP_PORT)."),
    ] = None,
) -> None:
    """Drop a service's read copies of customers, opportunities and users and refill them from the topics.

    Up to what the service's consumer group has committed; the service consumes the rest when it
    starts. Stop every replica of the service first. Reporting and pool clocks: `crm-reporting rebuild`,
    `crm-pool rebuild`.
    """
    from crm_platform.backup import service_answers
    from crm_platform.readmodels.rebuild import rebuild_read_copies

    app, target = _backup_target(service, service_url)
    kit = app.state.kit

    async def run() -> dict[str, int]:
        try:
            if not force and await service_answers(target.url):
                console.print(
                    f"refused: {service} answers at {target.url}/healthz: stop every replica of it first",
                    style="red",
                    markup=False,
                )
                raise typer.Exit(2)
            return await rebuild_read_copies(target.kafka_bootstrap, kit.read_copies, kit.consumers)
        finally:
            await kit.mongo.close()

    if not kit.read_copies:
        console.print(f"{service} keeps no read copies of customers, opportunities or users")
        raise typer.Exit(0)
    for collections, applied in asyncio.run(run()).items():
        console.print(f"{collections}: rebuilt from {applied} events", markup=False)


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
