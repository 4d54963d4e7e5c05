"""Refuse launches known to fail or to produce garbage, before anything loads: one table for plan, render and up.

Every guard is a row of GUARDS: an id, whether --force may override it, and a pure check of the resolved
launch (GuardInput: the flags after servectl's settings, the user's flags, `--speculative` and the multi-node
layout of `--nodes`). `spec.resolve` runs the table and `enforce` applies the one rule: a hard guard always
refuses, a forceable one refuses unless --force and is then a "forced past guard ID" warning. The same
refusal, message and --force rule reach every command because every command resolves through here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from servectl.catalog import versions
from servectl.redact import secret_options
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.vllmenv import args as va

# Values that look like credentials (HF user tokens, OpenAI-style keys).
_SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,})$")
_SECRET_FLAGS = secret_options()  # vLLM's options whose value is a secret (servectl.redact)
FORCE_HINT = "or pass --force if you know better"


@dataclass(frozen=True)
class Violation:
    id: str
    message: str
    forceable: bool = True
    hint: str | None = None  # what to do instead (default for forceable guards: FORCE_HINT)


@dataclass(frozen=True)
class GuardInput:
    """A resolved launch as the guards see it."""

    recipe: ModelRecipe
    profile: GpuProfile
    flags: list[va.Flag]
    env: dict[str, str] = field(default_factory=dict)  # environment the user set (secrets are checked here)
    nodes: int = 1  # machines of the profile (a multi-node layout multiplies the GPUs)
    vllm_version: str | None = None  # the release that will run, when known
    checkpoint_mtp: bool | None = None  # the checkpoint's headers list mtp.* tensors (None: not on disk)
    unlisted: bool = False  # the recipe has no settings for this profile (servectl's settings, not --card)

    def get(self, name: str) -> str | None:
        return va.get(self.flags, name)

    def size(self, name: str) -> int:
        raw = self.get(name)
        return int(raw) if raw and raw.isdigit() else 1

    def speculative(self) -> dict | None:
        """The MTP speculative config in the flags (servectl's --speculative or the user's --speculative-config)."""
        raw = self.get("--speculative-config")
        if not raw:
            return None
        try:
            cfg = json.loads(raw)
        except ValueError:
            return None
        method = str(cfg.get("method", "")) if isinstance(cfg, dict) else ""
        return cfg if method == "mtp" or method.endswith("_mtp") else None


Check = Callable[[GuardInput], "str | Violation | None"]


def _unlisted(g: GuardInput) -> Violation | None:
    if not g.unlisted:
        return None
    runs_on = ", ".join(g.recipe.profiles) or "none"
    return Violation(
        "profile-without-settings",
        f"{g.recipe.name} has no settings for GPU profile {g.profile.name} (runs on: {runs_on})",
        hint="pick one of those with --gpu, or --force to launch without tuned settings",
    )


def _fp8_kv(g: GuardInput) -> str | None:
    kv = g.get("--kv-cache-dtype") or "auto"
    if kv.startswith("fp8") and "fp8-kv-gibberish" in g.recipe.hazards:
        return (
            f"--kv-cache-dtype {kv} on {g.recipe.name} (hybrid linear-attention model) degrades output into "
            "gibberish; use --kv-cache-dtype auto"
        )
    return None


def _seqs_above_capture(g: GuardInput) -> str | None:
    seqs, capture = g.get("--max-num-seqs"), g.get("--max-cudagraph-capture-size")
    if seqs and capture and seqs.isdigit() and capture.isdigit() and int(seqs) > int(capture):
        return (
            f"--max-num-seqs {seqs} exceeds --max-cudagraph-capture-size {capture}: decode batches above the "
            f"capture size run without CUDA graphs; set --max-num-seqs {capture} or raise the capture size"
        )
    return None


def _parallel_above_gpus(g: GuardInput) -> str | None:
    tp, pp = g.size("--tensor-parallel-size"), g.size("--pipeline-parallel-size")
    gpus = g.profile.count * g.nodes
    if tp * pp > gpus:
        where = f"profile {g.profile.name} has {g.profile.count}" + (f" per node x {g.nodes} nodes" if g.nodes > 1 else "")
        return (
            f"--tensor-parallel-size {tp} x --pipeline-parallel-size {pp} needs {tp * pp} GPUs but {where}; "
            f"use --tensor-parallel-size {g.profile.count}"
        )
    return None


def _quantization(g: GuardInput) -> Violation | None:
    """FP4 formats have no ROCm kernels in vLLM (hard stop); elsewhere the profile's list is a judgement
    (e.g. vLLM's Marlin FP4 fallback runs NVFP4 weights slowly before Blackwell), so --force may override it."""
    recipe, profile = g.recipe, g.profile
    if recipe.quantization in profile.quantizations:
        return None
    fp4 = recipe.quantization in ("nvfp4", "mxfp4")
    if profile.vendor == "amd" and fp4:
        why, forceable = "vLLM has no kernels for this FP4 checkpoint format on ROCm", False
    elif recipe.quantization == "nvfp4" and profile.vendor == "nvidia":
        why, forceable = (
            f"native NVFP4 needs Blackwell (compute capability 10.0+), this is {profile.compute_capability or '?'}",
            True,
        )
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


def quantization_violation(recipe: ModelRecipe, profile: GpuProfile) -> Violation | None:
    """The quantization row alone (derived recipes: which profiles a checkpoint's format can run on)."""
    return _quantization(GuardInput(recipe, profile, []))


def _gptq_rocm_dtype(g: GuardInput) -> str | None:
    dtype = g.get("--dtype")
    if g.profile.vendor == "amd" and g.recipe.quantization.startswith("gptq") and dtype != "float16":
        return f"GPTQ on ROCm needs --dtype float16 (the ROCm GPTQ kernels have no bf16 path), got --dtype {dtype or 'auto'}"
    return None


def _speculative_release(g: GuardInput) -> str | None:
    spec = g.recipe.speculative
    if g.speculative() is None or spec is None or not g.vllm_version:
        return None
    if versions.satisfies(g.vllm_version, spec.min_vllm):
        return None
    return (
        f"MTP speculation for {g.recipe.name} needs vLLM {spec.min_vllm}, the target runs {g.vllm_version}; "
        "use a newer image or drop --speculative"
    )


def _speculative_weights(g: GuardInput) -> Violation | None:
    if g.speculative() is None or g.checkpoint_mtp is not False:
        return None
    return Violation(
        "speculative-no-mtp-weights",
        f"the checkpoint of {g.recipe.name} has no mtp.* tensors (read from its safetensors headers): vLLM "
        "would have no draft weights (0.32 refuses to load them; older releases drafted from random weights "
        "and accepted nothing); use a checkpoint that keeps the MTP head or drop --speculative",
        forceable=False,
    )


def _speculative_pipeline(g: GuardInput) -> str | None:
    if g.speculative() is None or g.size("--pipeline-parallel-size") <= 1:
        return None
    via = f" (--nodes {g.nodes} runs one pipeline stage per node)" if g.nodes > 1 else ""
    # vllm-project/vllm#50098: the MTP draft model has no pipeline-parallel support
    return (
        "vLLM's MTP draft does not support pipeline parallelism"
        + via
        + "; use --tensor-parallel-size instead or drop --speculative"
    )


def _secrets(g: GuardInput) -> list[Violation]:
    return secret_violations(g.flags, g.env)


# (id, forceable, check): the one guard table. A check returns None, a message (a Violation with this row's id
# and rule is made from it), a Violation (its own id, rule or hint), or a list of them.
GUARDS: tuple[tuple[str, bool, Callable], ...] = (
    ("profile-without-settings", True, _unlisted),
    ("fp8-kv-cache", True, _fp8_kv),
    ("max-num-seqs-above-capture", True, _seqs_above_capture),
    ("parallel-above-gpu-count", True, _parallel_above_gpus),
    ("quantization-unsupported", True, _quantization),
    ("gptq-rocm-dtype", True, _gptq_rocm_dtype),
    ("secret-on-command-line", False, _secrets),
    ("speculative-vllm-version", True, _speculative_release),
    ("speculative-no-mtp-weights", False, _speculative_weights),
    ("speculative-pipeline-parallel", True, _speculative_pipeline),
)


def evaluate(g: GuardInput) -> list[Violation]:
    """Every guard of the table that the launch trips, in table order."""
    out: list[Violation] = []
    for gid, forceable, fn in GUARDS:
        found = fn(g)
        for v in found if isinstance(found, list) else [found]:
            if isinstance(v, str):
                out.append(Violation(gid, v, forceable))
            elif v is not None:
                out.append(v)
    return out


def check(recipe: ModelRecipe, profile: GpuProfile, flags: list[va.Flag], env: dict[str, str], **more) -> list[Violation]:
    """The violations of `flags` on `profile` (GuardInput's other fields as keywords); the unlisted-profile row
    is left to `resolve`, which knows whether servectl's settings or the card's are used."""
    return evaluate(GuardInput(recipe, profile, list(flags), dict(env), **more))


def enforce(violations: list[Violation], force: bool) -> list[str]:
    """The one --force rule: hard guards always refuse; forceable ones refuse unless forced, then are warnings.
    The refusal names the first hard violation, else the first forceable one."""
    hard = [v for v in violations if not v.forceable]
    soft = [v for v in violations if v.forceable]
    if hard or (soft and not force):
        first = (hard or soft)[0]
        raise UserError(first.message, first.hint or (FORCE_HINT if first.forceable else None))
    return [f"forced past guard {v.id}: {v.message}" for v in soft]


def secret_violations(flags: list[va.Flag], env: dict[str, str]) -> list[Violation]:
    """A secret value on the command line ends up in shell history, `ps` and rendered files."""
    out = []
    for f in flags:
        if va.canonical(f.name) in _SECRET_FLAGS or (f.value and _SECRET_VALUE.match(f.value)):
            out.append(
                Violation(
                    "secret-on-command-line",
                    f"a secret value is given on the command line to {f.name}; export it (e.g. VLLM_API_KEY, HF_TOKEN) "
                    "and pass its name with --secret NAME",
                    forceable=False,
                )
            )
    for name, value in env.items():
        if _SECRET_VALUE.match(value) or re.search(r"(TOKEN|KEY|SECRET|PASSWORD)", name):
            out.append(
                Violation(
                    "secret-on-command-line",
                    f"environment value for {name} given literally; export {name} and pass it with --secret {name}",
                    forceable=False,
                )
            )
    return out
