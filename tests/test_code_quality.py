"""The linters and the type checker are part of the suite, so CI refuses what they refuse.

Same configuration as a developer's editor: ``pyproject.toml`` ([tool.ruff], [tool.mypy]).
"""

from __future__ import annotations

import re
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


#: A service decides *which records* with the caller's data scope (``Principal.scope``,
#: ``reaches_path``, ``can_see_owned``, ``mongo_visibility``) and *which actions* with a permission
#: (``Principal.holds``/``require``), both from the role definitions; never from the built-in role
#: names, which an administrator may redefine. The only exceptions are the places that are about
#: the built-in role itself, each listed here (path, then the line's text) with the reason.
BUILTIN_ROLE_NAMES_ALLOWED: dict[tuple[str, str], str] = {
    (
        "services/directory/src/crm_directory/application/bootstrap.py",
        'return Principal(user_id=f"system:{name}", name=name, roles=frozenset({Role.admin}))',
    ): "the system principal of start-up jobs: no token and no role book, so the built-in admin's defaults",
    (
        "services/directory/src/crm_directory/application/bootstrap.py",
        "roles=[Role.admin.value],",
    ): "the bootstrap administrator is created holding the built-in admin role",
    (
        "services/directory/src/crm_directory/application/departments.py",
        'if not {Role.manager.value, Role.admin.value} & set(user.get("roles") or []):  # scope-lint: builtin',
    ): "a department's manager is a user holding the built-in manager (or admin) role: data, not the caller",
}

_BUILTIN_ROLE_DECISION = re.compile(r"\b(is_admin|is_manager|require_role)\b|\bRole\.(admin|manager)\b")


def _decision_code() -> list[Path]:
    """Application and entrypoint code of every service, and the console's pages and helpers."""
    files: list[Path] = []
    for service in sorted((ROOT / "services").glob("*/src/*")):
        if service.name == "crm_console":
            files += sorted(service.rglob("*.py"))
        for layer in ("application", "entrypoints"):
            files += sorted((service / layer).rglob("*.py"))
    return files


def test_services_decide_reach_from_scopes_not_built_in_role_names() -> None:
    files = _decision_code()
    assert len(files) > 40, "the layers were not found"
    found: set[tuple[str, str]] = set()
    offending: list[str] = []
    for path in files:
        relative = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not _BUILTIN_ROLE_DECISION.search(line):
                continue
            key = (relative, line.strip())
            if key in BUILTIN_ROLE_NAMES_ALLOWED:
                found.add(key)
            else:
                offending.append(f"{relative}:{number}: {line.strip()}")
    assert not offending, (
        "decide with the caller's scope or permission (crm_platform.auth.Principal), or add the line "
        "to BUILTIN_ROLE_NAMES_ALLOWED with the reason it is about the built-in role itself:\n" + "\n".join(offending)
    )
    stale = set(BUILTIN_ROLE_NAMES_ALLOWED) - found
    assert not stale, f"allow-list entries that no longer match a line: {stale}"
