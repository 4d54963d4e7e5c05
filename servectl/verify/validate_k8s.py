"""Offline validation of rendered Kubernetes manifests against the real Kubernetes OpenAPI schemas.

Core objects (Deployment, Service, PersistentVolumeClaim, ...) go through PyPI `kubernetes-validate`
in strict mode (unknown keys are errors), which bundles the upstream OpenAPI schemas.

Custom resources: no package on PyPI or npm ships the OpenAPI schema of LeaderWorkerSet
(leaderworkerset.x-k8s.io/v1) or KubeRay's RayCluster (ray.io/v1), and copying them from the
projects' repositories is out of bounds. So their embedded pod templates, which are core
PodTemplateSpec objects, are validated by wrapping each one (with the resource's metadata) in a
v1 PodTemplate; the CRD-level fields are checked only for the few that servectl sets, by hand below
(types as documented in the CRDs' API references), which is weaker than a schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from servectl.errors import UserError

DEFAULT_K8S_VERSION = "1.33"

# CRD kind -> (apiVersion, JSON paths of the pod templates inside spec)
POD_TEMPLATES: dict[str, tuple[str, list[tuple[str, ...]]]] = {
    "LeaderWorkerSet": ("leaderworkerset.x-k8s.io/v1", [("spec", "leaderWorkerTemplate", "leaderTemplate"),
                                                        ("spec", "leaderWorkerTemplate", "workerTemplate")]),
    "RayCluster": ("ray.io/v1", [("spec", "headGroupSpec", "template")]),
}


def _kv():
    try:
        import kubernetes_validate
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise UserError("kubernetes-validate is not installed", "pip install 'servectl[test]' or pip install kubernetes-validate") from None
    return kubernetes_validate


def _core(doc: dict[str, Any], version: str, where: str) -> list[str]:
    kv = _kv()
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{where}: {path}: {exc.message}"]
    except kv.SchemaNotFoundError:
        return [f"{where}: no schema for {doc.get('apiVersion')}/{doc.get('kind')} in Kubernetes {version}"]
    return []


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _pod_templates(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    _, paths = POD_TEMPLATES[doc["kind"]]
    found = [(".".join(p), _dig(doc, p)) for p in paths]
    if doc["kind"] == "RayCluster":
        for i, group in enumerate(_dig(doc, ("spec", "workerGroupSpecs")) or []):
            found.append((f"spec.workerGroupSpecs.{i}.template", group.get("template") if isinstance(group, dict) else None))
    return found


def _crd_fields(doc: dict[str, Any]) -> list[str]:
    """Hand checks of the CRD fields servectl sets (types and required keys from the CRD docs)."""
    problems = []
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return ["spec: missing"]
    if doc["kind"] == "LeaderWorkerSet":
        lwt = spec.get("leaderWorkerTemplate")
        checks = [("spec.replicas", spec.get("replicas"), int, False),
                  ("spec.leaderWorkerTemplate", lwt, dict, True)]
        if isinstance(lwt, dict):
            checks += [("spec.leaderWorkerTemplate.size", lwt.get("size"), int, False),
                       ("spec.leaderWorkerTemplate.workerTemplate", lwt.get("workerTemplate"), dict, True),
                       ("spec.leaderWorkerTemplate.restartPolicy", lwt.get("restartPolicy"), str, False)]
            if lwt.get("restartPolicy") not in (None, "RecreateGroupOnPodRestart", "None", "Default"):
                problems.append(f"spec.leaderWorkerTemplate.restartPolicy: {lwt['restartPolicy']!r} is not a known policy")
    else:
        checks = [("spec.headGroupSpec", spec.get("headGroupSpec"), dict, True),
                  ("spec.workerGroupSpecs", spec.get("workerGroupSpecs"), list, False)]
        for i, group in enumerate(spec.get("workerGroupSpecs") or []):
            for key in ("replicas", "minReplicas", "maxReplicas"):
                checks.append((f"spec.workerGroupSpecs.{i}.{key}", group.get(key), int, False))
            checks.append((f"spec.workerGroupSpecs.{i}.groupName", group.get("groupName"), str, True))
            params = group.get("rayStartParams", {})
            if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
                problems.append(f"spec.workerGroupSpecs.{i}.rayStartParams: values must be strings")
    for where, value, typ, required in checks:
        if value is None:
            if required:
                problems.append(f"{where}: required")
        elif not isinstance(value, typ) or isinstance(value, bool):
            problems.append(f"{where}: {value!r} is not of type {typ.__name__}")
    return problems


def validate_document(doc: dict[str, Any], version: str = DEFAULT_K8S_VERSION) -> list[str]:
    """Problems with one manifest (empty when it validates)."""
    if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
        return ["document: not a Kubernetes object (apiVersion and kind required)"]
    where = f"{doc['kind']}/{_dig(doc, ('metadata', 'name'))}"
    kind = doc["kind"]
    if kind not in POD_TEMPLATES:
        return _core(doc, version, where)
    api_version, _ = POD_TEMPLATES[kind]
    if doc["apiVersion"] != api_version:
        return [f"{where}: apiVersion {doc['apiVersion']!r}, expected {api_version!r}"]
    problems = [f"{where}: {p}" for p in _crd_fields(doc)]
    for path, template in _pod_templates(doc):
        if template is None:
            problems.append(f"{where}: {path}: missing pod template")
            continue
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": doc.get("metadata", {}), "template": template}
        problems += [p.replace("PodTemplate/", f"{where} {path} as PodTemplate/", 1) for p in _core(wrapped, version, f"PodTemplate/{where}")]
    return problems


def validate_documents(docs: Iterable[dict[str, Any]], version: str = DEFAULT_K8S_VERSION) -> list[str]:
    return [p for doc in docs if doc is not None for p in validate_document(doc, version)]


def validate_text(text: str, version: str = DEFAULT_K8S_VERSION) -> list[str]:
    """Validate a multi-document YAML stream as rendered by servectl."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        return [f"YAML: {exc}"]
    return validate_documents(docs, version)

