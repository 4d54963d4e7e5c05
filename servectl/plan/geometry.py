"""KV cache geometry as vLLM computes it: attention block size after hybrid page unification, page size, KV
groups, state blocks per request, and the CUDA-graph capture list. Exact (from vLLM's source), pure.

- page unification: vllm/model_executor/models/config.py:103-248 (`HybridAttentionMambaModelConfig`, 0.17-0.19),
  vllm/platforms/interface.py `_align_hybrid_block_size` (0.20+; 0.32: interface.py:939-1125);
- GDN state shapes: vllm/model_executor/layers/mamba/mamba_utils.py:177-200;
- groups: vllm/v1/core/kv_cache_utils.py `_get_kv_cache_groups_uniform_page_size` (0.18: :956-1075);
- capture sizes: vllm/config/vllm.py `_set_cudagraph_sizes` (0.18: :1287-1430), FULL decode graphs:
  vllm/v1/cudagraph_dispatcher.py:195-225.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servectl.catalog.recipe import Architecture

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "half": 2, "float": 4, "auto": 2}


@dataclass(frozen=True)
class Layout:
    """KV cache geometry after vLLM's hybrid page unification."""

    block_size: int
    attn_bytes_per_token_layer: int
    mamba_state_bytes: int
    page_bytes: int
    layers_per_group: int
    attn_groups: int
    mamba_groups: int
    mamba_blocks_per_request: int  # 1 ('none'), 2 ('align'), + speculative tokens
    ssm_dtype: str = "float32"

    @property
    def block_bytes(self) -> int:
        """One block id costs one page in each of the group_size shared tensors."""
        return self.page_bytes * self.layers_per_group

    @property
    def n_groups(self) -> int:
        return self.attn_groups + self.mamba_groups

    @property
    def state_blocks(self) -> int:
        """Blocks one request pins for its mamba state, whatever its length."""
        return self.mamba_groups * self.mamba_blocks_per_request

    def blocks_per_request(self, length: int) -> int:
        return self.attn_groups * math.ceil(length / self.block_size) + self.state_blocks

    def longest_request(self, blocks: int) -> int:
        """Longest length whose blocks_per_request fits in `blocks` (0 when not even one token)."""
        if blocks <= self.state_blocks:
            return 0
        if not self.attn_groups:
            return 2**31 - 1
        return (blocks - self.state_blocks) // self.attn_groups * self.block_size


def capture_sizes(max_size: int) -> list[int]:
    """vllm/config/vllm.py:1287-1430: [1, 2, 4] + multiples of 8 below 256 + multiples of 16 from 256."""
    sizes = [i for i in (1, 2, 4) if i <= max_size]
    if max_size >= 8:
        sizes += list(range(8, min(max_size + 1, 256), 8))
    if max_size >= 256:
        sizes += list(range(256, max_size + 1, 16))
    return sizes


def layout(arch: Architecture, *, tp: int = 1, kv_cache_dtype: str = "auto", cpu: bool = False,
           prefix_caching: bool = False, num_spec: int = 0, ssm_dtype: str | None = None,
           block_size: int | None = None, dtype: str = "auto", group_ratio: float = 1.5) -> Layout:
    """Block size, page and groups as vLLM computes them for this model."""
    model_bytes = DTYPE_BYTES[dtype] if dtype != "auto" else DTYPE_BYTES[arch.dtype]
    kv_bytes = 1 if kv_cache_dtype.startswith("fp8") else model_bytes
    kv_heads = max(1, arch.num_kv_heads // tp)
    # FullAttentionSpec.real_page_size_bytes (vllm/v1/kv_cache_interface.py:181-187), one token, one layer
    a = 2 * kv_heads * arch.head_dim * kv_bytes
    # CPU build: cache_config.block_size defaults to 128 (platforms/cpu.py); GPU backends (FlashAttention/
    # FlashInfer) have a smallest kernel block of 16. --block-size replaces either.
    base_block = block_size or (128 if cpu else 16)
    mamba = 0
    ssm = ssm_dtype or (arch.linear.ssm_dtype if arch.linear else "float32")
    full = arch.full_attention_layers + (1 if num_spec and arch.mtp_layers else 0)  # the MTP head's attention layer
    if arch.linear_attention_layers and arch.linear is not None:
        lin = arch.linear
        # vllm/model_executor/layers/mamba/mamba_utils.py:177-200 gated_delta_net_state_shape
        conv_dim = (lin.key_head_dim * lin.num_key_heads * 2 + lin.value_head_dim * lin.num_value_heads) // tp
        conv = (lin.conv_kernel_dim - 1 + num_spec) * conv_dim * model_bytes
        temporal = (lin.num_value_heads // tp) * lin.value_head_dim * lin.key_head_dim * DTYPE_BYTES[ssm]
        mamba = conv + temporal
    block = base_block
    if mamba:
        # alignment = max(min kernel block size, cache_config.block_size) (0.32 interface.py:1062-1069)
        align = base_block
        block = max(base_block, align * math.ceil(mamba / (align * a)))
    page = block * a
    lin_n = arch.linear_attention_layers
    if lin_n and full:
        lo, hi = min(full, lin_n), max(full, lin_n)
        # kv_cache_utils.py:1043: one group per min-count layers unless the counts are close (x1.5; 0.17: x1.25)
        g = hi if hi < lo * group_ratio else lo
    else:
        g = full or lin_n
    attn_groups = math.ceil(full / g) if full else 0
    mamba_groups = math.ceil(lin_n / g) if lin_n else 0
    # MambaSpec.max_memory_usage_bytes (kv_cache_interface.py:293-300): 'align' 2+spec, 'none' 1+spec
    m = (2 if prefix_caching else 1) + num_spec
    return Layout(block, a, mamba, page, g, attn_groups, mamba_groups, m, ssm)


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
