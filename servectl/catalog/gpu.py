"""GPU profiles: one kind of machine servectl can plan for and launch on (profiles/gpus.yaml)."""

from __future__ import annotations


from pydantic import Field, model_validator

from servectl.catalog.base import Quantization, SCHEMA_VERSION, Strict, Vendor


class ContainerOptions(Strict):
    """How a container reaches the accelerators of this profile."""

    image: str = Field(description="Default vLLM image for this hardware (vendor build, CUDA/ROCm flavour).")
    runtime: str | None = Field(None, description="Docker runtime (`--runtime=`), e.g. nvidia.")
    gpus: str | None = Field(None, description="Value of `docker run --gpus` (NVIDIA), e.g. all.")
    devices: list[str] = Field(default_factory=list, description="Device nodes to pass through (ROCm: /dev/kfd, /dev/dri).")
    group_add: list[str] = Field(default_factory=list, description="Supplementary groups (ROCm: video).")
    ipc: str | None = Field("host", description="IPC namespace; vLLM's workers share tensors through /dev/shm.")
    security_opt: list[str] = Field(default_factory=list, description="Extra `--security-opt` values (ROCm: seccomp=unconfined).")
    shm_size: str | None = Field(None, description="Size of /dev/shm when ipc is not host (e.g. 16g).")


class UtilizationPreset(Strict):
    """A named `--gpu-memory-utilization` choice with its rationale."""

    gpu_memory_utilization: float = Field(gt=0.0, le=1.0, description="Fraction of device memory vLLM may use.")
    description: str = Field(description="When to pick this preset and what it risks.")


class KubernetesOptions(Strict):
    """Scheduling facts for rendered Kubernetes manifests."""

    gpu_resource: str = Field(description="Extended resource name for one device (nvidia.com/gpu, amd.com/gpu).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels that select this hardware.")
    tolerations: list[dict[str, str]] = Field(default_factory=list, description="Tolerations for tainted GPU nodes.")


class GpuProfile(Strict):
    """One kind of machine servectl can plan for and launch on."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Catalog key, used with --gpu.")
    title: str = Field(description="Human name of the hardware.")
    vendor: Vendor = Field(description="Accelerator vendor; cpu for the embedded default.")
    architecture: str = Field(description="Chip architecture family (blackwell, hopper, cdna3, cpu).")
    name_patterns: list[str] = Field(default_factory=list, description="Regexes matched against detected device names (case-insensitive).")
    count: int = Field(1, ge=1, le=64, description="Number of devices in one machine of this profile.")
    memory_gib: float = Field(gt=0, description="Memory per device as marketed, GiB (for unified memory: the whole pool).")
    usable_memory_gib: float | None = Field(None, gt=0, description="Total memory per device as the runtime reports it (cudaMemGetInfo total), GiB; vLLM's utilization is a fraction of this.")
    context_overhead_gib: float = Field(0.5, ge=0, description="Memory taken before vLLM's budget snapshot (CUDA context, NCCL), GiB; lies outside utilization x total.")
    unified_memory: bool = Field(False, description="Device memory is system memory shared with the OS (DGX Spark); NVML reports no dedicated memory.")
    os_headroom_gib: float = Field(0.0, ge=0, description="Memory left to the OS and other processes on unified-memory systems, GiB.")
    compute_capability: str | None = Field(None, pattern=r"^\d+\.\d+$", description="CUDA compute capability (12.0 for sm_120).")
    gfx_target: str | None = Field(None, description="AMD gfx target (gfx942, gfx1100); from detection when the profile spans several.")
    quantizations: list[Quantization] = Field(default_factory=list, description="Weight formats this hardware runs natively in vLLM.")
    min_driver: str | None = Field(None, description="Oldest driver the profile's image runs on (cu130 images need >= 580).")
    container: ContainerOptions | None = Field(None, description="Container runtime options; absent for the cpu profile.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables every launch on this hardware needs.")
    presets: dict[str, UtilizationPreset] = Field(description="Utilization presets; must include 'desktop' and 'headless'.")
    default_preset: str = Field("headless", description="Preset used when neither --desktop nor --headless is given.")
    kubernetes: KubernetesOptions | None = Field(None, description="Scheduling facts for Kubernetes manifests.")

    @model_validator(mode="after")
    def _presets_complete(self) -> "GpuProfile":
        missing = {"desktop", "headless"} - set(self.presets)
        if missing:
            raise ValueError(f"presets must include {sorted(missing)}")
        if self.default_preset not in self.presets:
            raise ValueError(f"default_preset {self.default_preset!r} is not one of the presets")
        return self

    @property
    def total_memory_gib(self) -> float:
        """Memory of one device as vLLM sees it."""
        return self.usable_memory_gib or self.memory_gib


class ProfilesFile(Strict):
    """profiles/gpus.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    gpus: list[GpuProfile]
