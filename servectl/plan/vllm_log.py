"""Pure parser of vLLM start-up log lines -> the memory figures vLLM reported. No I/O.

Both spellings are read: a GPU start ("GPU KV cache size", "Available KV cache memory", "Model loading
took") and a CPU start ("CPU KV cache size", "Explicitly set (0.06/7.84) GiB for KV cache on node 0").
The line formats follow vLLM's sources: vllm/v1/core/kv_cache_utils.py (`_report_kv_cache_config` up to
0.19, `update_kv_cache_capacity` in 0.32: "%s KV cache size: %s tokens, Maximum concurrency ..."),
vllm/v1/worker/gpu_worker.py ("Available KV cache memory: %.2f GiB", "Free memory on device (%.2f/%.2f GiB)"),
vllm/v1/worker/gpu_model_runner.py ("Model loading took %.4f GiB", "Estimated CUDA graph memory: %.2f GiB"),
gpu_worker.py compile_or_warm_up_model ("CUDA graph pool memory: X GiB (actual), Y GiB (estimated)", and "Free memory on
device ... Desired GPU memory utilization is (u, X GiB). Actual usage is W GiB for weight, A GiB for peak activation,
N GiB for non-torch memory, and G GiB for CUDAGraph memory ... Current kv cache memory in use is K GiB": DEBUG up to
0.19, INFO later),
vllm/platforms/interface.py (`_align_hybrid_block_size`: "Setting attention block size to %d tokens",
"Padding mamba page size by %.2f%%"), kv_cache_utils.py ("kv cache group sizes %s"), vllm/v1/worker/cpu_worker.py ("Explicitly set (%.2f/%.2f) GiB").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NUM = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


def _num(text: str) -> float:
    return float(text.replace(",", ""))


@dataclass
class LogFigures:
    """Figures one vLLM start reported (None: the line was not in the log)."""

    vllm_version: str | None = None
    device: str | None = None  # "GPU" or "CPU", from the KV cache size line
    weights_gib: float | None = None  # "Model loading took X GiB"
    available_kv_gib: float | None = None  # "Available KV cache memory" (GPU) / "Explicitly set (X/..)" (CPU)
    total_memory_gib: float | None = None  # "Free memory on device (f/T GiB)" or the CPU node total
    free_memory_gib: float | None = None
    kv_cache_tokens: int | None = None  # "GPU/CPU KV cache size: N tokens"
    max_concurrency: float | None = None
    max_concurrency_len: int | None = None  # "for L tokens per request"
    cudagraph_gib: float | None = None  # "Graph capturing finished in .. secs, took X GiB" (actual)
    cudagraph_estimate_gib: float | None = None  # "Estimated CUDA graph memory: X GiB total"
    peak_activation_gib: float | None = None  # "Actual usage is W GiB for weight, A GiB for peak activation, ..."
    non_torch_gib: float | None = None  # "... N GiB for non-torch memory ..."
    requested_gib: float | None = None  # "Desired GPU memory utilization is (u, X GiB)"
    block_size: int | None = None  # "Setting attention block size to N tokens"
    mamba_padding_pct: float | None = None  # "Padding mamba page size by X%"
    group_block_sizes: list[int] | None = None  # "kv cache group sizes (a, b, ...)" (0.32; logged with 2+ groups)
    num_gpu_blocks: int | None = None  # from the cache_config_info metric or the override line
    max_model_len: int | None = None  # "non-default args" or the engine config's max_seq_len
    kv_cache_memory_bytes: int | None = None  # --kv-cache-memory-bytes as vLLM echoed it in "non-default args"
    args: dict[str, str] = field(default_factory=dict)  # memory flags from "non-default args" (vLLM's names)


# (phase name, pattern) in the order a start passes them; other components show these as progress.
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("version", re.compile(r"Initializing a V1 LLM engine \(v([0-9][^)\s]*)\)")),
    ("version", re.compile(r"vLLM API server version ([0-9][^\s]*)")),
    ("weights", re.compile(r"Model loading took " + _NUM + r" ?GiB")),
    ("avail", re.compile(r"Available KV cache memory: " + _NUM + r" ?GiB")),
    ("cpu_kv", re.compile(r"Explicitly set \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache")),
    ("cpu_kv", re.compile(r"(?:Auto-set|Set) \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache")),
    ("free", re.compile(r"Free memory on device \(" + _NUM + r"/" + _NUM + r" GiB\)")),
    ("kv_tokens", re.compile(r"\b(GPU|CPU|XPU|TPU)(?: \+ host)? KV cache size: " + _NUM + r" tokens")),
    ("concurrency", re.compile(r"Maximum concurrency for " + _NUM + r" tokens per request: " + _NUM + r"x")),
    ("graph", re.compile(r"Graph capturing finished in [0-9.]+ secs?, took " + _NUM + r" GiB")),
    ("graph_est", re.compile(r"Estimated CUDA graph memory: " + _NUM + r" GiB")),
    ("graph_pool", re.compile(r"CUDA graph pool memory: " + _NUM + r" GiB \(actual\), " + _NUM + r" GiB \(estimated\)")),
    (
        "usage",
        re.compile(
            r"Actual usage is "
            + _NUM
            + r" GiB for weight, "
            + _NUM
            + r" GiB for peak activation, "
            + _NUM
            + r" GiB for non-torch memory, and "
            + _NUM
            + r" GiB for CUDAGraph memory"
        ),
    ),
    ("requested", re.compile(r"Desired GPU memory utilization is \(" + _NUM + r", " + _NUM + r" GiB\)")),
    ("in_use", re.compile(r"Current kv cache memory in use is " + _NUM + r" GiB")),
    ("block", re.compile(r"Setting attention block size to " + _NUM + r" tokens")),
    ("padding", re.compile(r"Padding mamba page size by " + _NUM + r"%")),
    ("groups", re.compile(r"kv cache group sizes \(([0-9, ]+)\)")),
    ("blocks", re.compile(r"with num_gpu_blocks_override=([0-9]+)")),
    ("blocks", re.compile(r"num_gpu_blocks=\"([0-9]+)\"")),
    ("blocks", re.compile(r"# (?:GPU|CUDA) blocks: " + _NUM)),
    ("mml", re.compile(r"'max_model_len': ([0-9]+)")),
    ("kvbytes", re.compile(r"'kv_cache_memory_bytes': ([0-9]+)")),
    ("mml", re.compile(r"max_seq_len=([0-9]+)")),
]


# Memory-relevant keys of vLLM's "non-default args: {...}" line (EngineArgs field names).
ARG_KEYS = (
    "max_model_len",
    "kv_cache_memory_bytes",
    "gpu_memory_utilization",
    "max_num_seqs",
    "max_num_batched_tokens",
    "kv_cache_dtype",
    "enable_prefix_caching",
    "enforce_eager",
    "tensor_parallel_size",
    "max_cudagraph_capture_size",
    "dtype",
)
_ARG_RE = re.compile(r"'(" + "|".join(ARG_KEYS) + r")': ('[^']*'|[A-Za-z0-9_.]+)")


def parse_lines(lines: Iterable[str]) -> LogFigures:
    """Read figures from log lines; the first occurrence wins (a log may repeat a line per worker)."""
    fig = LogFigures()
    for line in lines:
        if "non-default args:" in line and not fig.args:
            fig.args = {k: v.strip("'") for k, v in _ARG_RE.findall(line)}
        for key, pat in _RULES:
            m = pat.search(line)
            if not m:
                continue
            g = m.groups()
            if key == "version" and fig.vllm_version is None:
                fig.vllm_version = g[0]
            elif key == "weights" and fig.weights_gib is None:
                fig.weights_gib = _num(g[0])
            elif key == "avail" and fig.available_kv_gib is None:
                fig.available_kv_gib = _num(g[0])
            elif key == "cpu_kv" and fig.available_kv_gib is None:
                fig.available_kv_gib, fig.total_memory_gib = _num(g[0]), _num(g[1])
            elif key == "free" and fig.free_memory_gib is None:
                fig.free_memory_gib, fig.total_memory_gib = _num(g[0]), _num(g[1])
            elif key == "kv_tokens" and fig.kv_cache_tokens is None:
                fig.device, fig.kv_cache_tokens = g[0], int(_num(g[1]))
            elif key == "concurrency" and fig.max_concurrency is None:
                fig.max_concurrency_len, fig.max_concurrency = int(_num(g[0])), _num(g[1])
            elif key == "graph" and fig.cudagraph_gib is None:
                fig.cudagraph_gib = _num(g[0])
            elif key == "graph_est" and fig.cudagraph_estimate_gib is None:
                fig.cudagraph_estimate_gib = _num(g[0])
            elif key == "graph_pool":
                fig.cudagraph_gib = fig.cudagraph_gib if fig.cudagraph_gib is not None else _num(g[0])
                fig.cudagraph_estimate_gib = fig.cudagraph_estimate_gib if fig.cudagraph_estimate_gib is not None else _num(g[1])
            elif key == "usage" and fig.peak_activation_gib is None:
                fig.weights_gib = fig.weights_gib if fig.weights_gib is not None else _num(g[0])
                fig.peak_activation_gib, fig.non_torch_gib = _num(g[1]), _num(g[2])
                fig.cudagraph_gib = fig.cudagraph_gib if fig.cudagraph_gib is not None else _num(g[3])
            elif key == "requested" and fig.requested_gib is None:
                fig.requested_gib = _num(g[1])
                fig.args.setdefault("gpu_memory_utilization", g[0])
            elif key == "in_use" and fig.available_kv_gib is None:
                fig.available_kv_gib = _num(g[0])
            elif key == "block" and fig.block_size is None:
                fig.block_size = int(_num(g[0]))
            elif key == "groups" and fig.group_block_sizes is None:
                fig.group_block_sizes = [int(x) for x in g[0].replace(" ", "").split(",") if x]
            elif key == "padding" and fig.mamba_padding_pct is None:
                fig.mamba_padding_pct = _num(g[0])
            elif key == "blocks" and fig.num_gpu_blocks is None:
                fig.num_gpu_blocks = int(_num(g[0]))
            elif key == "kvbytes" and fig.kv_cache_memory_bytes is None:
                fig.kv_cache_memory_bytes = int(g[0])
            elif key == "mml" and fig.max_model_len is None:
                fig.max_model_len = int(g[0])
    return fig


def parse_text(text: str) -> LogFigures:
    return parse_lines(text.splitlines())
