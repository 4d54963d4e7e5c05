"""`docker run ...`: the container command, ordered as vLLM's docs and the model cards write it."""

from __future__ import annotations

import shlex

from servectl.specs import LaunchSpec


def container_flags(spec: LaunchSpec) -> list[str]:
    """Accelerator access from the GPU profile (NVIDIA runtime, or ROCm device nodes and groups)."""
    c = spec.container
    if c is None:
        return []
    out: list[str] = []
    if c.runtime:
        out.append(f"--runtime={c.runtime}")
    if c.gpus:
        out += ["--gpus", c.gpus]
    for dev in c.devices:
        out += ["--device", dev]
    for group in c.group_add:
        out += ["--group-add", group]
    if c.ipc:
        out.append(f"--ipc={c.ipc}")
    elif c.shm_size:
        out += ["--shm-size", c.shm_size]
    for opt in c.security_opt:
        out += ["--security-opt", opt]
    return out


def docker_argv(spec: LaunchSpec) -> list[str]:
    cmd = ["docker", "run"]
    if spec.remove:
        cmd.append("--rm")
    cmd += ["--name", spec.name, *container_flags(spec)]
    for name in spec.secret_env:
        cmd += ["-e", name]  # by name: docker copies the value from the caller's environment
    for key, value in spec.env.items():
        cmd += ["-e", f"{key}={value}"]
    cmd += ["-v", f"{spec.cache_host_path}:{spec.cache_container_path}"]
    cmd += ["-p", f"{spec.host}:{spec.port}:{spec.container_port}"]
    cmd += [spec.image or "vllm/vllm-openai:latest", spec.model, *spec.vllm_args]
    return cmd


def render(spec: LaunchSpec) -> str:
    return shlex.join(docker_argv(spec)) + "\n"
