"""A small kustomize for the tests: renders ``deploy/k8s`` as ``kubectl apply -k`` would, without kubectl.

It implements the part of ``kustomization.yaml`` our manifests use and refuses every
other field, so a manifest that starts using a feature fails here instead of being
rendered wrongly:

* ``resources``: YAML files (every document) and directories holding a kustomization;
* ``namespace``: set on every namespaced object;
* ``images``: ``name`` → ``newName``/``newTag``/``digest`` in pod templates;
* ``patches``: a strategic-merge patch from a file (``path``, its documents matched by
  kind and name), or an inline JSON 6902 patch (``patch``) applied to a ``target``
  selected by kind and name.

The strategic merge covers the lists our patches touch: containers by ``name``, env and
volumes by ``name``, volume mounts by ``mountPath``; any other list is replaced, as
strategic merge does for lists without a merge key. ``$patch`` directives are refused.
PyYAML is a test dependency (installed with ``kubernetes-validate``), imported here only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Document = dict[str, Any]

KUSTOMIZATION = "kustomization.yaml"
SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "images", "patches"})
CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume", "StorageClass"}
)
# Strategic-merge keys of the lists our patches merge (any other list is replaced whole).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not do, or refers to what is not there."""


def load_documents(path: Path) -> list[Document]:
    """Every non-empty YAML document of a file."""
    with path.open(encoding="utf-8") as f:
        docs = [doc for doc in yaml.safe_load_all(f) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise KustomizeError(f"{path}: a document without kind or metadata")
    return docs


def identity(doc: Document) -> tuple[str, str, str]:
    """(kind, namespace, name): what kustomize calls a resource's id, less its group and version."""
    meta = doc.get("metadata") or {}
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def render(directory: Path) -> list[Document]:
    """The objects the kustomization in ``directory`` builds, in the order its resources name them."""
    kustomization = yaml.safe_load((directory / KUSTOMIZATION).read_text(encoding="utf-8")) or {}
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{directory / KUSTOMIZATION}: unsupported fields {sorted(unsupported)}")

    objects: list[Document] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects.extend(render(path) if path.is_dir() else load_documents(path))
    seen: set[tuple[str, str, str]] = set()
    for doc in objects:
        if identity(doc) in seen:
            raise KustomizeError(f"{directory}: {identity(doc)} is defined twice")
        seen.add(identity(doc))

    for patch in kustomization.get("patches", []):
        _apply_patch(directory, objects, patch)
    if "namespace" in kustomization:
        for doc in objects:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects


# --- patches ------------------------------------------------------------------------------------


def _apply_patch(directory: Path, objects: list[Document], patch: Document) -> None:
    unsupported = set(patch) - {"path", "patch", "target"}
    if unsupported or ("path" in patch) == ("patch" in patch):
        raise KustomizeError(f"a patch needs exactly one of path or patch (and maybe target): {patch}")
    if "path" in patch:
        if "target" in patch:
            raise KustomizeError("a patch file with a target is not supported: name the object in the file")
        for doc in load_documents(directory / patch["path"]):
            target = _find(objects, doc["kind"], doc["metadata"]["name"], patch["path"])
            merged = strategic_merge(target, doc)
            target.clear()
            target.update(merged)
        return
    target_spec = patch.get("target") or {}
    if set(target_spec) - {"kind", "name"} or not {"kind", "name"} <= set(target_spec):
        raise KustomizeError(f"a JSON 6902 patch's target is selected by kind and name only: {target_spec}")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"an inline patch must be a JSON 6902 list of operations: {patch['patch']!r}")
    target = _find(objects, target_spec["kind"], target_spec["name"], "inline patch")
    for operation in operations:
        json6902(target, operation)


def _find(objects: list[Document], kind: str, name: str, origin: str) -> Document:
    matches = [doc for doc in objects if doc["kind"] == kind and doc["metadata"]["name"] == name]
    if len(matches) != 1:
        raise KustomizeError(f"{origin}: {len(matches)} objects are {kind}/{name}")
    return matches[0]


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged into ``original`` the way a strategic-merge patch is, for the lists in MERGE_KEYS."""
    if isinstance(patch, dict):
        if "$patch" in patch or any(key.startswith("$") for key in patch):
            raise KustomizeError(f"strategic-merge directives are not supported: {sorted(patch)}")
        if not isinstance(original, dict):
            return copy.deepcopy(patch)
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(original.get(key), value, key)
        return merged
    if isinstance(patch, list) and isinstance(original, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged_list = copy.deepcopy(original)
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = strategic_merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def json6902(doc: Document, operation: Document) -> None:
    """Apply one JSON 6902 operation (add, replace, remove) whose path names object keys or list indexes."""
    op, pointer = operation.get("op"), operation.get("path", "")
    if op not in ("add", "replace", "remove") or not pointer.startswith("/"):
        raise KustomizeError(f"unsupported JSON 6902 operation: {operation}")
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            node[index] = copy.deepcopy(operation["value"])
        else:
            del node[index]
        return
    if op in ("replace", "remove") and last not in node:
        raise KustomizeError(f"{pointer}: nothing to {op}")
    if op == "remove":
        del node[last]
    else:
        node[last] = copy.deepcopy(operation["value"])


# --- images -------------------------------------------------------------------------------------


def containers(doc: Document) -> Iterator[Document]:
    """The containers and init containers of an object's pod template (none if it has no pods)."""
    path = POD_TEMPLATE_PATHS.get(doc["kind"])
    if path is None:
        return
    node: Any = doc
    for part in path:
        node = (node or {}).get(part)
    for field in ("initContainers", "containers"):
        yield from (node or {}).get(field) or []


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/team/app:tag@sha256:...`` → (``registry:5000/team/app``, ``tag``, ``sha256:...``)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _set_image(objects: list[Document], image: Document) -> None:
    unsupported = set(image) - {"name", "newName", "newTag", "digest"}
    if unsupported:
        raise KustomizeError(f"images: unsupported fields {sorted(unsupported)}")
    for doc in objects:
        for container in containers(doc):
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            else:
                container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
