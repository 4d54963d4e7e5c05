"""Pre-flight checks before a launch. Pure: detection + plan figures + versions in, a list of Problem out.

- free memory vs the plan's need (other processes holding VRAM): vLLM refuses to start when the free memory at
  start-up is below utilization x total (vllm/v1/worker/utils.py: "Free memory on device ... is less than desired
  GPU memory utilization");
- the installed vLLM version vs the recipe's `min_vllm` specifier (Qwen3.5 needs a vLLM newer than 0.16.0);
- the recipe's quantization vs what the GPU runs natively (profile.quantizations; FP4 needs Blackwell);
- the driver version vs the profile's `min_driver` (cu130 images need a >= 580 driver).
"""

from __future__ import annotations

import math

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.hardware.models import Detection, Problem

MARGIN = 0.01  # utilization kept below free/total so start-up jitter does not trip vLLM's check


def utilization_that_fits(free_gib: float, total_gib: float, margin: float = MARGIN) -> float:
    """The largest --gpu-memory-utilization (two decimals) whose budget fits in the free memory, minus a margin."""
    if total_gib <= 0:
        raise ValueError("total memory must be positive")
    return max(0.0, math.floor((free_gib / total_gib - margin) * 100) / 100)


def check_free_memory(detection: Detection, utilization: float) -> list[Problem]:
    """Each device's free memory must cover utilization x total (vLLM's start-up check)."""
    out = []
    for g in detection.gpus:
        if g.memory_total_mib is None or g.memory_free_mib is None:
            continue
        total, free = g.memory_total_mib / 1024, g.memory_free_mib / 1024
        need = utilization * total
        if free < need:
            others = ", ".join(f"pid {p.pid}" + (f" {p.used_mib / 1024:.1f} GiB" if p.used_mib else "") for p in g.processes)
            fits = utilization_that_fits(free, total)
            out.append(
                Problem(
                    check="free-memory",
                    what=f"GPU {g.index} ({g.name}) has {free:.2f} of {total:.2f} GiB free; utilization {utilization:g} "
                    f"needs {need:.2f} GiB" + (f" (held by {others})" if others else ""),
                    fix=f"--gpu-memory-utilization {fits:.2f}, or stop the processes holding GPU memory",
                )
            )
    return out


def check_vllm_version(recipe: ModelRecipe, installed: str | None) -> list[Problem]:
    """The installed vLLM must satisfy the recipe's min_vllm specifier (local build tags such as +cpu ignored)."""
    if not installed:
        return []
    try:
        spec, ver = SpecifierSet(recipe.min_vllm), Version(installed)
    except (InvalidSpecifier, InvalidVersion) as exc:
        return [
            Problem(
                check="vllm-version",
                severity="warning",
                what=f"cannot compare vLLM versions: {exc}",
                fix="check the vLLM version by hand",
            )
        ]
    if Version(ver.public) in spec or ver in spec:
        return []
    return [
        Problem(
            check="vllm-version",
            what=f"vLLM {installed} does not satisfy {recipe.name}'s requirement vllm{recipe.min_vllm}",
            fix=f"install a vLLM matching '{recipe.min_vllm}' (`pip install -U 'vllm{recipe.min_vllm}'`) or use a newer image",
        )
    ]


def check_quantization(recipe: ModelRecipe, profile: GpuProfile) -> list[Problem]:
    """The recipe's weight format must be one the hardware runs natively."""
    if recipe.quantization in profile.quantizations:
        return []
    cc = f" (compute capability {profile.compute_capability})" if profile.compute_capability else ""
    hint = (
        "NVFP4/MXFP4 need a Blackwell GPU (sm_100/sm_120)"
        if recipe.quantization in ("nvfp4", "mxfp4")
        else "FP8 needs sm_89 or newer (Ada, Hopper, Blackwell) or MI300"
        if recipe.quantization == "fp8"
        else "this format has no kernels on this hardware"
    )
    return [
        Problem(
            check="quantization",
            what=f"{recipe.quantization} weights are not supported on {profile.title}{cc}",
            fix=f"pick a recipe in {', '.join(profile.quantizations)}; {hint}",
        )
    ]


def check_driver(profile: GpuProfile, driver: str | None, image: str | None = None) -> list[Problem]:
    """The driver must be at least the profile's min_driver (cu130 images need >= 580)."""
    if not driver or not profile.min_driver:
        return []
    try:
        if Version(driver) >= Version(profile.min_driver):
            return []
    except InvalidVersion:
        return [
            Problem(
                check="driver",
                severity="warning",
                what=f"cannot read driver version {driver!r}",
                fix=f"make sure the driver is >= {profile.min_driver}",
            )
        ]
    img = image or (profile.container.image if profile.container else None)
    return [
        Problem(
            check="driver",
            what=f"driver {driver} is older than {profile.min_driver}, which {img or 'the image'} needs",
            fix=f"install an NVIDIA driver >= {profile.min_driver}, or use a cu128 image of the same vLLM",
        )
    ]


def preflight(
    recipe: ModelRecipe,
    profile: GpuProfile,
    detection: Detection,
    *,
    utilization: float | None = None,
    vllm_version: str | None = None,
    image: str | None = None,
) -> list[Problem]:
    """All checks; an empty list means go."""
    problems: list[Problem] = []
    if utilization is not None and profile.vendor != "cpu":
        problems += check_free_memory(detection, utilization)
    problems += check_vllm_version(recipe, vllm_version)
    problems += check_quantization(recipe, profile)
    driver = next((g.driver_version for g in detection.gpus if g.driver_version), None)
    if profile.vendor == "nvidia":
        problems += check_driver(profile, driver, image)
    return problems
