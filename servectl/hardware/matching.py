"""Detected hardware -> the best GPU profile of the catalog, and the utilization preset. Pure.

A catalog profile is chosen when its `name_patterns` match the device name, and its vendor, compute capability,
per-device memory (within 12 %) and device count agree with what was detected. Otherwise a generic profile is
built from the detection (memory, count, vendor, compute capability) and the choice carries a warning.
A display attached -> the 'desktop' preset; headless -> 'headless'. No GPU -> the `cpu` profile. Pure, but for
`choose_for_this_machine`, which probes.
"""

from __future__ import annotations

import re

from servectl.catalog.base import Quantization
from servectl.catalog.load import Catalog
from servectl.catalog.gpu import ContainerOptions, GpuProfile, KubernetesOptions, UtilizationPreset
from servectl.hardware.models import Choice, Detection, DetectedGpu

MEMORY_TOLERANCE = 0.12  # marketed GiB vs what NVML reports (RTX 5090: 32 vs 31.8 GiB; H100: 80 vs 79.6 GiB)

_ARCH_BY_CC = [
    (12.0, "blackwell"),
    (10.0, "blackwell"),
    (9.0, "hopper"),
    (8.9, "ada"),
    (8.0, "ampere"),
    (7.5, "turing"),
    (7.0, "volta"),
    (0.0, "older"),
]


def architecture_of(cc: str | None) -> str:
    """NVIDIA compute capability -> architecture family (unknown when not reported)."""
    if not cc:
        return "unknown"
    v = float(cc)
    return next(name for floor, name in _ARCH_BY_CC if v >= floor)


def quantizations_for(gpu: DetectedGpu) -> list[Quantization]:
    """Weight formats vLLM runs natively on this device (FP4 from sm_100, FP8 from sm_89; ROCm: FP8 on gfx942+)."""
    if gpu.vendor == "amd":
        fp8: list[Quantization] = ["fp8"] if gpu.gfx_target in ("gfx942", "gfx950") else []
        return [*fp8, "gptq-int8", "gptq-int4", "bf16", "fp16"]
    cc = float(gpu.compute_capability) if gpu.compute_capability else 0.0
    out: list[Quantization] = []
    if cc >= 10.0:
        out += ["nvfp4", "mxfp4"]
    if cc >= 8.9:
        out.append("fp8")
    out += ["gptq-int8", "gptq-int4"]
    if cc >= 8.0:
        out.append("bf16")
    return [*out, "fp16"]


def _memory_gib(gpu: DetectedGpu) -> float | None:
    return gpu.memory_total_mib / 1024 if gpu.memory_total_mib else None


def _mismatch(profile: GpuProfile, gpu: DetectedGpu, count: int) -> str | None:
    """Why a name-matched profile does not fit the detected devices (None: it fits)."""
    if profile.vendor != gpu.vendor:
        return f"vendor {gpu.vendor} is not {profile.vendor}"
    if profile.compute_capability and gpu.compute_capability and profile.compute_capability != gpu.compute_capability:
        return f"compute capability {gpu.compute_capability} is not {profile.compute_capability}"
    mem = _memory_gib(gpu)
    if mem and not profile.unified_memory:
        want = profile.total_memory_gib
        if abs(mem - want) > MEMORY_TOLERANCE * want:
            return f"{mem:.1f} GiB per device is not the profile's {want:g} GiB"
    if count < profile.count:
        return f"{count} device(s), the profile needs {profile.count}"
    return None


def generic_profile(gpu: DetectedGpu, count: int) -> GpuProfile:
    """A profile built from what was detected, for hardware the catalog does not know."""
    mem = _memory_gib(gpu) or 1.0
    unified = gpu.unified_memory
    desktop, headless = (0.7, 0.8) if unified else (0.85, 0.92)
    if gpu.vendor == "amd":
        container = ContainerOptions(
            image="rocm/vllm:latest", devices=["/dev/kfd", "/dev/dri"], group_add=["video"], security_opt=["seccomp=unconfined"]
        )
        kube = KubernetesOptions(gpu_resource="amd.com/gpu")
        arch = gpu.gfx_target or "unknown"
    else:
        container = ContainerOptions(image="vllm/vllm-openai:latest", runtime="nvidia", gpus="all")
        kube = KubernetesOptions(gpu_resource="nvidia.com/gpu")
        arch = architecture_of(gpu.compute_capability)
    return GpuProfile(
        name=f"generic-{gpu.vendor}",
        title=f"{count} x {gpu.name} (detected; {mem:.1f} GiB per device)",
        vendor=gpu.vendor,
        architecture=arch,
        count=count,
        memory_gib=round(mem, 2),
        usable_memory_gib=round(mem, 2),
        unified_memory=unified,
        os_headroom_gib=12.0 if unified else 0.0,
        compute_capability=gpu.compute_capability,
        gfx_target=gpu.gfx_target,
        quantizations=quantizations_for(gpu),
        container=container,
        presets={
            "desktop": UtilizationPreset(gpu_memory_utilization=desktop, description="Display attached (generic)."),
            "headless": UtilizationPreset(gpu_memory_utilization=headless, description="No display (generic)."),
        },
        default_preset="headless",
        kubernetes=kube,
    )


def choose_profile(detection: Detection, catalog: Catalog) -> Choice:
    """The catalog profile that fits the detected hardware best, or a generic one with a warning."""
    preset = "desktop" if detection.display else "headless"
    where = "a display is attached" if detection.display else "no display attached"
    if not detection.gpus:
        return Choice(profile=catalog.gpu("cpu"), preset="headless", reason="no GPU: using the cpu profile")
    gpu = detection.gpus[0]
    same = [g for g in detection.gpus if g.vendor == gpu.vendor]
    count = len(same)
    warnings = []
    if len({g.name for g in same}) > 1:
        warnings.append("mixed devices: " + ", ".join(sorted({g.name for g in same})) + f"; planning for {gpu.name}")
    rejected = []
    named = [
        p
        for p in catalog.gpus.values()
        if p.vendor == gpu.vendor and any(re.search(pat, gpu.name, re.I) for pat in p.name_patterns)
    ]
    # the most specific pattern first (RTX PRO 6000 Blackwell before Radeon), then the closest count
    named.sort(key=lambda p: (-max(len(pat) for pat in p.name_patterns if re.search(pat, gpu.name, re.I)), abs(p.count - count)))
    for p in named:
        why = _mismatch(p, gpu, count)
        if why is None:
            if count > p.count:
                warnings.append(f"{count} devices detected, profile {p.name} uses {p.count}")
            return Choice(
                profile=p,
                preset=preset if preset in p.presets else p.default_preset,
                reason=f"{gpu.name} matches profile {p.name} (name, "
                f"{'compute capability ' + gpu.compute_capability + ', ' if gpu.compute_capability else ''}"
                f"memory, {count} device(s)); {where}: preset {preset}",
                warnings=warnings,
            )
        rejected.append(f"{p.name}: {why}")
    generic = generic_profile(gpu, count)
    warnings.append(
        f"no catalog profile fits {gpu.name}"
        + (f" ({'; '.join(rejected)})" if rejected else "")
        + f": using a generic profile built from detection ({generic.memory_gib:g} GiB x {count}); "
        "check its presets before relying on them"
    )
    return Choice(
        profile=generic,
        preset=preset,
        generic=True,
        warnings=warnings,
        reason=f"unknown hardware {gpu.name}: generic {gpu.vendor} profile, "
        f"{generic.memory_gib:g} GiB x {count}; {where}: preset {preset}",
    )


def choose_for_this_machine(catalog: Catalog) -> Choice:
    """Probe this machine and choose its profile and preset (`plan`, `up`, `calibrate` without --gpu; the caller
    says which one and why, and uses that preset)."""
    from servectl.hardware.detect import detect

    return choose_profile(detect(), catalog)
