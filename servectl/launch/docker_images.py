"""`up --runtime docker` before the container starts: can the engine reach the GPU, and is the image here.

- `gpu_access_problem`: the container runtime must reach the profile's accelerators. NVIDIA: the `nvidia`
  runtime registered with the engine (`docker info` Runtimes; what `--runtime=nvidia` and `--gpus` use, set up by
  the NVIDIA Container Toolkit's `nvidia-ctk runtime configure`) or a CDI spec for nvidia.com/gpu in the engine's
  CDI spec dirs (`nvidia-ctk cdi generate`). ROCm: the device nodes the profile passes through (/dev/kfd, /dev/dri:
  the amdgpu kernel driver's). Pure: the engine's info and a path test are parameters.
- `PullProgress`: the docker SDK's pull stream (`APIClient.pull(..., stream=True, decode=True)`: per-layer
  events with progressDetail current/total) folded into one figure for a progress bar.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servectl.render.container import ContainerRun

NVIDIA_TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit (package nvidia-container-toolkit), then "
    "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`"
)
ROCM_DEVICE_FIX = (
    "load the amdgpu kernel driver (ROCm's `amdgpu-install --usecase=dkms`, then reboot); the container needs the host's {path}"
)


def _cdi_has_nvidia(dirs: Iterable[str], read: Callable[[Path], str]) -> bool:
    for d in dirs:
        try:
            specs = sorted(Path(d).glob("*.json")) + sorted(Path(d).glob("*.yaml")) + sorted(Path(d).glob("*.yml"))
        except OSError:
            continue
        for spec in specs:
            try:
                if "nvidia.com/gpu" in read(spec):
                    return True
            except OSError:
                continue
    return False


def gpu_access_problem(
    info: dict[str, Any],
    run: ContainerRun,
    exists: Callable[[str], bool] = os.path.exists,
    read: Callable[[Path], str] = lambda p: p.read_text(errors="replace")[:1_000_000],
) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when the engine cannot give the container its accelerators; None when it can."""
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    if run.runtime and run.runtime not in runtimes:
        return (
            f"the Docker engine has no `{run.runtime}` runtime (`docker info` Runtimes: {', '.join(runtimes) or 'none'}), "
            "so the container cannot reach the NVIDIA GPUs",
            NVIDIA_TOOLKIT_FIX,
        )
    if run.gpus and "nvidia" not in runtimes and not _cdi_has_nvidia(info.get("CDISpecDirs") or [], read):
        return (
            "the Docker engine has neither the `nvidia` runtime nor a CDI spec for nvidia.com/gpu "
            f"(CDI dirs: {', '.join(info.get('CDISpecDirs') or []) or 'none'}), so `--gpus` cannot be honoured",
            NVIDIA_TOOLKIT_FIX + " (or `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`)",
        )
    for dev in run.devices:
        if not exists(dev):
            return f"{dev} does not exist on this host, so the container cannot reach the AMD GPUs", ROCM_DEVICE_FIX.format(
                path=dev
            )
    return None


@dataclass
class PullProgress:
    """Bytes and layers of a pull so far, from the engine's stream of events."""

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer id -> (current, total) while downloading
    done: set[str] = field(default_factory=set)
    status: str = ""
    error: str | None = None

    def update(self, event: dict[str, Any]) -> None:
        if event.get("error") or event.get("errorDetail"):
            self.error = str(event.get("error") or (event.get("errorDetail") or {}).get("message"))
            return
        status, layer = str(event.get("status", "")), event.get("id")
        detail = event.get("progressDetail") or {}
        if layer and status == "Downloading" and detail.get("total"):
            self.layers[layer] = (int(detail.get("current") or 0), int(detail["total"]))
        elif layer and status in ("Download complete", "Pull complete", "Already exists"):
            total = self.layers.get(layer, (0, 0))[1]
            self.layers[layer] = (total, total)
            self.done.add(layer)
        elif layer and status in ("Pulling fs layer", "Waiting"):
            self.layers.setdefault(layer, (0, 0))
        elif not layer:
            self.status = status

    @property
    def current(self) -> int:
        return sum(c for c, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.layers.values())

    def line(self) -> str:
        mib = 2**20
        return f"{len(self.done)}/{len(self.layers)} layers, {self.current / mib:,.0f} of {self.total / mib:,.0f} MiB" + (
            f"; {self.status}" if self.status else ""
        )
