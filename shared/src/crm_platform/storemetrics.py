"""Counting the commands each process sends to its store, by the work that sent them.

A create's cost is spread over the request, the outbox relay and every consumer that
reacts to its event; ``crm_store_commands_total{origin, command}`` on each service's
``/metrics`` lets a benchmark (or an operator) add them up across the system. The
origin is a context variable: set once where the work starts (the HTTP middleware,
the relay's task, a consumer's handler), inherited by everything that work awaits.
"""

from __future__ import annotations

from contextvars import ContextVar

from pymongo import monitoring

from crm_platform.metrics import STORE_COMMANDS

ORIGIN: ContextVar[str] = ContextVar("crm_store_origin", default="background")


class CommandCounter(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        STORE_COMMANDS.labels(ORIGIN.get(), event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
