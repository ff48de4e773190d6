"""docker-compose.yml is valid and runs every registered service the way deploy/README.md says.

Needs the `docker-compose` command (Debian: `apt-get install docker-compose`), not
a Docker engine: `config` only parses, merges and validates. A missing command is
a failure, not a skip: CI installs it, so its absence is a broken machine.
"""

from __future__ import annotations

import functools
import importlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crm_platform.devstack.services import SERVICES, ServiceSpec

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICE_ENV = (
    "CRM_KAFKA_BOOTSTRAP_SERVERS",
    "CRM_KAFKA_ENABLE_IDEMPOTENCE",
    "CRM_MONGO_URL",
    "CRM_MONGO_DATABASE",
    "CRM_HTTP_HOST",
    "CRM_HTTP_PORT",
    "CRM_JWT_ALGORITHM",
    "CRM_JWT_SECRET",
    "CRM_LOG_LEVEL",
    "CRM_LOG_FORMAT",
)


def test_compose_file_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_every_service_has_a_healthy_built_container(spec: ServiceSpec) -> None:
    services = _config()["services"]
    assert spec.name in services, f"docker-compose.yml has no `{spec.name}` service"
    service = services[spec.name]

    build = service["build"]
    assert Path(build["context"]).resolve() == ROOT, "build from the repo root: images need shared/"
    assert build["dockerfile"] == f"services/{spec.name}/Dockerfile"

    env = service["environment"]
    missing = [name for name in SERVICE_ENV if name not in env]
    assert not missing, f"{spec.name} lacks {missing}"
    assert str(env["CRM_HTTP_PORT"]) == str(spec.http_port)
    assert env["CRM_MONGO_DATABASE"] == spec.database
    assert env["CRM_HTTP_HOST"] == "0.0.0.0"  # reachable from outside its container
    assert env["CRM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert str(env["CRM_KAFKA_ENABLE_IDEMPOTENCE"]).lower() == "true"  # real Kafka
    assert "replicaSet=rs0" in env["CRM_MONGO_URL"]

    assert "/healthz" in " ".join(service["healthcheck"]["test"])
    assert _published_ports(service) == {(spec.http_port, spec.http_port)}
    depends = service["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["mongo"]["condition"] == "service_healthy"


def test_kafka_is_a_single_kraft_node() -> None:
    kafka = _config()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@kafka:")
    assert not any("ZOOKEEPER" in name for name in env)
    assert "healthcheck" in kafka


def test_kafka_init_creates_every_service_topic() -> None:
    init = _config()["services"]["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    # The console publishes no events: no topics for it.
    assert set(init["environment"]["CRM_SERVICES"].split()) >= {spec.name for spec in SERVICES if spec.topics}
    assert str(init["environment"]["CRM_TOPIC_PARTITIONS"]) == "3"
    script = " ".join(init["command"])
    assert "crm.$$service.v1" in script and "crm.$$service.v1.dlq" in script


def test_mongo_is_a_one_node_replica_set() -> None:
    mongo = _config()["services"]["mongo"]
    assert mongo["image"].startswith("mongo:7")
    command = mongo["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check and "isWritablePrimary" in check


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_dockerfile_runs_the_service_as_non_root(spec: ServiceSpec) -> None:
    lines = [
        line.strip()
        for line in (ROOT / "services" / spec.name / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the service must not run as root"
    assert f"EXPOSE {spec.http_port}" in lines
    assert lines[-1] == f'CMD ["python", "-m", "{spec.module}"]'


# --- helpers --------------------------------------------------------------------


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("docker-compose")
    if command is None:
        pytest.fail("the `docker-compose` command is missing: apt-get install -y docker-compose")
    return subprocess.run(
        [command, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@functools.cache
def _config() -> dict[str, Any]:
    """The file as compose resolves it: anchors merged, variables filled in."""
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    parsed = _yaml_to_python(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def _yaml_to_python(text: str) -> Any:
    try:
        yaml = importlib.import_module("yaml")  # PyYAML is optional here
    except ImportError:
        return _yaml_with_composes_python(text)
    return yaml.safe_load(text)


def _yaml_with_composes_python(text: str) -> Any:
    # Debian's docker-compose is a Python program that depends on PyYAML, so its
    # interpreter can parse YAML even where this virtualenv has no PyYAML.
    command = shutil.which("docker-compose")
    assert command is not None
    shebang = Path(command).read_bytes()[:200].split(b"\n", 1)[0].decode(errors="replace")
    if not shebang.startswith("#!") or "python" not in shebang:
        pytest.fail("install PyYAML: docker-compose here is not a Python program to borrow it from")
    interpreter = shebang[2:].split()
    script = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    result = subprocess.run(
        [*interpreter, "-c", script],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def _published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(published, target) pairs, from the long form `config` prints or "8001:8001"."""
    pairs: set[tuple[int, int]] = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:  # "[ip:]published:target[/protocol]"
            parts = str(port).split("/")[0].split(":")
            pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs
