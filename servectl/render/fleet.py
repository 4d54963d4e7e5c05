"""A fleet for production (`servectl render --fleet FLEET.yaml`). Pure: the fleet's launches come in sized.

- Compose, layout `front-door`: one service running `servectl serve` with the fleet file mounted, the profile's
  accelerator access and the cache volume; it starts, swaps and stops the models itself, inside the container.
- Compose, layout `services`: one vLLM service per model, each pinned to its memory share (the fleet's
  `--kv-cache-memory-bytes` / `--gpu-memory-utilization`), all running at once, each on its own port (only
  when their shares fit the device together; the caller checks).
- systemd: a unit for `servectl serve FLEET.yaml` (SIGTERM to servectl, which stops every model it started;
  the servers stay in the unit's control group, so systemd's SIGKILL after the stop timeout reaches any left).
- Compose with monitoring (servectl.render.monitoring's stack): Prometheus scrapes the front door's own counters
  (job `servectl-fleet`) and its relay of the servers' vLLM metrics (job `vllm`, labelled `model` by the front
  door), or, in the services layout, each model's server (job `vllm`, one target per model labelled `model`);
  every target also carries `fleet`. vLLM's dashboard selects by vLLM's own `model_name`, which is the fleet's
  model name (each server is started with `--served-model-name NAME`), so it works the same in both layouts.
"""

from __future__ import annotations

import re
from typing import Any

from servectl.render import compose, monitoring, systemd
from servectl.render.container import compose_service, container_run
from servectl.render.monitoring import Dashboard, ScrapeTarget
from servectl.spec.models import LaunchSpec

FRONT_DOOR_IMAGE = "servectl:latest"  # an image with servectl and a vLLM environment it finds (docs: how-to/fleet.md)
FLEET_FILE_IN_CONTAINER = "/etc/servectl/fleet.yaml"
FRONT_DOOR_PORT = 8080
FRONT_DOOR_SERVICE = "fleet"
RUN = "# docker compose up -d\n"
MONITORING_SERVICES = ("prometheus", "grafana")  # the services render.monitoring adds
DEFAULT_SERVECTL_BIN = "/opt/servectl/bin/servectl"
_SERVICE = re.compile(r"[^a-zA-Z0-9._-]")


def service_name(model: str) -> str:
    """A Compose service name for a model name (Compose allows [a-zA-Z0-9._-])."""
    return _SERVICE.sub("-", model).strip("-.") or "model"


def compose_services(fleet: str, members: list[tuple[str, LaunchSpec, float]]) -> str:
    """One vLLM service per model: (model name, its launch with host and port set, its share in MiB)."""
    doc, header = compose_services_doc(fleet, members)
    return compose.dump(doc, header + RUN)


def compose_services_doc(fleet: str, members: list[tuple[str, LaunchSpec, float]]) -> tuple[dict[str, Any], str]:
    """(Compose document, header) of the services layout."""
    services: dict[str, Any] = {}
    for name, spec, share_mib in members:
        service = compose_service(container_run(spec))
        service["healthcheck"] = compose.healthcheck(spec)
        service["restart"] = "unless-stopped"
        service["labels"] = {"io.servectl.fleet": fleet, "io.servectl.model": name, "io.servectl.memory-mib": f"{share_mib:.0f}"}
        services[service_name(name)] = service
    header = f"# fleet {fleet}: one vLLM server per model, each pinned to its planned share of the device\n" + "".join(
        f"# {n}: {s:,.0f} MiB on {spec.profile}, port {spec.port}\n" for n, spec, s in members
    )
    return {"name": service_name(fleet).lower(), "services": services}, header


def compose_front_door(
    fleet: str, fleet_file: str, template: LaunchSpec, host: str, port: int, mounts: list[str], image: str = FRONT_DOOR_IMAGE
) -> str:
    """The front door alone: `servectl serve` in a container with the accelerator access of the fleet's profile
    (`template`: any of its launches), the fleet file and local model directories mounted read-only."""
    doc, header = compose_front_door_doc(fleet, fleet_file, template, host, port, mounts, image)
    return compose.dump(doc, header + RUN)


def compose_front_door_doc(
    fleet: str, fleet_file: str, template: LaunchSpec, host: str, port: int, mounts: list[str], image: str = FRONT_DOOR_IMAGE
) -> tuple[dict[str, Any], str]:
    """(Compose document, header) of the front-door layout."""
    service = compose_service(container_run(template))
    service.update(
        image=image,
        container_name=f"{fleet}-fleet",
        command=["servectl", "serve", FLEET_FILE_IN_CONTAINER, "--listen", f"0.0.0.0:{FRONT_DOOR_PORT}"],
        ports=[f"{host}:{port}:{FRONT_DOOR_PORT}"],
        volumes=[*service["volumes"], f"{fleet_file}:{FLEET_FILE_IN_CONTAINER}:ro", *(f"{m}:{m}:ro" for m in mounts)],
    )
    service["environment"] = [e for e in service.get("environment", []) if not e.startswith("VLLM_SERVER_DEV_MODE")]
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{FRONT_DOOR_PORT}/health', timeout=5)"
    service["healthcheck"] = {
        "test": ["CMD", "python3", "-c", probe],
        "interval": "30s",
        "timeout": "10s",
        "retries": 3,
        "start_period": "2m",
    }
    service["restart"] = "unless-stopped"
    service["stop_grace_period"] = "90s"  # servectl stops every model (15 s grace each, in parallel)
    header = f"# fleet {fleet}: the front door (`servectl serve`), which starts, swaps and stops the models itself\n"
    return {"name": service_name(fleet).lower(), "services": {FRONT_DOOR_SERVICE: service}}, header


def front_door_targets(fleet: str, relay_path: str) -> list[ScrapeTarget]:
    """The front door's own counters (servectl_fleet_*) and its relay of the servers' vLLM metrics (`relay_path`)."""
    address, labels = f"{FRONT_DOOR_SERVICE}:{FRONT_DOOR_PORT}", {"fleet": fleet}
    return [ScrapeTarget("servectl-fleet", address, "/metrics", labels), ScrapeTarget("vllm", address, relay_path, labels)]


def services_targets(fleet: str, members: list[tuple[str, LaunchSpec, float]]) -> list[ScrapeTarget]:
    """Each model's vLLM server in the services layout, labelled with the model's name."""
    return [
        ScrapeTarget("vllm", f"{service_name(name)}:{spec.container_port}", labels={"fleet": fleet, "model": name})
        for name, spec, _ in members
    ]


def with_monitoring(fleet: str, doc: dict[str, Any], header: str, targets: list[ScrapeTarget], dashboard: Dashboard) -> str:
    """A fleet's Compose document with Prometheus (scraping `targets`) and Grafana with vLLM's dashboard."""
    stack = monitoring.add_to_compose(doc, service_name(fleet), targets, dashboard)
    return compose.dump(stack, header + monitoring.stack_header(f"fleet {fleet}", dashboard))


def systemd_filename(fleet: str) -> str:
    return f"servectl-fleet-{fleet}.service"


def systemd_unit(
    fleet: str,
    fleet_file: str,
    servectl_bin: str = DEFAULT_SERVECTL_BIN,
    cache_dir: str = "/srv/cache",
    secrets: list[str] | None = None,
) -> str:
    """A unit running `servectl serve FLEET_FILE`; records under /var/lib/servectl (StateDirectory)."""
    cmd = [servectl_bin, "serve", fleet_file]
    lines = [
        "[Unit]",
        f"Description={systemd._plain_value(f'servectl fleet {fleet}: several models behind one OpenAI endpoint')}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        systemd._env_assignment("XDG_CACHE_HOME", cache_dir),
        systemd._env_assignment("XDG_STATE_HOME", "/var/lib"),
        "StateDirectory=servectl",
    ]
    if secrets:
        lines.append(f"# {', '.join(secrets)}: NAME=value lines in this file (mode 0600), never in the unit")
        lines.append(f"EnvironmentFile=-{systemd.SECRETS_DIR}/fleet-{fleet}.env")
    lines += [
        "ExecStart=" + " ".join(systemd.exec_word(a) for a in cmd),
        "Restart=on-failure",
        "RestartSec=10",
        # SIGTERM to servectl alone: it stops every model it started; what is left gets SIGKILL after the timeout.
        "KillMode=mixed",
        "TimeoutStopSec=90",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
