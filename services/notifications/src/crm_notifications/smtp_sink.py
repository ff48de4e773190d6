"""A local SMTP sink (aiosmtpd): accepts every mail, keeps it, prints a line, never relays.

The embedded default runs it so no email leaves the machine (``crm-notifications smtp-sink``);
the tests start one in-process and read :attr:`SmtpSink.messages`.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import signal
import socket
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._sink.keep(message, raw, list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class SmtpSink:
    """aiosmtpd's Controller (its own thread and loop) with the messages it received."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, maildir: Path | None = None, echo: bool = False) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._maildir = maildir
        self._echo = echo
        # aiosmtpd checks its own port by connecting to it, so port 0 cannot be passed through:
        # ask the OS for a free one first (tests).
        self.port = port or _free_port(host)
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def keep(self, message: EmailMessage, raw: bytes, recipients: list[str]) -> None:
        with self._lock:
            self.messages.append(message)
            n = len(self.messages)
        if self._maildir is not None:
            self._maildir.mkdir(parents=True, exist_ok=True)
            (self._maildir / f"{time.strftime('%Y%m%dT%H%M%S')}-{n:06d}.eml").write_bytes(raw)
        if self._echo:
            print(f"mail to {', '.join(recipients)}: {message['Subject']}", flush=True)

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in str(m["To"])]


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="crm-notifications smtp-sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--maildir", type=Path, default=None, help="also store each mail as a .eml file here")
    args = parser.parse_args(argv)
    sink = SmtpSink(args.host, args.port, args.maildir, echo=True)
    sink.start()
    print(f"SMTP sink listening on {args.host}:{sink.port}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    sink.stop()
