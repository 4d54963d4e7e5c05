"""Kubernetes: a Deployment, a ClusterIP Service and a PVC for the model cache (apps/v1, v1).

Pure: LaunchSpec (+ its GPU profile and recipe) -> list of manifest dicts -> YAML via
yaml.safe_dump_all. The pod-level pieces (container, probes, volumes, resources) are shared with
the multi-node renderers in servectl.render.multinode.

Choices and why:
- the container binds 0.0.0.0 inside the pod: the kubelet probes and the Service reach it on the
  pod IP; the ClusterIP Service (not exposed outside the cluster) is the analogue of 127.0.0.1.
- `command: [vllm, serve]` is explicit: vllm/vllm-openai's entrypoint is `vllm serve`, but the ROCm
  images (rocm/vllm) have none, so relying on the entrypoint would break AMD profiles.
- /dev/shm is an emptyDir in memory instead of hostIPC (vLLM's docs/deployment/k8s.md uses a `dshm`
  emptyDir the same way); the multiproc executor and NCCL use it per tensor-parallel rank.
- secrets come from a Secret by reference (secretKeyRef, optional) and never appear in the manifest.

Goldens: `python -m servectl.render.k8s --regen-golden [DIR]` rewrites tests/data/golden/k8s/.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from servectl.vllmenv import args as va
from servectl.errors import UserError
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.render.container import DEFAULT_IMAGE
from servectl.spec.models import LaunchSpec

HTTP_PORT_NAME = "http"
PROBE_PERIOD_S = 10
# Fixed sizing until the planner (servectl.plan.planner) exposes host-memory figures: host RAM
# for reading safetensors shards plus the API server / tokenizer / Ray processes.
HOST_RAM_OVERHEAD_GIB = 8
CPU_BASE, CPU_PER_GPU = 2, 2
SHM_GIB_PER_RANK = 2  # vLLM's k8s guide sizes dshm at 2Gi for one GPU; scaled per TP rank


def k8s_name(name: str) -> str:
    """An RFC 1035 label (Service names need one): lower case, [a-z0-9-], starts with a letter, <= 63."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = f"vllm-{out}".rstrip("-")
    return out[:63].rstrip("-")


def labels(spec: LaunchSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": k8s_name(spec.name),
        "app.kubernetes.io/managed-by": "servectl",
    }


def startup_budget_s(recipe: ModelRecipe) -> int:
    """Download + load + torch.compile + CUDA graph capture: 10 min plus 1 min per GiB of weights
    (>= 30 min for the 35B checkpoints of 20-37 GiB)."""
    return 600 + 60 * math.ceil(recipe.weights_gib)


def cache_size_gib(recipe: ModelRecipe) -> int:
    """PVC for the HF cache: the checkpoint 1.5x (a re-download beside a partial one) + 10 GiB compile cache."""
    disk_gb = recipe.size_on_disk_gb or recipe.weights_gib * 1.1
    return math.ceil(disk_gb * 1.5) + 10


def tensor_parallel(spec: LaunchSpec) -> int:
    return int(va.get(va.parse_args(spec.vllm_args), "--tensor-parallel-size") or 1)


def shm_gib(tp: int) -> int:
    return SHM_GIB_PER_RANK * max(1, tp)


def resources(spec: LaunchSpec, profile: GpuProfile, recipe: ModelRecipe, gpus: int, weight_share: float) -> dict[str, Any]:
    """Requests from the recipe's numbers; GPUs as an extended resource (limits must equal requests)."""
    memory_gib = math.ceil(recipe.weights_gib * weight_share) + HOST_RAM_OVERHEAD_GIB + shm_gib(gpus)
    requests: dict[str, Any] = {"cpu": str(CPU_BASE + CPU_PER_GPU * gpus), "memory": f"{memory_gib}Gi"}
    limits: dict[str, Any] = {}
    if spec.vendor != "cpu":
        if profile.kubernetes is None:
            raise UserError(
                f"GPU profile {profile.name} has no kubernetes settings (gpu_resource)",
                "add a `kubernetes:` section to the profile",
            )
        requests[profile.kubernetes.gpu_resource] = gpus
        limits[profile.kubernetes.gpu_resource] = gpus
    out: dict[str, Any] = {"requests": requests}
    if limits:
        out["limits"] = limits
    return out


def env(spec: LaunchSpec, secret_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in spec.env.items()]
    for name in spec.secret_env:
        items.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name, "optional": True}}})
    return items


def probes(spec: LaunchSpec, recipe: ModelRecipe) -> dict[str, Any]:
    """vLLM answers /health with 200 once the engine is up (vllm/entrypoints/openai/api_server.py)."""

    def get() -> dict[str, Any]:  # a fresh dict each time: shared ones become YAML anchors
        return {"path": "/health", "port": HTTP_PORT_NAME}

    return {
        "startupProbe": {
            "httpGet": get(),
            "periodSeconds": PROBE_PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(startup_budget_s(recipe) / PROBE_PERIOD_S),
        },
        "readinessProbe": {"httpGet": get(), "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": get(), "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 5},
    }


def literal(word: str) -> str:
    """`$` doubled: the kubelet expands $(VAR) in command, args and env values and reads `$$` as one `$`
    (Kubernetes API, Container.args; k8s.io/kubernetes third_party/forked/golang/expansion)."""
    return word.replace("$", "$$")


def serve_args(spec: LaunchSpec, vllm_args: list[str] | None = None) -> list[str]:
    words = [
        spec.model,
        *(spec.vllm_args if vllm_args is None else vllm_args),
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.container_port),
    ]
    return [literal(w) for w in words]


def volumes(spec: LaunchSpec, tp: int, cache_claim: str | None) -> tuple[list[dict], list[dict]]:
    """(pod volumes, container mounts): the cache PVC (or nothing) and /dev/shm in memory."""
    vols: list[dict] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(tp)}Gi"}}]
    mounts: list[dict] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if cache_claim:
        vols.append({"name": "cache", "persistentVolumeClaim": {"claimName": cache_claim}})
        mounts.append({"name": "cache", "mountPath": spec.cache_container_path})
    return vols, mounts


def scheduling(profile: GpuProfile) -> dict[str, Any]:
    k = profile.kubernetes
    if k is None:
        return {}
    out: dict[str, Any] = {}
    if k.node_selector:
        out["nodeSelector"] = dict(k.node_selector)
    if k.tolerations:
        out["tolerations"] = [dict(t) for t in k.tolerations]
    return out


def image(spec: LaunchSpec) -> str:
    return spec.image or DEFAULT_IMAGE


def pvc(spec: LaunchSpec, recipe: ModelRecipe, name: str, access_mode: str = "ReadWriteOnce") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels(spec)},
        "spec": {"accessModes": [access_mode], "resources": {"requests": {"storage": f"{cache_size_gib(recipe)}Gi"}}},
    }


def service(spec: LaunchSpec, selector: dict[str, str], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name or k8s_name(spec.name), "labels": labels(spec)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": HTTP_PORT_NAME, "port": spec.container_port, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"}],
        },
    }


def pod_annotations(spec: LaunchSpec, layout: str) -> dict[str, str]:
    return {
        "servectl.io/recipe": spec.recipe,
        "servectl.io/profile": spec.profile,
        "servectl.io/parallel": layout,
        "servectl.io/secrets": secret_hint(spec),
    }


def secret_hint(spec: LaunchSpec) -> str:
    """How to create the Secret without the value on a command line (shell history, `ps`): from a file
    of NAME=value lines, or one value from stdin (`--from-file=NAME=/dev/stdin`)."""
    name, first = secret_name(spec), (spec.secret_env or ["HF_TOKEN"])[0]
    return (
        f"kubectl create secret generic {name} --from-env-file=FILE (FILE: {', '.join(spec.secret_env)}=... lines, "
        f"mode 0600); or one from stdin: printenv {first} | tr -d '\\n' | kubectl create secret generic {name} "
        f"--from-file={first}=/dev/stdin"
    )


def secret_name(spec: LaunchSpec) -> str:
    return f"{k8s_name(spec.name)}-secrets"


def manifests(spec: LaunchSpec, profile: GpuProfile, recipe: ModelRecipe) -> list[dict[str, Any]]:
    """Deployment + Service + PVC for one server on one node."""
    name = k8s_name(spec.name)
    tp = tensor_parallel(spec)
    gpus = spec.gpu_count
    vols, mounts = volumes(spec, tp, f"{name}-cache")
    container = {
        "name": "vllm",
        "image": image(spec),
        "command": ["vllm", "serve"],
        "args": serve_args(spec),
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": spec.container_port, "protocol": "TCP"}],
        "env": env(spec, secret_name(spec)),
        "resources": resources(spec, profile, recipe, gpus, 1.0),
        "volumeMounts": mounts,
        **probes(spec, recipe),
    }
    pod_labels = labels(spec)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": pod_labels,
            "annotations": pod_annotations(spec, f"tensor-parallel {tp} on {gpus} GPU(s), one node"),
        },
        "spec": {
            "replicas": 1,
            # Recreate: a rolling update would need a second set of GPUs while the old pod holds them.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {**scheduling(profile), "terminationGracePeriodSeconds": 60, "containers": [container], "volumes": vols},
            },
        },
    }
    return [pvc(spec, recipe, f"{name}-cache"), deployment, service(spec, pod_labels)]


class _SafeDumperNoAliases(yaml.SafeDumper):
    """yaml.SafeDumper that repeats shared dicts instead of emitting &anchors (kubectl reads both; people prefer this)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(docs: list[dict[str, Any]]) -> str:
    """yaml.safe_dump_all with aliases off."""
    return yaml.dump_all(docs, Dumper=_SafeDumperNoAliases, sort_keys=False, default_flow_style=False, width=120)


def render(spec: LaunchSpec) -> str:
    return dump(manifests(spec, spec.gpu_profile, spec.model_recipe))
