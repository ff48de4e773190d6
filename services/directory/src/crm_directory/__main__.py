"""``crm-directory`` / ``python -m crm_directory``: run the service, or create the first administrator.

python -m crm_directory                     # serve (settings from CRM_* variables)
crm-directory create-admin --email it@example.com --name "IT 管理员" [--department-path /hq]
echo "$PASSWORD" | crm-directory create-admin --email ... --name ... --password-stdin
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from pymongo import AsyncMongoClient

from crm_directory.application.bootstrap import create_admin as create_admin_
from crm_directory.application.directory import Directory
from crm_directory.main import create_app
from crm_directory.settings import DirectorySettings
from crm_platform.clock import SystemClock
from crm_platform.errors import DomainError
from crm_platform.serving import serve as serve_http

cli = typer.Typer(help="The CRM directory service.", add_completion=False)


@cli.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    """Without a command: serve."""
    if ctx.invoked_subcommand is None:
        serve()


@cli.command()
def serve() -> None:
    """Run the HTTP API (host and port from CRM_HTTP_HOST / CRM_HTTP_PORT)."""
    settings = DirectorySettings()
    serve_http(create_app(settings), settings)  # forwarded headers from CRM_TRUSTED_PROXIES only


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The administrator's email (their sign-in name).")],
    name: Annotated[str, typer.Option(help="Their display name.")],
    department_path: Annotated[
        str, typer.Option(help="Their department; missing departments on the path are created.")
    ] = "/hq",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin instead of generating one.")
    ] = False,
) -> None:
    """Create an administrator (and the root department if missing). A generated password is printed once."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    if password_stdin and not password:
        typer.echo("error: --password-stdin given but stdin is empty", err=True)
        raise typer.Exit(2)
    try:
        user, generated = asyncio.run(_create_admin(email, name, department_path, password))
    except (DomainError, ValueError) as exc:
        typer.echo(f"error: {getattr(exc, 'detail', None) or exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Administrator created: {user['email']} (id {user['_id']}, department {user['department_path']}).")
    if generated:
        typer.echo(f"Password (shown once, change it after signing in): {generated}")


async def _create_admin(
    email: str, name: str, department_path: str, password: str | None
) -> tuple[dict[str, object], str | None]:
    settings = DirectorySettings()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        # The events wait in the outbox; the running service's relay publishes them.
        directory = Directory(client[settings.mongo_database], SystemClock(), settings, "/crm/directory")
        await directory.ensure_indexes()
        await directory.roles.seed()  # the admin role must be defined before a user holds it
        return await create_admin_(
            directory, email=email, name=name, department_path=department_path, password=password, via="cli"
        )
    finally:
        await client.close()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
