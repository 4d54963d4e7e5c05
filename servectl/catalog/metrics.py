"""vLLM's Prometheus metric names per concept and release, in one table (the names `servectl top`, `check`
and the monitoring stack read). Each concept lists its names newest first; a reader takes the first name
a server exposes, so one table serves every release without asking the server its version.

Names are metric *family* names as prometheus_client's parser yields them: a counter `vllm:x` is exposed
as `vllm:x_total` (V1 declares `vllm:x`, the V0 engine `vllm:x_total`; the parser strips the suffix of
both), a histogram `vllm:x_seconds` as `_bucket`, `_sum` and `_count` samples.

Releases were read in vllm/v1/metrics/loggers.py, vllm/v1/spec_decode/metrics.py and (V0 engine, up to
0.10.2) vllm/engine/metrics.py of the released wheels 0.9.2, 0.10.0-0.10.2, 0.11.0-0.15.0 and
0.16.0-0.34.0 (0.32.0: the CPU build installed by `servectl bootstrap --cpu`). `since` is the oldest
release read that exposes the name (None: every release read from 0.9.2 on); `until` the last release
that exposes it by default (None: still exposed in the newest release read).
"""

from __future__ import annotations

from dataclasses import dataclass

OLDEST_READ = "0.9.2"
NEWEST_READ = "0.34.0"


@dataclass(frozen=True)
class MetricName:
    """One spelling of a concept and the releases that expose it."""

    name: str
    since: str | None
    until: str | None
    source: str


@dataclass(frozen=True)
class Concept:
    """What servectl reads, its Prometheus type, and its names newest first."""

    key: str
    kind: str  # gauge | counter | histogram
    summary: str
    names: tuple[MetricName, ...]


_V1 = "vllm/v1/metrics/loggers.py"
_SPEC = "vllm/v1/spec_decode/metrics.py"
_V0 = "vllm/engine/metrics.py (V0 engine, up to 0.10.2)"

# fmt: off
CONCEPTS: tuple[Concept, ...] = (
    Concept("requests_running", "gauge", "requests in the running batch", (
        MetricName("vllm:num_requests_running", None, None, f"{_V1}; {_V0}"),)),
    Concept("requests_waiting", "gauge", "requests queued for the scheduler", (
        MetricName("vllm:num_requests_waiting", None, None, f"{_V1}; {_V0}"),)),
    Concept("prompt_tokens", "counter", "prefill tokens processed", (
        MetricName("vllm:prompt_tokens", None, None, f"{_V1}; {_V0} (declared vllm:prompt_tokens_total)"),)),
    Concept("generation_tokens", "counter", "tokens generated", (
        MetricName("vllm:generation_tokens", None, None, f"{_V1}; {_V0} (declared vllm:generation_tokens_total)"),)),
    Concept("ttft", "histogram", "time to first token, seconds", (
        MetricName("vllm:time_to_first_token_seconds", None, None, f"{_V1}; {_V0}"),)),
    Concept("itl", "histogram", "time between two streamed outputs of a request, seconds", (
        MetricName("vllm:inter_token_latency_seconds", "0.10.2", None, f"{_V1} (added in 0.10.2 as the new name)"),
        MetricName("vllm:time_per_output_token_seconds", None, "0.11.0",
                   f"{_V1}: deprecated in 0.11, hidden 0.12-0.14 (--show-hidden-metrics-for-version=0.11), gone in 0.15; {_V0}"),)),
    Concept("kv_cache_usage", "gauge", "fraction of KV cache blocks in use (1 = full)", (
        MetricName("vllm:kv_cache_usage_perc", None, None, f"{_V1} (added in 0.9 as the new name)"),
        MetricName("vllm:gpu_cache_usage_perc", None, "0.10.2",
                   f"{_V1}: deprecated in 0.9, hidden in 0.11 (--show-hidden-metrics-for-version=0.10), gone in 0.12; {_V0}"),)),
    Concept("preemptions", "counter", "requests preempted (KV cache full)", (
        MetricName("vllm:num_preemptions", None, None, f"{_V1}; {_V0} (declared vllm:num_preemptions_total)"),)),
    Concept("prefix_cache_queries", "counter", "prompt tokens looked up in the prefix cache", (
        MetricName("vllm:prefix_cache_queries", None, None, f"{_V1} (added in 0.9.2 as the new name)"),
        MetricName("vllm:gpu_prefix_cache_queries", None, "0.10.2",
                   f"{_V1}: deprecated in 0.9.2, hidden in 0.11 (--show-hidden-metrics-for-version=0.10), gone in 0.12"),)),
    Concept("prefix_cache_hits", "counter", "prompt tokens found in the prefix cache", (
        MetricName("vllm:prefix_cache_hits", None, None, f"{_V1} (added in 0.9.2 as the new name)"),
        MetricName("vllm:gpu_prefix_cache_hits", None, "0.10.2",
                   f"{_V1}: deprecated in 0.9.2, hidden in 0.11 (--show-hidden-metrics-for-version=0.10), gone in 0.12"),)),
    Concept("spec_drafts", "counter", "speculative draft steps (registered only when the server speculates)", (
        MetricName("vllm:spec_decode_num_drafts", None, None, _SPEC),)),
    Concept("spec_draft_tokens", "counter", "tokens proposed by the draft", (
        MetricName("vllm:spec_decode_num_draft_tokens", None, None, f"{_SPEC}; {_V0} (declared ..._total)"),)),
    Concept("spec_accepted_tokens", "counter", "draft tokens the target model accepted", (
        MetricName("vllm:spec_decode_num_accepted_tokens", None, None, f"{_SPEC}; {_V0} (declared ..._total)"),)),
    Concept("cache_config", "info", "cache configuration as labels (kv_cache_size_tokens, num_gpu_blocks, block_size, ...)", (
        MetricName("vllm:cache_config_info", None, None, f"{_V1} (log_metrics_info 'cache_config')"),)),
)
# fmt: on

BY_KEY: dict[str, Concept] = {c.key: c for c in CONCEPTS}


def names(key: str) -> tuple[str, ...]:
    """The family names of a concept, newest first."""
    return tuple(n.name for n in BY_KEY[key].names)


def sample_names(key: str) -> tuple[str, ...]:
    """The sample names a concept is exposed under (counters with `_total`), newest first."""
    concept = BY_KEY[key]
    suffix = "_total" if concept.kind == "counter" else ""
    return tuple(n + suffix for n in names(key))
