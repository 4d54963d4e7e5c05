"""Refuse launches known to fail or to produce garbage, before anything loads. Pure.

Each guard returns a Violation; `forceable` ones can be overridden with --force.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from servectl.redact import secret_options
from servectl.vllmenv import args as va
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe

# Values that look like credentials (HF user tokens, OpenAI-style keys).
_SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,})$")
_SECRET_FLAGS = secret_options()  # vLLM's options whose value is a secret (servectl.redact)


@dataclass(frozen=True)
class Violation:
    id: str
    message: str
    forceable: bool = True


def check(recipe: ModelRecipe, profile: GpuProfile, flags: list[va.Flag], env: dict[str, str]) -> list[Violation]:
    out: list[Violation] = []
    kv_dtype = va.get(flags, "--kv-cache-dtype") or "auto"
    if kv_dtype.startswith("fp8") and "fp8-kv-gibberish" in recipe.hazards:
        out.append(Violation(
            "fp8-kv-cache",
            f"--kv-cache-dtype {kv_dtype} on {recipe.name} (hybrid linear-attention model) degrades output into "
            "gibberish; use --kv-cache-dtype auto",
        ))
    seqs, capture = va.get(flags, "--max-num-seqs"), va.get(flags, "--max-cudagraph-capture-size")
    if seqs and capture and seqs.isdigit() and capture.isdigit() and int(seqs) > int(capture):
        out.append(Violation(
            "max-num-seqs-above-capture",
            f"--max-num-seqs {seqs} exceeds --max-cudagraph-capture-size {capture}: decode batches above the "
            f"capture size run without CUDA graphs; set --max-num-seqs {capture} or raise the capture size",
        ))
    tp = int(va.get(flags, "--tensor-parallel-size") or 1)
    pp = int(va.get(flags, "--pipeline-parallel-size") or 1)
    if tp * pp > profile.count:
        out.append(Violation(
            "parallel-above-gpu-count",
            f"--tensor-parallel-size {tp} x --pipeline-parallel-size {pp} needs {tp * pp} GPUs but profile "
            f"{profile.name} has {profile.count}; use --tensor-parallel-size {profile.count}",
        ))
    if recipe.quantization not in profile.quantizations:
        out.append(_quantization_violation(recipe, profile))
    dtype = va.get(flags, "--dtype")
    if profile.vendor == "amd" and recipe.quantization.startswith("gptq") and dtype != "float16":
        out.append(Violation(
            "gptq-rocm-dtype",
            f"GPTQ on ROCm needs --dtype float16 (the ROCm GPTQ kernels have no bf16 path), got --dtype {dtype or 'auto'}",
        ))
    out.extend(secret_violations(flags, env))
    return out


def _quantization_violation(recipe: ModelRecipe, profile: GpuProfile) -> Violation:
    """FP4 formats have no ROCm kernels in vLLM (hard stop); elsewhere the profile's list is a judgement
    (e.g. vLLM's Marlin FP4 fallback runs NVFP4 weights slowly before Blackwell), so --force may override it."""
    fp4 = recipe.quantization in ("nvfp4", "mxfp4")
    if profile.vendor == "amd" and fp4:
        why, forceable = "vLLM has no kernels for this FP4 checkpoint format on ROCm", False
    elif recipe.quantization == "nvfp4" and profile.vendor == "nvidia":
        cc = profile.compute_capability or "?"
        why, forceable = f"native NVFP4 needs Blackwell (compute capability 10.0+), this is {cc}", True
    elif profile.vendor == "cpu":
        why, forceable = "vLLM's CPU build has no kernels for it", False
    else:
        why, forceable = "not a format this profile is known to run", True
    return Violation(
        "quantization-unsupported",
        f"{recipe.quantization} weights cannot run on {profile.name} ({why}); pick a recipe in "
        f"{', '.join(profile.quantizations)} format",
        forceable=forceable,
    )


def secret_violations(flags: list[va.Flag], env: dict[str, str]) -> list[Violation]:
    """A secret value on the command line ends up in shell history, `ps` and rendered files."""
    out = []
    for f in flags:
        if va.canonical(f.name) in _SECRET_FLAGS or (f.value and _SECRET_VALUE.match(f.value)):
            out.append(Violation(
                "secret-on-command-line",
                f"a secret value is given on the command line to {f.name}; export it (e.g. VLLM_API_KEY, HF_TOKEN) "
                "and pass its name with --secret NAME",
                forceable=False,
            ))
    for name, value in env.items():
        if _SECRET_VALUE.match(value) or re.search(r"(TOKEN|KEY|SECRET|PASSWORD)", name):
            out.append(Violation(
                "secret-on-command-line",
                f"environment value for {name} given literally; export {name} and pass it with --secret {name}",
                forceable=False,
            ))
    return out
