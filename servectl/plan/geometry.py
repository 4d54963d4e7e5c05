"""KV cache geometry as vLLM computes it: attention block size after hybrid page unification, page size, KV
groups, state blocks per request, and the CUDA-graph capture list. Exact (from vLLM's source), pure.

- page unification: vllm/model_executor/models/config.py:103-248 (`HybridAttentionMambaModelConfig`, 0.17-0.19),
  vllm/platforms/interface.py `_align_hybrid_block_size` (0.20+; 0.32: interface.py:939-1125);
- per-layer specs, state shapes and groups: servectl.plan.kvcache (vllm/v1/kv_cache_interface.py,
  vllm/v1/core/kv_cache_utils.py `get_kv_cache_groups`);
- capture sizes: vllm/config/vllm.py `_set_cudagraph_sizes` (0.18: :1287-1430), FULL decode graphs:
  vllm/v1/cudagraph_dispatcher.py:195-225.
"""

from __future__ import annotations

from dataclasses import dataclass

from servectl.catalog.recipe import Architecture

from servectl.plan.kvcache import DTYPE_BYTES, Layout, Platform, build  # noqa: F401  (Layout re-exported)


def capture_sizes(max_size: int) -> list[int]:
    """vllm/config/vllm.py:1287-1430: [1, 2, 4] + multiples of 8 below 256 + multiples of 16 from 256."""
    sizes = [i for i in (1, 2, 4) if i <= max_size]
    if max_size >= 8:
        sizes += list(range(8, min(max_size + 1, 256), 8))
    if max_size >= 256:
        sizes += list(range(256, max_size + 1, 16))
    return sizes


def layout(
    arch: Architecture,
    *,
    tp: int = 1,
    kv_cache_dtype: str = "auto",
    cpu: bool = False,
    prefix_caching: bool = False,
    num_spec: int = 0,
    ssm_dtype: str | None = None,
    block_size: int | None = None,
    dtype: str = "auto",
    group_ratio: float = 1.5,
    in_flight: int = 0,
    hma: bool = True,
    pad_uneven_pages: bool = True,
    mla_block: int | None = None,
    disable_sliding_window: bool = False,
    mamba2_checkpoint: bool = False,
) -> Layout:
    """Block size, page and groups as vLLM computes them for this model (servectl.plan.kvcache.build).

    CPU build: cache_config.block_size defaults to 128 and CPU_ATTN's kernel blocks are multiples of 32
    (platforms/cpu.py, v1/attention/backends/cpu_attn.py:65-66); GPU backends (FlashAttention / Triton) have a
    smallest kernel block of 16. --block-size replaces either; CPU_MLA forces 16."""
    platform = Platform(cpu=cpu, block_size=block_size, kernel_block=32 if cpu else 16, mla_block=mla_block)
    return build(
        arch,
        platform,
        tp=tp,
        kv_cache_dtype=kv_cache_dtype,
        dtype=dtype,
        prefix_caching=prefix_caching,
        num_spec=num_spec,
        ssm_dtype=ssm_dtype,
        in_flight=in_flight,
        hma=hma,
        group_ratio=group_ratio,
        pad_uneven_pages=pad_uneven_pages,
        disable_sliding_window=disable_sliding_window,
        mamba2_checkpoint=mamba2_checkpoint,
    )


@dataclass(frozen=True)
class Graphs:
    """CUDA graphs vLLM captures (FULL_AND_PIECEWISE, the default for these models)."""

    piecewise: list[int]
    full: list[int]

    @property
    def count(self) -> int:
        return len(self.piecewise) + len(self.full)

    @property
    def tokens(self) -> int:
        return sum(self.piecewise) + sum(self.full)


def graphs_for(seqs: int, mbt: int, max_capture: int | None, num_spec: int = 0, eager: bool = False) -> Graphs:
    """vllm/config/vllm.py _set_cudagraph_sizes: largest = min(max_num_seqs*(1+spec)*2, 512) unless set, capped by
    max_num_batched_tokens; FULL decode graphs for the sizes up to max_num_seqs*(1+spec) (cudagraph_dispatcher.py)."""
    if eager:
        return Graphs([], [])
    q = 1 + num_spec
    cap = min(max_capture if max_capture is not None else min(seqs * q * 2, 512), mbt)
    sizes = capture_sizes(cap)
    return Graphs(sizes, [x for x in sizes if q <= x <= seqs * q])
