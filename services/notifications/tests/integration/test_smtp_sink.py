"""`crm-notifications smtp-sink`: the local mail sink the embedded default runs, as a real process."""

from __future__ import annotations

import asyncio
import email
import email.policy
import signal
import socket
import sys
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from crm_platform.testing.fixtures import eventually


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.process
async def test_the_sink_command_accepts_prints_and_stores_mail(tmp_path: Path) -> None:
    port = _free_port()
    maildir = tmp_path / "mail"
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "crm_notifications", "smtp-sink", "--port", str(port), "--maildir", str(maildir)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await eventually(lambda: _open(port), timeout=30, message="sink listening")
        message = EmailMessage()
        message["From"] = "crm@localhost"
        message["To"] = "li.lei@example.com"
        message["Subject"] = "待办已逾期：签合同"
        message.set_content("正文 /tasks/t-1")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=10)
        stored = await eventually(lambda: list(maildir.glob("*.eml")), timeout=10, message="mail stored")
        raw = await asyncio.to_thread(Path(stored[0]).read_bytes)
        kept = email.message_from_bytes(raw, policy=email.policy.default)
        assert kept["Subject"] == "待办已逾期：签合同" and kept["To"] == "li.lei@example.com"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 20)
    out = output.decode()
    assert proc.returncode == 0, out
    assert f"SMTP sink listening on 127.0.0.1:{port}" in out
    assert "mail to li.lei@example.com: 待办已逾期：签合同" in out
