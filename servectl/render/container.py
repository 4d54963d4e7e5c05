"""The container a launch runs in, decided once and spelled three ways: `docker run` flags, a Compose
service and docker SDK keyword arguments. Which options a container gets (accelerator access from the
GPU profile, secrets by name, the cache mount, the published port) is chosen only in `container_run`;
the three spellings below are pure translations kept side by side so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servectl.spec.models import LaunchSpec

DEFAULT_IMAGE = "vllm/vllm-openai:latest"


@dataclass(frozen=True)
class ContainerRun:
    """One container launch, independent of the tool that starts it."""

    image: str
    name: str
    command: list[str]
    remove: bool
    secret_env: list[str]  # passed by name: the value comes from the starter's environment
    env: dict[str, str]
    volume: tuple[str, str]  # (host path, container path)
    port: tuple[str, int, int]  # (host address, host port, container port)
    runtime: str | None = None
    gpus: str | None = None
    devices: list[str] = field(default_factory=list)
    group_add: list[str] = field(default_factory=list)
    ipc: str | None = None
    shm_size: str | None = None  # only when ipc is not set (host IPC has no own /dev/shm)
    security_opt: list[str] = field(default_factory=list)
    model_mount: str | None = None  # a local checkpoint directory: mounted read-only at the same path


def container_run(spec: LaunchSpec) -> ContainerRun:
    c = spec.container
    if spec.model.startswith("/") and (":" in spec.model or "," in spec.model):
        from servectl.errors import UserError

        raise UserError(
            f"{spec.model!r}: a container mount cannot name a path with ':' or ','", "move or link the checkpoint to a plain path"
        )
    return ContainerRun(
        image=spec.image or DEFAULT_IMAGE,
        name=spec.name,
        command=[spec.model, *spec.vllm_args],
        remove=spec.remove,
        secret_env=list(spec.secret_env),
        env=dict(spec.env),
        volume=(spec.cache_host_path, spec.cache_container_path),
        port=(spec.host, spec.port, spec.container_port),
        runtime=c.runtime if c else None,
        gpus=c.gpus if c else None,
        devices=list(c.devices) if c else [],
        group_add=list(c.group_add) if c else [],
        ipc=c.ipc if c else None,
        shm_size=(c.shm_size if c and not c.ipc else None),
        security_opt=list(c.security_opt) if c else [],
        # a model argument that is an absolute path is a local checkpoint (a repo id never starts with '/')
        model_mount=spec.model if spec.model.startswith("/") else None,
    )


def docker_flags(run: ContainerRun) -> list[str]:
    """Accelerator access as `docker run` flags (NVIDIA runtime, or ROCm device nodes and groups)."""
    out: list[str] = []
    if run.runtime:
        out.append(f"--runtime={run.runtime}")
    if run.gpus:
        out += ["--gpus", run.gpus]
    for dev in run.devices:
        out += ["--device", dev]
    for group in run.group_add:
        out += ["--group-add", group]
    if run.ipc:
        out.append(f"--ipc={run.ipc}")
    elif run.shm_size:
        out += ["--shm-size", run.shm_size]
    for opt in run.security_opt:
        out += ["--security-opt", opt]
    return out


def docker_argv(run: ContainerRun) -> list[str]:
    """`docker run ...`, ordered as vLLM's docs and the model cards write it."""
    cmd = ["docker", "run"] + (["--rm"] if run.remove else []) + ["--name", run.name, *docker_flags(run)]
    for name in run.secret_env:
        cmd += ["-e", name]  # by name: docker copies the value from the caller's environment
    for key, value in run.env.items():
        cmd += ["-e", f"{key}={value}"]
    host_path, container_path = run.volume
    address, port, container_port = run.port
    cmd += ["-v", f"{host_path}:{container_path}"]
    if run.model_mount:
        cmd += ["-v", f"{run.model_mount}:{run.model_mount}:ro"]
    cmd += ["-p", f"{address}:{port}:{container_port}"]
    return cmd + [run.image, *run.command]


def compose_service(run: ContainerRun) -> dict[str, Any]:
    """The Compose service (healthcheck and restart policy are added by the Compose renderer)."""
    service: dict[str, Any] = {"image": run.image, "container_name": run.name, "command": list(run.command)}
    if run.runtime:
        service["runtime"] = run.runtime
    if run.gpus:
        count: Any = "all" if run.gpus == "all" else int(run.gpus)
        service["deploy"] = {
            "resources": {
                "reservations": {
                    "devices": [
                        {"driver": "nvidia", "count": count, "capabilities": ["gpu"]},
                    ]
                }
            }
        }
    if run.devices:
        service["devices"] = list(run.devices)
    if run.group_add:
        service["group_add"] = list(run.group_add)
    if run.ipc:
        service["ipc"] = run.ipc
    elif run.shm_size:
        service["shm_size"] = run.shm_size
    if run.security_opt:
        service["security_opt"] = list(run.security_opt)
    # A bare NAME copies the value from the environment of `docker compose up` (never written here).
    env = [*run.secret_env, *(f"{k}={v}" for k, v in run.env.items())]
    if env:
        service["environment"] = env
    host_path, container_path = run.volume
    address, port, container_port = run.port
    service["volumes"] = [f"{host_path}:{container_path}"] + (
        [f"{run.model_mount}:{run.model_mount}:ro"] if run.model_mount else []
    )
    service["ports"] = [f"{address}:{port}:{container_port}"]
    return service


def sdk_kwargs(run: ContainerRun, environ: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments of the docker SDK's `containers.run`. The SDK has no `-e NAME` inheritance, so
    secrets are copied from `environ` at launch time (only those that are set), as the docker CLI does."""
    from docker.types import DeviceRequest

    env = {name: environ[name] for name in run.secret_env if name in environ}
    env.update(run.env)
    host_path, container_path = run.volume
    address, port, container_port = run.port
    kw: dict[str, Any] = {
        "image": run.image,
        "command": list(run.command),
        "name": run.name,
        "detach": True,
        "auto_remove": run.remove,
        "environment": env,
        "volumes": {
            host_path: {"bind": container_path, "mode": "rw"},
            **({run.model_mount: {"bind": run.model_mount, "mode": "ro"}} if run.model_mount else {}),
        },
        "ports": {f"{container_port}/tcp": (address, port)},
    }
    if run.runtime:
        kw["runtime"] = run.runtime
    if run.gpus:
        count = -1 if run.gpus == "all" else int(run.gpus) if run.gpus.isdigit() else None
        ids = None if count is not None else run.gpus.removeprefix("device=").split(",")
        kw["device_requests"] = [DeviceRequest(count=count, device_ids=ids, capabilities=[["gpu"]])]
    if run.devices:
        kw["devices"] = [f"{d}:{d}:rwm" for d in run.devices]
    if run.group_add:
        kw["group_add"] = list(run.group_add)
    if run.ipc:
        kw["ipc_mode"] = run.ipc
    elif run.shm_size:
        kw["shm_size"] = run.shm_size
    if run.security_opt:
        kw["security_opt"] = list(run.security_opt)
    return kw
