"""Offline validation of rendered Kubernetes manifests against the real Kubernetes OpenAPI schemas.

Core objects (Deployment, Service, PersistentVolumeClaim, ...) go through PyPI `kubernetes-validate`
in strict mode (unknown keys are errors), which bundles the upstream OpenAPI schemas.

Custom resources: LeaderWorkerSet (leaderworkerset.x-k8s.io/v1), KubeRay's RayCluster (ray.io/v1) and
prometheus-operator's ServiceMonitor (monitoring.coreos.com/v1, `render --with-monitoring`) are validated against the openAPIV3Schema of their CRDs as released (crd_schemas/*.json, vendored
with scripts/vendor-crd-schema; each file names its release, commit and URL), strictly: an object
schema that lists properties accepts no other keys unless it says x-kubernetes-preserve-unknown-fields,
as the API server's strict field validation (kubectl's default) rejects them. Their embedded pod
templates are also wrapped in a core v1 PodTemplate for kubernetes-validate, whose Kubernetes schema
knows the pod fields of the target Kubernetes version.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from servectl.errors import UserError

DEFAULT_K8S_VERSION = "1.33"

# CRD kind -> (apiVersion, JSON paths of the pod templates inside spec)
POD_TEMPLATES: dict[str, tuple[str, list[tuple[str, ...]]]] = {
    "LeaderWorkerSet": (
        "leaderworkerset.x-k8s.io/v1",
        [("spec", "leaderWorkerTemplate", "leaderTemplate"), ("spec", "leaderWorkerTemplate", "workerTemplate")],
    ),
    "RayCluster": ("ray.io/v1", [("spec", "headGroupSpec", "template")]),
    # prometheus-operator v0.93.0 (render --with-monitoring); no pod template
    "ServiceMonitor": ("monitoring.coreos.com/v1", []),
}


def _kv():
    try:
        import kubernetes_validate
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise UserError(
            "kubernetes-validate is not installed", "pip install 'servectl[test]' or pip install kubernetes-validate"
        ) from None
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


CRD_SCHEMA_DIR = Path(__file__).with_name("crd_schemas")


def _strict(node: Any) -> Any:
    """The CRD schema with unknown keys refused where the API server's strict validation refuses them."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def crd_schema(kind: str) -> dict[str, Any]:
    """The vendored CRD record of a kind: group, version, source and openAPIV3Schema."""
    api_version, _ = POD_TEMPLATES[kind]
    group, version = api_version.split("/")
    return json.loads((CRD_SCHEMA_DIR / f"{group}_{version}_{kind}.json").read_text())


@functools.lru_cache(maxsize=None)
def _crd_validator(kind: str):
    import jsonschema  # comes with check-jsonschema in the test extra

    # OpenAPI v3.0 schemas are a Draft 4 dialect (boolean exclusiveMinimum, no const)
    return jsonschema.Draft4Validator(_strict(crd_schema(kind)["openAPIV3Schema"]))


def _crd_fields(doc: dict[str, Any]) -> list[str]:
    """Problems against the custom resource's own CRD schema (strict)."""
    errors = sorted(_crd_validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]


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
        problems += [
            p.replace("PodTemplate/", f"{where} {path} as PodTemplate/", 1)
            for p in _core(wrapped, version, f"PodTemplate/{where}")
        ]
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
