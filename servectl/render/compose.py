"""docker-compose.yaml: the `docker run` launch as a Compose service (Compose specification).

Same container as servectl.render.docker: GPU access from the profile (NVIDIA device reservation,
ROCm device nodes + video group), host IPC for vLLM's shared-memory tensors, the cache mount kept
between runs, the port published on the bind address only, secrets passed by name.
"""

from __future__ import annotations

from typing import Any

import yaml

from servectl.specs import LaunchSpec

FILENAME = "docker-compose.yaml"
SERVICE = "vllm"
# Loading 20-40 GB of weights plus torch.compile and CUDA graph capture takes minutes on a cold cache;
# failed probes inside start_period do not count towards `retries`.
START_PERIOD = "30m"


def healthcheck(spec: LaunchSpec) -> dict[str, Any]:
    """Probe /health with the image's own python3 (vLLM images ship python, not always curl)."""
    url = f"http://127.0.0.1:{spec.container_port}/health"
    probe = f"import urllib.request; urllib.request.urlopen('{url}', timeout=5)"
    return {
        "test": ["CMD", "python3", "-c", probe],
        "interval": "30s",
        "timeout": "10s",
        "retries": 3,
        "start_period": START_PERIOD,
    }


def _gpu_access(spec: LaunchSpec, service: dict[str, Any]) -> None:
    c = spec.container
    if c is None:
        return
    if c.runtime:
        service["runtime"] = c.runtime
    if c.gpus:
        count: Any = "all" if c.gpus == "all" else int(c.gpus)
        service["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": count, "capabilities": ["gpu"]},
        ]}}}
    if c.devices:
        service["devices"] = list(c.devices)
    if c.group_add:
        service["group_add"] = list(c.group_add)
    if c.ipc:
        service["ipc"] = c.ipc
    elif c.shm_size:
        service["shm_size"] = c.shm_size
    if c.security_opt:
        service["security_opt"] = list(c.security_opt)


def compose_dict(spec: LaunchSpec) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": spec.image or "vllm/vllm-openai:latest",
        "container_name": spec.name,
        "command": [spec.model, *spec.vllm_args],
    }
    _gpu_access(spec, service)
    # A bare NAME copies the value from the environment of `docker compose up` (never written here).
    env = [*spec.secret_env, *(f"{k}={v}" for k, v in spec.env.items())]
    if env:
        service["environment"] = env
    service["volumes"] = [f"{spec.cache_host_path}:{spec.cache_container_path}"]
    service["ports"] = [f"{spec.host}:{spec.port}:{spec.container_port}"]
    service["healthcheck"] = healthcheck(spec)
    service["restart"] = "unless-stopped"
    return {"name": spec.name.lower().replace(".", "-"), "services": {SERVICE: service}}


def render(spec: LaunchSpec) -> str:
    header = f"# {spec.recipe} on {spec.profile}: docker compose up -d\n"
    return header + yaml.safe_dump(compose_dict(spec), sort_keys=False, default_flow_style=False, width=1000)
