"""One rendered launch as a file: conventional file names and modes for `render -o DIR`, goldens, deploy/."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from servectl.errors import UserError
from servectl.render import FORMATS, systemd
from servectl.spec.models import LaunchSpec

if TYPE_CHECKING:
    from servectl.catalog.patch_schema import PatchSpec

SCRIPT_HEADER = "#!/bin/sh\n# {recipe} on {profile}\n"
# format -> fixed file name (systemd units are named after the deployment)
FILENAMES = {
    "argv": "launch.sh",
    "docker": "docker-run.sh",
    "vllm-config": "vllm-config.yaml",
    "compose": "docker-compose.yaml",
}
EXECUTABLE = {"argv", "docker"}


def filename(fmt: str, spec: LaunchSpec) -> str:
    if fmt == "systemd":
        return systemd.filename(spec)
    return FILENAMES.get(fmt, f"{spec.name}.{fmt}")


def nodes_for(fmt: str, nodes: int | None) -> int | None:
    """The node count a format renders: N >= 2 for the multi-node formats (default 2), none for the others
    (an explicit --nodes above 1 there is an error). Resolve the spec with it, so its guards see the layout."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", f"formats: {', '.join(FORMATS)}")
    if FORMATS[fmt] == "multinode":
        return 2 if nodes is None else nodes
    if nodes not in (None, 1):
        multi = [f for f, m in FORMATS.items() if m == "multinode"]
        raise UserError(f"--nodes {nodes} needs a multi-node format", f"use --format {', '.join(multi)}")
    return None


def text(
    fmt: str,
    spec: LaunchSpec,
    *,
    nodes: int | None = None,
    vllm_bin: str = systemd.DEFAULT_VLLM_BIN,
    patches: list[PatchSpec] | None = None,
) -> str:
    """The rendering for stdout (scripts written to files get a shebang on top, see file_text).

    Single-node formats need `nodes` unset or 1, multi-node ones N >= 2 (default 2); the Dockerfile
    needs the patches to bake in (the caller reads them; renderers never touch the disk)."""
    nodes = nodes_for(fmt, nodes)
    module = importlib.import_module(f"servectl.render.{FORMATS[fmt]}")
    if FORMATS[fmt] == "multinode":
        return module.render_nodes(fmt, spec, nodes)
    if fmt == "systemd":
        return systemd.render(spec, vllm_bin=vllm_bin)
    if fmt == "dockerfile":
        return module.render(spec, patches or [])
    return module.render(spec)


def file_text(fmt: str, spec: LaunchSpec, rendered: str) -> tuple[str, int]:
    """Contents and mode for the file: argv and docker become runnable shell scripts."""
    if fmt in EXECUTABLE:
        return SCRIPT_HEADER.format(recipe=spec.recipe, profile=spec.profile) + rendered, 0o755
    return rendered, 0o644


def with_monitoring(fmt: str, spec: LaunchSpec, rendered: str, dashboard, proxy_port: int | None = None) -> str:
    """`render --with-monitoring`: Compose gains Prometheus and Grafana (and scrapes the proxy when it is
    there), the Kubernetes formats a ServiceMonitor and the dashboard's ConfigMap (servectl.render.monitoring)."""
    from servectl.render import monitoring

    if fmt == "compose":
        return monitoring.compose_text(spec, dashboard, proxy_port)
    if fmt in ("k8s", "k8s-lws", "k8s-raycluster"):
        return monitoring.k8s_text(rendered, spec, dashboard)
    raise UserError(
        f"--with-monitoring is for --format compose or a Kubernetes format, not {fmt}",
        "use --format compose, k8s, k8s-lws or k8s-raycluster",
    )
