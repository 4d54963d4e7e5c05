"""What detection found and what pre-flight concluded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from servectl.strict import Strict
from servectl.catalog.gpu import GpuProfile


class GpuProcess(Strict):
    """A process holding memory on a device (NVML compute/graphics processes)."""

    pid: int = Field(description="Process id.")
    name: str = Field("", description="Process name, when known.")
    used_mib: float | None = Field(None, ge=0, description="Device memory it holds, MiB (None: not reported).")


class DetectedGpu(Strict):
    """One accelerator as a probe or a captured tool output reported it."""

    index: int = Field(ge=0, description="Device index (NVML / rocm-smi card number).")
    vendor: Literal["nvidia", "amd"] = Field(description="Accelerator vendor.")
    name: str = Field(description="Device name as reported (e.g. 'NVIDIA GeForce RTX 5090').")
    memory_total_mib: float | None = Field(
        None, ge=0, description="Dedicated memory, MiB (None: not reported, as on unified-memory systems)."
    )
    memory_used_mib: float | None = Field(None, ge=0, description="Memory in use, MiB.")
    memory_free_mib: float | None = Field(None, ge=0, description="Memory free, MiB.")
    compute_capability: str | None = Field(None, pattern=r"^\d+\.\d+$", description="CUDA compute capability, e.g. '12.0'.")
    gfx_target: str | None = Field(None, description="AMD gfx target, e.g. 'gfx942'.")
    driver_version: str | None = Field(None, description="Driver version.")
    cuda_version: str | None = Field(None, description="Highest CUDA version the driver supports.")
    display_active: bool | None = Field(None, description="A display is driven by this device (None: unknown).")
    unified_memory: bool = Field(False, description="The device shares system memory (GB10); memory figures come from the OS.")
    processes: list[GpuProcess] = Field(default_factory=list, description="Processes holding memory on the device.")


class Detection(Strict):
    """What this machine has: accelerators, whether a display is attached, system memory, and how it was found."""

    gpus: list[DetectedGpu] = Field(default_factory=list, description="Detected accelerators (empty: none).")
    display: bool = Field(False, description="A display is attached (to a GPU, or a display server runs).")
    system_memory_mib: float | None = Field(None, ge=0, description="System memory total, MiB (psutil).")
    system_available_mib: float | None = Field(None, ge=0, description="System memory available, MiB (psutil).")
    source: str = Field(description="Which probe or captured output produced this, and why others were not used.")
    notes: list[str] = Field(default_factory=list, description="Probe failures and fallbacks worth knowing.")


class Choice(Strict):
    """The GPU profile detection chose, the utilization preset, and why."""

    profile: GpuProfile = Field(description="Catalog profile, or a generic one built from the detected hardware.")
    preset: str = Field(description="Utilization preset: 'desktop' with a display attached, 'headless' otherwise.")
    reason: str = Field(description="One line: why this profile and preset.")
    warnings: list[str] = Field(default_factory=list, description="What the user should check (unknown hardware, mixed devices).")
    generic: bool = Field(False, description="The profile was built from detection (no catalog profile matched).")


class Problem(Strict):
    """A pre-flight finding: what is wrong and the change that fixes it."""

    check: str = Field(description="Check id (free-memory, vllm-version, quantization, driver).")
    severity: Literal["error", "warning"] = Field("error", description="error: the launch will fail; warning: it may.")
    what: str = Field(description="What is wrong, with the numbers.")
    fix: str = Field(description="What to do (a flag, a command or an image).")
