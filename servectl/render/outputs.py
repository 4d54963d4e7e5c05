"""One rendered launch as a file: conventional file names and modes for `render -o DIR`, goldens, deploy/."""

from __future__ import annotations

from servectl.render import systemd
from servectl.specs import LaunchSpec

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


def text(fmt: str, spec: LaunchSpec, *, nodes: int | None = None, vllm_bin: str = systemd.DEFAULT_VLLM_BIN) -> str:
    """The rendering for stdout (scripts written to files get a shebang on top, see file_text)."""
    if fmt == "systemd":
        if nodes not in (None, 1):
            from servectl.render.multinode import render_with_nodes

            return render_with_nodes(fmt, spec, nodes)  # raises the multi-node error
        return systemd.render(spec, vllm_bin=vllm_bin)
    from servectl.render.multinode import render_with_nodes

    return render_with_nodes(fmt, spec, nodes)


def file_text(fmt: str, spec: LaunchSpec, rendered: str) -> tuple[str, int]:
    """Contents and mode for the file: argv and docker become runnable shell scripts."""
    if fmt in EXECUTABLE:
        return SCRIPT_HEADER.format(recipe=spec.recipe, profile=spec.profile) + rendered, 0o755
    return rendered, 0o644
