"""The linters and the type checker are part of the suite, so CI refuses what they refuse.

Same configuration as a developer's editor: ``pyproject.toml`` ([tool.ruff], [tool.mypy]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def packages() -> list[str]:
    return ["shared/src", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "services").glob("*/src"))]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("command", [("ruff", "check", "."), ("ruff", "format", "--check", ".")])
def test_ruff(command: tuple[str, ...]) -> None:
    result = run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_on_every_package() -> None:
    result = run("mypy", *packages())
    assert result.returncode == 0, result.stdout + result.stderr
