"""A memory plan: every figure with its reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Figure:
    """One number of a plan and the one-line reason for it."""

    value: float | int | str | None  # The figure.
    unit: str = ""  # Unit (MiB, tokens, blocks, x).
    reason: str  # Why it has this value (formula or vLLM source it follows).


@dataclass(frozen=True, kw_only=True)
class GuideRow:
    """One row of the utilization guide: what a utilization gives on this GPU."""

    name: str  # Preset name or 'util X'.
    gpu_memory_utilization: float  # --gpu-memory-utilization.
    kv_cache_tokens_logged: int  # What vLLM will print as KV cache size.
    kv_cache_tokens_real: int  # Tokens one request can hold.
    max_model_len_fit: int  # Largest max_model_len that fits one request.


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A predicted vLLM start: every figure with its reason, and the flags that realise it."""

    recipe: str  # Model recipe name.
    profile: str  # GPU profile name.
    vllm_version: str  # vLLM version the figures are predicted for (logged numbers changed between releases).
    device: str  # GPU or CPU (the KV cache size line's spelling).
    max_model_len: int  # Resolved max_model_len (what `auto` resolves to, when asked).
    block_size: int  # Attention block size in tokens after hybrid page unification.
    num_blocks: int  # KV cache blocks vLLM allocates (num_gpu_blocks).
    kv_cache_tokens_logged: int  # What vLLM will print as '<dev> KV cache size: N tokens'.
    kv_cache_tokens_real: int  # Tokens one request can actually use (capped at max_model_len).
    max_concurrency: float  # vLLM's 'Maximum concurrency for max_model_len tokens per request'.
    total_vram_mib: float  # Device memory in use once started (context + weights + non-torch + KV + CUDA graphs).
    budget: dict[str, float]  # Each term of the memory budget, MiB.
    figures: dict[str, Figure]  # Every figure with its one-line reason.
    flags: list[str]  # vLLM flags that realise the plan.
    env: dict[str, str] = field(default_factory=dict)  # Environment the plan assumes (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS).
    fits: bool  # One request of max_model_len really runs (its blocks fit beside vLLM's null block).
    vllm_starts: bool = True  # vLLM's own start-up checks pass (a plan is only made for what vLLM starts).
    warnings: list[str] = field(default_factory=list)  # What vLLM will do that the user may not expect (it still starts).
    ignored_flags: list[str] = field(default_factory=list)  # Flags given that do not change memory (accepted, not planned).
    guide: list[GuideRow] = field(default_factory=list)  # Utilization guide for this GPU (computed).
    notes: list[str] = field(default_factory=list)  # What the user should know (OS headroom, version quirks, calibration used).
    speculative: dict | None = (
        None  # MTP speculation: depth, the draft's MiB, and the same figures without it (None: not speculating).
    )
    nodes: dict[str, Any] | None = None  # Multi-node split (plan --nodes N): per node and per rank, and the bottleneck node.
    layout: list[dict[str, Any]] = field(
        default_factory=list
    )  # KV-cache groups: spec kind, layers, page bytes, block size, blocks per request.
    kv_layout: dict[str, Any] | None = None  # KV groups and the blocks one request of max_model_len pins in each.

    def to_json(self) -> dict:
        """The stable `--json` contract (scripts read these keys)."""
        return {
            "recipe": self.recipe,
            "profile": self.profile,
            "vllm_version": self.vllm_version,
            "device": self.device,
            "kv_cache_tokens_logged": self.kv_cache_tokens_logged,
            "kv_cache_tokens_real": self.kv_cache_tokens_real,
            "max_concurrency": round(self.max_concurrency, 2),
            "total_vram_mib": round(self.total_vram_mib),
            "budget": {k: round(v, 1) for k, v in self.budget.items()},
            "max_model_len": self.max_model_len,
            "block_size": self.block_size,
            "num_blocks": self.num_blocks,
            "flags": self.flags,
            "env": self.env,
            "fits": self.fits,
            "vllm_starts": self.vllm_starts,
            "warnings": self.warnings,
            "ignored_flags": self.ignored_flags,
            "figures": {k: asdict(f) for k, f in self.figures.items()},
            "guide": [asdict(g) for g in self.guide],
            "notes": self.notes,
            "speculative": self.speculative,
            "kv_layout": self.kv_layout,
            "layout": self.layout,
            **({"nodes": self.nodes} if self.nodes is not None else {}),
        }
