"""Known vLLM bugs by release and setting: which ones a launch meets (`applicable_bugs`).

SEED: a minimal stand-in with the interface of the known-bug catalog (BugContext, KnownBug, applicable_bugs),
which the full catalog replaces. It carries today's one text patch (generated from patches/*.yaml, so it
cannot disagree with the patch engine) and the facts the environment chooser needs from
reference vllm-install.md. Kinds: "patch" (servectl fixes it in an installed environment: bootstrap applies
it), "guard" (no text fix: a release with it is not chosen for that setting), "warning" (said, not refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from packaging.specifiers import SpecifierSet
from packaging.version import Version

Kind = Literal["patch", "guard", "warning"]
Platform = Literal["cuda", "rocm", "cpu"]


@dataclass(frozen=True)
class BugContext:
    """The setting a bug is looked up for."""

    vllm: str  # release, e.g. "0.18.0" (a local tag such as +cpu is ignored)
    platform: Platform
    compute_capability: str | None = None  # NVIDIA, e.g. "12.0"
    gfx_target: str | None = None  # AMD, e.g. "gfx942"
    quantization: str | None = None  # the recipe's weight format (nvfp4, fp8, ...)
    features: frozenset[str] = frozenset()  # e.g. {"mtp"}
    recipe: str | None = None  # recipe name (its hazards decide which patches apply)


@dataclass(frozen=True)
class KnownBug:
    id: str
    title: str
    kind: Kind
    versions: str  # PEP 440 specifier of the affected releases
    fixed_in: str | None
    upstream: tuple[str, ...]
    advice: str
    # when it applies (empty: any)
    platforms: tuple[str, ...] = ()
    compute_capabilities: tuple[str, ...] = ()
    quantizations: tuple[str, ...] = ()
    hazard: str | None = None  # recipes naming this hazard meet it (None: every recipe)
    features: frozenset[str] = field(default_factory=frozenset)

    def affects(self, ctx: BugContext) -> bool:
        if not SpecifierSet(self.versions).contains(Version(ctx.vllm.split("+")[0].lstrip("v")), prereleases=True):
            return False
        if self.platforms and ctx.platform not in self.platforms:
            return False
        if self.compute_capabilities and ctx.compute_capability not in self.compute_capabilities:
            return False
        if self.quantizations and ctx.quantization not in self.quantizations:
            return False
        if self.features and not self.features <= ctx.features:
            return False
        if self.hazard is not None and ctx.recipe is not None:
            return self.hazard in _recipe_hazards(ctx.recipe)
        return True


# fmt: off
_FACTS: tuple[KnownBug, ...] = (
    # vllm-project/vllm PR #38423 "[NVIDIA] Bugfix NVFP4 DGX Spark and RTX50" (merged 2026-03-28): before it, the
    # bundled CUTLASS lacked the SM12x NVFP4 tile constraints (cudaErrorIllegalInstruction in decode on sm_120
    # and sm_121), FlashInfer's CUTLASS MoE failed on SM12x, and `cutlass_scaled_mm_supports_fp4()` claimed kernels
    # an SM100-only build lacks. Compiled code: no text patch. Range: releases before 0.20.0 (not yet checked
    # against each 0.19.x wheel; the full catalog replaces this row).
    KnownBug("nvfp4-sm12x-kernels", "NVFP4 kernels fail on sm_120 / sm_121 (RTX 50, RTX PRO Blackwell, GB10)",
             "guard", "<0.20.0", "0.20.0", ("https://github.com/vllm-project/vllm/pull/38423",),
             "use vLLM 0.20.0 or later for NVFP4 on Blackwell workstation GPUs and GB10",
             platforms=("cuda",), compute_capabilities=("12.0", "12.1"), quantizations=("nvfp4",)),
)
# fmt: on


@lru_cache(maxsize=1)
def _patch_bugs() -> tuple[KnownBug, ...]:
    """One "patch" entry per patches/*.yaml (package data servectl.patches_data)."""
    from importlib import resources

    from servectl.catalog.load import parse_yaml_model
    from servectl.catalog.patch_schema import PatchFileDoc

    out = []
    for path in sorted(resources.files("servectl.patches_data").iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".yaml"):
            continue
        p = parse_yaml_model(path.read_text(encoding="utf-8"), str(path), PatchFileDoc).patch
        out.append(KnownBug(p.id, p.title, "patch", p.versions, p.fixed_in, tuple(p.upstream),
                            f"servectl patch apply {p.id} (bootstrap applies it)" + (f", or vLLM {p.fixed_in}+" if p.fixed_in else ""),
                            hazard=p.hazard))
    return tuple(out)


@lru_cache(maxsize=64)
def _recipe_hazards(recipe: str) -> frozenset[str]:
    from servectl.catalog.load import load_catalog
    from servectl.errors import UnknownName

    try:
        return frozenset(load_catalog().model(recipe).hazards)
    except UnknownName:  # a model the catalog has no recipe for: it declares no hazards
        return frozenset()


def all_bugs() -> tuple[KnownBug, ...]:
    return _patch_bugs() + _FACTS


def applicable_bugs(ctx: BugContext) -> list[KnownBug]:
    """The known bugs the setting meets, patches first. Without a recipe, every patch of the release counts
    (bootstrap applies each patch the release needs whatever it will serve)."""
    order = {"patch": 0, "guard": 1, "warning": 2}
    return sorted((b for b in all_bugs() if b.affects(ctx)), key=lambda b: (order[b.kind], b.id))
