"""The sampling-preset proxy next to a rendered deployment: a Compose service and a second systemd unit.

`servectl render ... --with-proxy` adds them; the proxy is given the served model name and the
recipe's preset family, so it starts without asking the backend (which may still be loading).
"""

from __future__ import annotations

from typing import Any

from servectl.render import compose, systemd
from servectl.spec.models import LaunchSpec

SERVICE = "proxy"
DEFAULT_IMAGE = "servectl:latest"  # servectl's own image: docker/Dockerfile.servectl (scripts/docker-servectl-image builds it)
DEFAULT_SERVECTL_BIN = "/opt/servectl/bin/servectl"
CONTAINER_PORT = 8001
METRICS_PATH = "/proxy/metrics"  # the proxy's own counters (servectl.proxy.metrics); /metrics is vLLM's, passed through


def _args(spec: LaunchSpec, backend: str, listen: str) -> list[str]:
    args = ["proxy", "--backend", backend, "--listen", listen, "--model", spec.served_model_name or spec.model]
    family = spec.model_recipe.sampling_presets
    if family:
        args += ["--presets", family]
    return args


def compose_service(spec: LaunchSpec, port: int, image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The proxy as a Compose service beside `vllm`, published on the deployment's bind address."""
    return {
        "image": image,
        "container_name": f"{spec.name}-proxy",
        "command": ["servectl", *_args(spec, f"http://{compose.SERVICE}:{spec.container_port}", f"0.0.0.0:{CONTAINER_PORT}")],
        "ports": [f"{spec.host}:{port}:{CONTAINER_PORT}"],
        "depends_on": {compose.SERVICE: {"condition": "service_healthy"}},
        "restart": "unless-stopped",
    }


def compose_text(spec: LaunchSpec, port: int, image: str = DEFAULT_IMAGE) -> str:
    doc = compose.compose_dict(spec)
    doc["services"][SERVICE] = compose_service(spec, port, image)
    return compose.dump(
        doc, f"# {spec.recipe} on {spec.profile} with the sampling-preset proxy on port {port}: docker compose up -d\n"
    )


def systemd_filename(spec: LaunchSpec) -> str:
    return f"{spec.name}-proxy.service"


def systemd_unit(spec: LaunchSpec, port: int, servectl_bin: str = DEFAULT_SERVECTL_BIN) -> str:
    """A unit that runs `servectl proxy` after, and only together with, the vLLM unit."""
    server_unit = systemd.filename(spec)
    cmd = [servectl_bin, *_args(spec, f"http://127.0.0.1:{spec.port}", f"{spec.host}:{port}")]
    lines = [
        "[Unit]",
        f"Description=servectl sampling-preset proxy for {spec.name}",
        f"After={server_unit}",
        f"BindsTo={server_unit}",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(systemd.exec_word(a) for a in cmd),
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        f"WantedBy={server_unit}",
    ]
    return "\n".join(lines) + "\n"
