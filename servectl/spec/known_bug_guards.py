"""Known vLLM bugs a launch meets: its BugContext from the recipe, GPU profile, vLLM flags and environment, then
the catalog's answer (servectl.catalog.known_bugs). Pure.

plan, render and up all go through `check`, so the three agree: a guard refuses (a Violation, --force where the
entry allows it), a warning warns, and a patch entry warns that the release needs servectl's patch (up applies
or checks it in the environment itself; render --format dockerfile bakes it into the image, `patches_for`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from servectl.catalog import versions
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.known_bugs import (
    BugContext,
    KnownBug,
    applicable_bugs,
    conditions_match,
    load_patch_specs,
    nvfp4_moe_native,
)
from servectl.catalog.patch_schema import PatchSpec
from servectl.catalog.recipe import ModelRecipe
from servectl.spec.guards import Violation
from servectl.spec.models import LaunchSpec
from servectl.vllmenv import args as va

PLATFORM_OF_VENDOR = {"nvidia": "cuda", "amd": "rocm", "cpu": "cpu"}
# The environment variables features() reads: where the server inherits the caller's environment (up, plan),
# these are taken from it; a rendered config only carries its own.
FEATURE_ENV = ("VLLM_MARLIN_INPUT_DTYPE", "VLLM_USE_DEEP_GEMM", "VLLM_TEST_FORCE_FP8_MARLIN")


def caller_env(environ: dict[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in FEATURE_ENV if k in environ}


_ON = {"1", "true", "yes", "on"}


def features(recipe: ModelRecipe, flags: list[va.Flag], env: dict[str, str], vllm_version: str | None) -> frozenset[str]:
    """The FEATURES a launch uses, read the way vLLM reads its flags and environment."""
    out: set[str] = set()
    arch = recipe.architecture
    hybrid = arch.linear_attention_layers > 0
    if hybrid:
        out.add("hybrid")
    spec = va.get(flags, "--speculative-config")
    if spec is not None:
        out.add("speculative")
        try:
            method = str(json.loads(spec).get("method", ""))
        except (ValueError, AttributeError):
            method = spec
        if "mtp" in method:
            out.add("mtp")
    if va.has(flags, "--enable-prefix-caching"):
        out.add("prefix_caching")
    elif not va.has(flags, "--no-enable-prefix-caching"):
        default_on = (not hybrid) or (vllm_version is not None and versions.has("hybrid_prefix_caching_default", vllm_version))
        if default_on:
            out.add("prefix_caching")
    if (va.get(flags, "--kv-cache-dtype") or "auto").startswith("fp8"):
        out.add("fp8_kv")
    if recipe.multimodal.modalities and not va.has(flags, "--language-model-only") and not _all_mm_off(flags):
        out.add("multimodal")
    if va.get(flags, "--reasoning-parser") == "qwen3":
        out.add("qwen3_reasoning")
    if va.has(flags, "--enable-auto-tool-choice"):
        out.add("tool_calling")
    if va.get(flags, "--tool-call-parser") == "qwen3_coder":
        out.add("qwen3_coder_tools")
    if _int(va.get(flags, "--tensor-parallel-size"), 1) > 1:
        out.add("tensor_parallel")
    if (va.get(flags, "--max-model-len") or "").strip().lower() in ("auto", "-1"):
        out.add("max_model_len_auto")
    if _int(va.get(flags, "--stream-interval"), 1) > 1:
        out.add("stream_interval")
    if env.get("VLLM_MARLIN_INPUT_DTYPE", "").strip().lower() == "fp8":
        out.add("marlin_fp8_input")
    if env.get("VLLM_USE_DEEP_GEMM", "1").strip().lower() in _ON:
        out.add("deep_gemm")
    if nvfp4_moe_native(recipe.quantization, arch.num_experts, va.get(flags, "--moe-backend"), env):
        out.add("nvfp4_moe_native")
    return frozenset(out)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _all_mm_off(flags: list[va.Flag]) -> bool:
    """Every modality limited to 0 (--limit-mm-per-prompt '{"image": 0, "video": 0}' or the dotted form)."""
    limits: dict[str, str] = {}
    whole = va.get(flags, "--limit-mm-per-prompt")
    if whole:
        try:
            limits.update({k: str(v) for k, v in json.loads(whole).items()})
        except (ValueError, AttributeError):
            return False
    for f in flags:
        if f.name.startswith("--limit-mm-per-prompt.") and f.value is not None:
            limits[f.name.split(".", 1)[1]] = f.value
    return bool(limits) and all(v.strip() == "0" for v in limits.values())


def context(recipe: ModelRecipe, profile: GpuProfile, flags: list[va.Flag], env: dict[str, str], vllm_version: str) -> BugContext:
    return BugContext(
        vllm=vllm_version,
        platform=PLATFORM_OF_VENDOR[profile.vendor],
        compute_capability=profile.compute_capability,
        gfx_target=profile.gfx_target,
        quantization=recipe.quantization,
        quantization_method=recipe.quantization_method,
        architecture=recipe.architecture.hf_architecture,
        recipe=recipe.name,
        features=features(recipe, flags, env, vllm_version),
    )


@dataclass
class Outcome:
    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bugs: list[KnownBug] = field(default_factory=list)


def check(
    recipe: ModelRecipe,
    profile: GpuProfile,
    flags: list[va.Flag],
    env: dict[str, str],
    vllm_version: str | None,
    *,
    warn_patches: bool = True,
) -> Outcome:
    """Guards become Violations, warnings and (with warn_patches) patch entries become warning lines.
    An unknown release checks nothing: the bugs are per release."""
    out = Outcome()
    if vllm_version is None:
        return out
    out.bugs = applicable_bugs(context(recipe, profile, flags, env, vllm_version))
    for bug in out.bugs:
        line = bug.message(vllm_version)
        if bug.kind == "guard":
            out.violations.append(Violation(f"known-bug:{bug.id}", line, forceable=bug.forceable))
        elif bug.kind == "warning" or warn_patches:
            out.warnings.append(line)
    return out


def workarounds(
    recipe: ModelRecipe, profile: GpuProfile, flags: list[va.Flag], env: dict[str, str], vllm_version: str | None
) -> list[tuple[KnownBug, list[va.Flag], str]]:
    """(bug, the flags that avoid it, a line saying so) for each known bug (guard or warning) of this launch whose
    catalog entry gives a `workaround`: resolve adds them to servectl's own settings, before the user's flags."""
    if vllm_version is None:
        return []
    out = []
    for bug in applicable_bugs(context(recipe, profile, flags, env, vllm_version)):
        if bug.kind in ("guard", "warning") and bug.workaround:
            fix = f"; vLLM {bug.fixed_in}+ is fixed" if bug.fixed_in else ""
            out.append(
                (
                    bug,
                    va.parse_args(list(bug.workaround)),
                    f"vLLM {vllm_version}: servectl's settings add {' '.join(bug.workaround)} to avoid known bug {bug.id} "
                    f"({bug.title}{fix}; {bug.upstream[0]})",
                )
            )
    return out


def patches_for(
    recipe: ModelRecipe, profile: GpuProfile, flags: list[va.Flag], env: dict[str, str], vllm_version: str | None
) -> list[PatchSpec]:
    """The patches a launch needs: for a known release, those whose range holds it; for an unknown one (an image
    tagged `latest`), every patch whose conditions match, left to the image's own version check at build time."""
    if vllm_version is not None:
        ids = {b.id for b in applicable_bugs(context(recipe, profile, flags, env, vllm_version)) if b.kind == "patch"}
        return [p for p in load_patch_specs() if p.id in ids]
    probe = replace(context(recipe, profile, flags, env, "0"), features=features(recipe, flags, env, None))
    return [p for p in load_patch_specs() if conditions_match(p.applies_to, probe)]


def patches_for_spec(spec: LaunchSpec, vllm_version: str | None = None) -> list[PatchSpec]:
    """patches_for a resolved launch: its own flags and environment, the release given or its image tag's."""
    from servectl.spec.speculative import image_version

    release = vllm_version or image_version(spec.image)
    return patches_for(spec.model_recipe, spec.gpu_profile, va.parse_args(spec.vllm_args), spec.env, release)
