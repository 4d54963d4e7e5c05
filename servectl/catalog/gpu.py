"""GPU profiles: one kind of machine servectl can plan for and launch on (profiles/gpus.yaml)."""

from __future__ import annotations

import re
from dataclasses import field
from typing import Annotated

from servectl.catalog.base import CATALOG_KEY, Ge, Gt, Le, Quantization, SCHEMA_VERSION, Vendor, require_match, schema

_COMPUTE_CAPABILITY = re.compile(r"^\d+\.\d+$")


@schema
class ContainerOptions:
    """How a container reaches the accelerators of this profile."""

    image: str  # Default vLLM image for this hardware (vendor build, CUDA/ROCm flavour).
    runtime: str | None = None  # Docker runtime (`--runtime=`), e.g. nvidia.
    gpus: str | None = None  # Value of `docker run --gpus` (NVIDIA), e.g. all.
    devices: list[str] = field(default_factory=list)  # Device nodes to pass through (ROCm: /dev/kfd, /dev/dri).
    group_add: list[str] = field(default_factory=list)  # Supplementary groups (ROCm: video).
    ipc: str | None = "host"  # IPC namespace; vLLM's workers share tensors through /dev/shm.
    security_opt: list[str] = field(default_factory=list)  # Extra `--security-opt` values (ROCm: seccomp=unconfined).
    shm_size: str | None = None  # Size of /dev/shm when ipc is not host (e.g. 16g).


@schema
class UtilizationPreset:
    """A named `--gpu-memory-utilization` choice with its rationale."""

    gpu_memory_utilization: Annotated[float, Gt(0.0), Le(1.0)]  # Fraction of device memory vLLM may use.
    description: str  # When to pick this preset and what it risks.


@schema
class KubernetesOptions:
    """Scheduling facts for rendered Kubernetes manifests."""

    gpu_resource: str  # Extended resource name for one device (nvidia.com/gpu, amd.com/gpu).
    node_selector: dict[str, str] = field(default_factory=dict)  # Node labels that select this hardware.
    tolerations: list[dict[str, str]] = field(default_factory=list)  # Tolerations for tainted GPU nodes.


@schema
class GpuProfile:
    """One kind of machine servectl can plan for and launch on."""

    name: str  # Catalog key, used with --gpu.
    title: str  # Human name of the hardware.
    vendor: Vendor  # Accelerator vendor; cpu for the embedded default.
    architecture: str  # Chip architecture family (blackwell, hopper, cdna3, cpu).
    name_patterns: list[str] = field(default_factory=list)  # Regexes matched against detected device names (case-insensitive).
    count: Annotated[int, Ge(1), Le(64)] = 1  # Number of devices in one machine of this profile.
    memory_gib: Annotated[float, Gt(0)]  # Memory per device as marketed, GiB (for unified memory: the whole pool).
    usable_memory_gib: Annotated[float, Gt(0)] | None = None  # Total memory per device as the runtime reports it (cudaMemGetInfo total), GiB; vLLM's utilization is a fraction of this.
    context_overhead_gib: Annotated[float, Ge(0)] = 0.5  # Memory taken before vLLM's budget snapshot (CUDA context, NCCL), GiB; lies outside utilization x total.
    unified_memory: bool = False  # Device memory is system memory shared with the OS (DGX Spark); NVML reports no dedicated memory.
    os_headroom_gib: Annotated[float, Ge(0)] = 0.0  # Memory left to the OS and other processes on unified-memory systems, GiB.
    compute_capability: str | None = None  # CUDA compute capability (12.0 for sm_120).
    gfx_target: str | None = None  # AMD gfx target (gfx942, gfx1100); from detection when the profile spans several.
    quantizations: list[Quantization] = field(default_factory=list)  # Weight formats this hardware runs natively in vLLM.
    min_driver: str | None = None  # Oldest driver the profile's image runs on (cu130 images need >= 580).
    container: ContainerOptions | None = None  # Container runtime options; absent for the cpu profile.
    env: dict[str, str] = field(default_factory=dict)  # Environment variables every launch on this hardware needs.
    presets: dict[str, UtilizationPreset]  # Utilization presets; must include 'desktop' and 'headless'.
    default_preset: str = "headless"  # Preset used when neither --desktop nor --headless is given.
    kubernetes: KubernetesOptions | None = None  # Scheduling facts for Kubernetes manifests.

    def __post_init__(self) -> None:
        require_match(self.name, CATALOG_KEY, "name")
        require_match(self.compute_capability, _COMPUTE_CAPABILITY, "compute_capability")
        missing = {"desktop", "headless"} - set(self.presets)
        if missing:
            raise ValueError(f"presets must include {sorted(missing)}")
        if self.default_preset not in self.presets:
            raise ValueError(f"default_preset {self.default_preset!r} is not one of the presets")

    @property
    def total_memory_gib(self) -> float:
        """Memory of one device as vLLM sees it."""
        return self.usable_memory_gib or self.memory_gib


@schema
class ProfilesFile:
    """profiles/gpus.yaml."""

    schema_version: Annotated[int, Ge(1), Le(SCHEMA_VERSION)]  # Catalog schema version.
    gpus: list[GpuProfile]
