"""The numbers a plan works with: vLLM's memory settings (Settings), what past starts measured (Correction),
and what the planner worked out (Memory, Sizing). Data only: servectl.plan.planner computes them,
servectl.plan.refusals and servectl.plan.explain read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from servectl.plan.accounting import Accounting
from servectl.plan.geometry import Graphs, Layout

GIB = 2**30


@dataclass(frozen=True)
class Settings:
    """vLLM's memory flags, already parsed (vLLM's names, vLLM's defaults when None)."""

    gpu_memory_utilization: float = 0.9
    kv_cache_memory_bytes: int | None = None
    max_model_len: int | None = None  # None: the model's max_position_embeddings
    max_model_len_auto: bool = False
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_cudagraph_capture_size: int | None = None
    enforce_eager: bool = False
    limit_mm: dict[str, int] = field(default_factory=dict)
    skip_mm_profiling: bool = False
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = 1
    enable_prefix_caching: bool | None = None  # None: the version's default for hybrid models
    estimate_cudagraphs: bool | None = None  # None: the version's default of the env var
    mamba_ssm_cache_dtype: str = "auto"
    block_size: int | None = None
    num_speculative_tokens: int = 0
    dtype: str = "auto"
    cpu_kvcache_space_gib: int | None = None  # VLLM_CPU_KVCACHE_SPACE: overrides the KV bytes on CPU
    allow_long_max_model_len: bool = False  # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
    disable_hybrid_kv_cache_manager: bool | None = None  # None: vLLM decides (off for chunked local attention)
    allow_chunked_local_with_hma: bool = False  # VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1
    async_scheduling: bool | None = None  # None: vLLM's default (on on GPUs, off on the CPU build)
    pipeline_parallel_size: int = 1
    disable_sliding_window: bool = False  # --disable-sliding-window


@dataclass(frozen=True)
class Correction:
    """What past starts of this (recipe, profile, vLLM version, host) measured (servectl.plan.calibrate)."""

    overhead_mib: float = 0.0  # non-KV memory vLLM used beyond the model's prediction
    block_size: int | None = None  # the block size vLLM chose, when it differs from the rules' (a host they miss)
    rule_block_size: int | None = None  # what the rules gave for that start: the measurement applies to that case only
    starts: int = 0
    source: str = ""
    # vLLM's own memory terms, when a start logged them ("Actual usage is ..."; per GPU): they replace the model's
    weights_mib: float | None = None
    activation_mib: float | None = None
    non_torch_mib: float | None = None
    cudagraph_mib: float | None = None
    cudagraph_estimate_mib: float | None = None

    @property
    def measured_terms(self) -> bool:
        return None not in (self.weights_mib, self.activation_mib, self.non_torch_mib)


class Memory(NamedTuple):
    """vLLM's memory budget at start-up, in bytes per GPU (per NUMA node on the CPU build). (A NamedTuple, as
    Sizing: records made per plan and never replaced, cheaper to define than a dataclass at every start.)"""

    total_gib: float  # the device (unified memory: the memory the profile gives the GPU)
    requested: int  # ceil(utilization x total) (vllm/v1/worker/utils.py request_memory)
    context: float
    weights: float  # with the MTP head's, when speculating
    mtp_weights: float
    non_torch: float
    calibration: float  # what past starts measured beyond the model
    activation: float  # the profile run's peak
    activation_lm_mib: float
    activation_encoder_mib: float
    sampler_rows: int
    sampler_run_mib: float
    sampler_warmup: float  # the warm-up after graph capture (kept reserved, outside the budget)
    graphs: Graphs
    cudagraphs: float
    cudagraph_speculative: float  # what capturing (1 + N)-token decode steps adds to the pool
    cudagraph_estimate: float  # the part subtracted from the KV budget (the profiler's estimate)
    kv_pinned: float | None  # KV bytes a flag fixes (--kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE)
    kv_available: float
    measured: bool  # vLLM's own terms from past starts replaced the model's

    @property
    def total(self) -> float:
        return self.total_gib * GIB


class Sizing(NamedTuple):
    """Every number of a plan, before any text: the layout, the budget, the blocks and the tokens."""

    layout: Layout
    seqs: int  # max_num_seqs (vLLM's default when not set)
    mbt: int  # max_num_batched_tokens (idem)
    estimate: bool  # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS
    memory: Memory
    num_blocks: int
    accounting: Accounting
    max_model_len: int
    blocks_per_request: int  # what one request of max_model_len pins
    concurrency: float  # vLLM's "Maximum concurrency": num_blocks / blocks_per_request
    logged: int  # the KV cache size vLLM logs
    longest: int  # the longest request that really runs (num_blocks - the null block)
    fits: bool  # one request of max_model_len runs
    version: str
    cpu: bool  # the CPU build: no graphs, no sampler warm-up, the KV cache is what it allocates

    @property
    def real(self) -> int:
        """Tokens one request really holds, capped at max_model_len."""
        return min(self.longest, self.max_model_len)

    @property
    def kv_allocated(self) -> float:
        return self.num_blocks * self.layout.block_bytes

    @property
    def total_vram(self) -> float:
        """Memory in use once started. On GPUs activations are freed after profiling (torch.cuda.empty_cache);
        graphs and the sampler warm-up stay; the KV term is vLLM's budget for it (blocks fill it to within one)."""
        m = self.memory
        if self.cpu:
            return m.weights + self.kv_allocated
        return m.context + m.weights + m.non_torch + m.calibration + m.kv_available + m.cudagraphs + m.sampler_warmup

    @property
    def os_headroom(self) -> float:
        """Bytes a unified-memory device leaves the OS once vLLM started (graphs beyond the estimate and the
        sampler warm-up come on top of the requested share)."""
        m = self.memory
        return m.total - (m.context + m.requested + (m.cudagraphs - m.cudagraph_estimate) + m.sampler_warmup)
