"""One accounting of KV blocks for `--max-model-len auto`, vLLM's start-up check, `fits`, logged and real tokens.

vLLM's BlockPool keeps one block as the null block (vllm/v1/core/block_pool.py: `self.null_block =
self.free_block_queue.popleft()`), so requests share num_blocks - 1. vLLM's own check and auto-fit
(kv_cache_utils.py `_check_enough_kv_cache_memory`, `_auto_fit_max_model_len`) reserve it only from 0.29, and
0.17/0.18 size one request by group 0 only. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from servectl.catalog import versions as vv
from servectl.plan.geometry import Layout


@dataclass(frozen=True)
class Accounting:
    """One accounting of blocks for auto length, vLLM's start-up check, `fits`, logged and real tokens.

    vLLM's BlockPool always holds one block back as the null block (v1/core/block_pool.py), so a request
    can use num_blocks - 1. vLLM's own check and auto-fit count it only from 0.29 ("Reserve the null block"),
    and 0.17/0.18 size one request by group 0 only (a mamba group for these hybrids)."""

    num_blocks: int
    usable_blocks: int  # num_blocks - the null block
    check_blocks: int  # what vLLM's check and auto-fit plan against
    group0_only: bool  # <= 0.18: the check sizes one request by group 0 (the first layer's group)
    null_reserved: bool

    @classmethod
    def of(cls, num_blocks: int, version: str, hybrid: bool) -> "Accounting":
        reserved = vv.has("null_block_reserved_in_check", version)
        return cls(
            num_blocks,
            max(0, num_blocks - 1),
            max(0, num_blocks - (1 if reserved else 0)),
            hybrid and not vv.has("max_model_len_check_sums_groups", version),
            reserved,
        )

    def vllm_needs(self, lay: Layout, length: int) -> int:
        """Blocks vLLM's check asks for one request of `length` tokens."""
        if self.group0_only:
            return lay.group_blocks(0, length)  # <= 0.18: group 0 alone (a mamba group for Qwen3.5: its state)
        return lay.blocks_per_request(length)

    def vllm_starts(self, lay: Layout, length: int) -> bool:
        return self.vllm_needs(lay, length) <= self.check_blocks

    def auto_length(self, lay: Layout, native: int) -> int:
        """vLLM's `--max-model-len auto` (a binary search over the same check, capped at the native length)."""
        if self.group0_only:
            if lay.groups and lay.groups[0].spec.grows:
                return min(native, _longest(lambda n: lay.group_blocks(0, n), self.check_blocks, native))
            return native if self.vllm_starts(lay, native) else 0
        return min(native, lay.longest_request(self.check_blocks))

    def longest_real(self, lay: Layout) -> int:
        """Longest request that really runs: its blocks come from the num_blocks - 1 usable ones."""
        return lay.longest_request(self.usable_blocks)


def _longest(blocks_for, limit: int, native: int) -> int:
    """Largest length <= native whose blocks fit in `limit` (vLLM's binary search), 0 when none does."""
    if blocks_for(1) > limit:
        return 0
    lo, hi = 1, native
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if blocks_for(mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo
