"""deploy/k8s renders to valid Kubernetes objects that run every registered service as deploy/README.md says.

Rendered without kubectl by :mod:`crm_platform.testing.kustomize` (checked against
``kubectl kustomize`` where that command exists), then validated strictly against the
Kubernetes JSON schemas that ``kubernetes-validate`` ships (no network). The rest are
the rules the manifests must keep: one Deployment, Service, autoscaler and disruption
budget per service in :data:`crm_platform.devstack.SERVICES`; probes on the service's
own port; only real setting names; no secret values in the repository; autoscaler
ceilings the service's Kafka partitions can serve.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from crm_platform.devstack.services import SERVICES, ServiceSpec
from crm_platform.settings import ServiceSettings
from crm_platform.testing.kustomize import containers, identity, load_documents, render, split_image

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "example": K8S / "overlays" / "example"}
SECRETS_TEMPLATE = K8S / "secrets.example.yaml"
# The oldest Kubernetes the manifests are for, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
SHARED_CONFIG = "crm-config"
SHARED_SECRET = "crm-secrets"

Document = dict[str, Any]


@functools.cache
def rendered(kustomization: str) -> tuple[Document, ...]:
    return tuple(render(KUSTOMIZATIONS[kustomization]))


def find(kustomization: str, kind: str, name: str) -> Document:
    matches = [doc for doc in rendered(kustomization) if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kustomization}: expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def deployment(spec: ServiceSpec, kustomization: str = "example") -> Document:
    return find(kustomization, "Deployment", f"crm-{spec.name}")


def container(spec: ServiceSpec, kustomization: str = "example") -> Document:
    found = [c for c in containers(deployment(spec, kustomization)) if c["name"] == spec.name]
    assert len(found) == 1, f"crm-{spec.name} has no container named {spec.name}"
    return found[0]


def settings_class(spec: ServiceSpec) -> type[ServiceSettings]:
    module = importlib.import_module(f"{spec.module}.settings")
    classes = {
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, ServiceSettings) and value is not ServiceSettings
    }
    assert len(classes) == 1, f"{spec.module}.settings should define one settings class, has {classes}"
    return classes.pop()


def setting_names(cls: type[ServiceSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def secret_setting_names(cls: type[ServiceSettings]) -> set[str]:
    """The settings typed as secrets (SecretStr or SecretStr | None): never in a ConfigMap."""
    prefix = cls.model_config.get("env_prefix", "")
    return {
        f"{prefix}{name}".upper()
        for name, field in cls.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    }


def environment(spec: ServiceSpec, kustomization: str = "example") -> dict[str, str]:
    """What the container's environment holds from its ConfigMaps, in envFrom order (the later source wins).

    Secrets are not in the repository: the shared one is stood in for by a test value.
    """
    env: dict[str, str] = {}
    for source in container(spec, kustomization).get("envFrom", []):
        if "configMapRef" in source:
            env |= find(kustomization, "ConfigMap", source["configMapRef"]["name"])["data"]
        elif source["secretRef"]["name"] == SHARED_SECRET:
            env["CRM_JWT_SECRET"] = "test-only-secret"
    for var in container(spec, kustomization).get("env", []):
        env[var["name"]] = var["value"]
    return env


def rendered_settings(spec: ServiceSpec, monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    """The service's settings read from the example overlay's environment, and from nothing else."""
    for name in [name for name in os.environ if name.startswith("CRM_")]:
        monkeypatch.delenv(name)
    for name, value in environment(spec).items():
        monkeypatch.setenv(name, value)
    return settings_class(spec)()


def resolve_port(spec: ServiceSpec, port: int | str) -> int:
    """A probe's or a Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container(spec).get("ports", []) if p.get("name") == port]
    assert len(named) == 1, f"crm-{spec.name}: no container port named {port}"
    return int(named[0])


# --- the renderer and the schemas -----------------------------------------------------------------


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: nothing to compare with")
@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_the_renderer_builds_what_kubectl_kustomize_builds(kustomization: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZATIONS[kustomization])], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    theirs = {identity(doc): doc for doc in yaml.safe_load_all(result.stdout) if doc}
    ours = {identity(doc): doc for doc in rendered(kustomization)}
    assert ours.keys() == theirs.keys()
    different = [key for key in ours if ours[key] != theirs[key]]
    assert not different, f"rendered differently from kubectl: {different}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_every_rendered_object_is_valid_for_kubernetes(kustomization: str, version: str) -> None:
    objects = rendered(kustomization)
    assert len(objects) >= 5 * len(SERVICES)
    errors = []
    for doc in objects:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{identity(doc)}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_secrets_template_is_valid_for_kubernetes(version: str) -> None:
    for doc in load_documents(SECRETS_TEMPLATE):
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The schema check is worth something: an unknown field (a typo) fails it."""
    broken = copy.deepcopy(deployment(SERVICES[0]))
    kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


# --- every service, run the way deploy/README.md says ----------------------------------------------


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_every_service_has_a_deployment_service_autoscaler_and_disruption_budget(spec: ServiceSpec) -> None:
    name = f"crm-{spec.name}"
    pod_labels = deployment(spec)["spec"]["template"]["metadata"]["labels"]
    selector = deployment(spec)["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()

    service = find("example", "Service", name)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == spec.http_port
    assert resolve_port(spec, port["targetPort"]) == spec.http_port

    hpa = find("example", "HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}

    pdb = find("example", "PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_the_container_is_the_services_image_on_its_port(spec: ServiceSpec) -> None:
    dockerfile = (ROOT / "services" / spec.name / "Dockerfile").read_text()
    exposed = re.findall(r"^EXPOSE (\d+)$", dockerfile, re.M)
    assert exposed == [str(spec.http_port)], f"services/{spec.name}/Dockerfile exposes {exposed}"
    assert f"-t crm-{spec.name} " in dockerfile, "the Dockerfile's build command names the image"
    assert f'CMD ["python", "-m", "{spec.module}"]' in dockerfile

    base = container(spec, "base")
    assert base["image"] == f"crm-{spec.name}"
    assert [p["containerPort"] for p in base["ports"]] == [spec.http_port]

    pinned = container(spec)["image"]
    name, tag, digest = split_image(pinned)
    assert name.endswith(f"/crm-{spec.name}"), pinned
    assert (tag and tag != "latest") or digest, f"the example overlay runs {pinned}: pin a release"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_probes_ask_the_service_itself(spec: ServiceSpec) -> None:
    c = container(spec)
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        check = c[probe]["httpGet"]
        assert check["path"] == path, f"{probe} asks {check['path']}"
        assert resolve_port(spec, check["port"]) == spec.http_port, f"{probe} asks another port"
    readiness, liveness = c["readinessProbe"], c["livenessProbe"]
    # /readyz waits up to 2 s for MongoDB and 2 s for Kafka; a rebalance must not empty the Service.
    assert readiness["timeoutSeconds"] >= 5
    assert readiness["periodSeconds"] * readiness["failureThreshold"] >= 30
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "start-up hooks need time"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_pods_run_locked_down_with_room_to_spool_uploads(spec: ServiceSpec) -> None:
    dockerfile = (ROOT / "services" / spec.name / "Dockerfile").read_text()
    [uid] = re.findall(r"--uid (\d+)", dockerfile)
    pod = deployment(spec)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)
    # Service links would put CRM_<SERVICE>_PORT=tcp://... variables into our settings prefix.
    assert pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["topologySpreadConstraints"]

    c = container(spec)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp, "uploads spool to /tmp: mount a writable volume there"
    [volume] = [v for v in pod["volumes"] if v["name"] == tmp[0]["name"]]
    assert "emptyDir" in volume

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys(), f"{kind} need cpu and memory"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_the_autoscaler_owns_the_replica_count(spec: ServiceSpec) -> None:
    for kustomization in KUSTOMIZATIONS:
        assert "replicas" not in deployment(spec, kustomization)["spec"], "an apply would undo the autoscaler"
        hpa = find(kustomization, "HorizontalPodAutoscaler", f"crm-{spec.name}")["spec"]
        assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"], "two replicas at least, for availability"
        [metric] = hpa["metrics"]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"


def has_rebuild_command(spec: ServiceSpec) -> bool:
    main = (ROOT / "services" / spec.name / "src" / spec.module / "__main__.py").read_text()
    return 'sys.argv[1:] == ["rebuild"]' in main


@pytest.mark.parametrize("spec", [s for s in SERVICES if has_rebuild_command(s)], ids=lambda spec: spec.name)
def test_a_rebuild_is_a_job_started_by_hand_with_the_services_image_and_settings(spec: ServiceSpec) -> None:
    for kustomization in KUSTOMIZATIONS:
        cron = find(kustomization, "CronJob", f"crm-{spec.name}-rebuild")
        assert cron["spec"]["suspend"] is True, "never on a schedule: an operator starts it"
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        [job] = list(containers(cron))
        served = container(spec, kustomization)
        assert job["image"] == served["image"]
        assert job["envFrom"] == served["envFrom"]
        assert job["command"] == ["python", "-m", spec.module, "rebuild"]
        assert job["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"cpu", "memory"} <= job["resources"]["limits"].keys()


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_no_service_budget_or_deployment_selects_a_pod_it_does_not_own(kustomization: str) -> None:
    """A Service sending requests to a rebuild job, or a budget counting another service's pods, would be wrong."""
    objects = rendered(kustomization)
    pods = {
        identity(doc): doc["spec"]["template"]["metadata"]["labels"] for doc in objects if doc["kind"] == "Deployment"
    }
    pods |= {
        identity(doc): doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        for doc in objects
        if doc["kind"] == "CronJob"
    }
    for doc in objects:
        if doc["kind"] == "Service":
            selector = doc["spec"]["selector"]
        elif doc["kind"] in ("Deployment", "PodDisruptionBudget"):
            selector = doc["spec"]["selector"]["matchLabels"]
        else:
            continue
        name = doc["metadata"]["name"]
        selected = [pod for pod, labels in pods.items() if selector.items() <= labels.items()]
        assert selected == [("Deployment", doc["metadata"].get("namespace", ""), name)], f"{name} selects {selected}"


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_every_variable_given_is_a_setting_of_the_service(spec: ServiceSpec) -> None:
    known = setting_names(settings_class(spec))
    for kustomization in KUSTOMIZATIONS:
        given = environment(spec, kustomization)
        unknown = sorted(set(given) - known)
        assert not unknown, f"{kustomization}: crm-{spec.name} gets {unknown}, which its settings do not read"


def test_shared_config_and_secret_hold_only_common_settings() -> None:
    common = setting_names(ServiceSettings)
    for kustomization in KUSTOMIZATIONS:
        shared = find(kustomization, "ConfigMap", SHARED_CONFIG)["data"]
        assert set(shared) <= common, f"{kustomization}: {sorted(set(shared) - common)} are not common settings"
    [secret] = [doc for doc in load_documents(SECRETS_TEMPLATE) if doc["metadata"]["name"] == SHARED_SECRET]
    assert set(secret["stringData"]) <= common


def test_service_secrets_in_the_template_hold_settings_of_their_service() -> None:
    by_secret = {f"crm-{spec.name}-secrets": spec for spec in SERVICES}
    for doc in load_documents(SECRETS_TEMPLATE):
        name = doc["metadata"]["name"]
        if name == SHARED_SECRET:
            continue
        assert name in by_secret, f"{name}: no Deployment reads it"
        known = setting_names(settings_class(by_secret[name]))
        assert set(doc["stringData"]) <= known, f"{name}: {sorted(set(doc['stringData']) - known)}"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_the_service_starts_with_the_rendered_settings(spec: ServiceSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values parse (booleans, ports, JSON lists, time zones) and say what the service needs in a cluster."""
    settings = rendered_settings(spec, monkeypatch)
    assert settings.http_port == spec.http_port
    assert settings.mongo_database == spec.database
    assert settings.http_host == "0.0.0.0"  # reachable from the Service
    assert settings.kafka_enable_idempotence is True  # real Kafka
    assert settings.log_format == "json"
    assert settings.jwt_secret.get_secret_value() == "test-only-secret", "the secret comes from crm-secrets"


# The console consumes no events (no consumer groups, no partitions to share): nothing to check.
@pytest.mark.parametrize("spec", [s for s in SERVICES if not s.web], ids=lambda spec: spec.name)
def test_the_ceiling_leaves_every_replica_partitions(spec: ServiceSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """/readyz wants every consumer to hold partitions: a replica past a group's partitions never turns ready.

    The groups and their topics come from the service's own app (built, not started). The role
    definitions' group (every service has one) is not waited for: its copy is reloaded from the store.
    """
    settings = rendered_settings(spec, monkeypatch)
    app = importlib.import_module(f"{spec.module}.main").create_app(settings)
    consumers = [c for c in app.state.kit.consumers if c.needed_for_readiness]
    for kustomization in KUSTOMIZATIONS:
        hpa = find(kustomization, "HorizontalPodAutoscaler", f"crm-{spec.name}")["spec"]
        surge = deployment(spec, kustomization)["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        for consumer in consumers:
            partitions = len(consumer.topics) * settings.kafka_topic_partitions
            assert hpa["maxReplicas"] + surge <= partitions, (
                f"{kustomization}: {spec.name} may run {hpa['maxReplicas']} + {surge} replicas, "
                f"but group {consumer.group_id} has {partitions} partitions"
            )


# --- secrets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", sorted(KUSTOMIZATIONS))
def test_no_secret_is_applied_and_no_config_holds_one(kustomization: str) -> None:
    objects = rendered(kustomization)
    assert not [doc for doc in objects if doc["kind"] == "Secret"], "an apply would overwrite the real Secret"
    secret_names = set().union(*(secret_setting_names(settings_class(spec)) for spec in SERVICES))
    assert "CRM_JWT_SECRET" in secret_names  # the check below checks something
    for doc in objects:
        if doc["kind"] != "ConfigMap":
            continue
        leaked = sorted(set(doc["data"]) & secret_names)
        assert not leaked, f"{doc['metadata']['name']} holds {leaked}: they belong in a Secret"
        url = doc["data"].get("CRM_MONGO_URL", "")
        assert "@" not in url, f"{doc['metadata']['name']}: MongoDB credentials belong in a Secret"


def test_the_secrets_template_holds_no_value() -> None:
    docs = load_documents(SECRETS_TEMPLATE)
    assert SHARED_SECRET in {doc["metadata"]["name"] for doc in docs}
    for doc in docs:
        assert doc["kind"] == "Secret"
        assert "data" not in doc, "base64 values are values: leave the template empty"
        filled = {key: value for key, value in doc["stringData"].items() if value != ""}
        assert not filled, f"{doc['metadata']['name']} has values for {sorted(filled)}"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_the_shared_secret_is_required_and_the_services_own_optional(spec: ServiceSpec) -> None:
    refs = {s["secretRef"]["name"]: s["secretRef"] for s in container(spec)["envFrom"] if "secretRef" in s}
    assert refs[SHARED_SECRET].get("optional", False) is False, "without a JWT secret a pod must not start"
    assert refs[f"crm-{spec.name}-secrets"]["optional"] is True
    sources = [next(iter(s)) for s in container(spec)["envFrom"]]
    assert sources[-1] == "secretRef", "the service's Secret comes last, so its values win"


# --- the overlay and the documentation ---------------------------------------------------------------


def test_the_example_overlay_puts_everything_in_its_namespace() -> None:
    namespaces = {doc["metadata"].get("namespace") for doc in rendered("example")}
    assert namespaces == {"crm"}
    assert {doc["metadata"].get("namespace") for doc in rendered("base")} == {None}, "the overlay chooses"


def test_deploy_readme_explains_running_on_kubernetes() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    section = readme.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "kubectl apply -k deploy/k8s/overlays/example" in section
    assert "kubectl -n crm create secret generic crm-secrets" in section
    for spec in SERVICES:
        assert f"| {spec.name} |" in section, f"the Kubernetes section says nothing of {spec.name} at 2+ replicas"
