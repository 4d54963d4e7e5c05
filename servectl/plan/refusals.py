"""What vLLM refuses at start-up, before a single weight loads: each check raises VllmRefuses with the words of
vLLM's own error (so a user finds it in vLLM's log and docs) and the flag that fixes it. Pure.

Where vLLM makes these checks (repo-relative, 0.32):
- a max_model_len above the model's: vllm/config/model.py (ModelConfig's derived max_model_len;
  VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 turns the refusal into a warning);
- no memory for the cache, and one request of max_model_len: vllm/v1/core/kv_cache_utils.py
  `_check_enough_kv_cache_memory` (0.18: :616-650);
- `--max-model-len auto` that fits nothing: kv_cache_utils.py `_auto_fit_max_model_len` (0.18: :1400-1450).
The KV layouts vLLM cannot build are refused where they are built (servectl.plan.kvcache.LayoutRefused) and the
CPU build's missing kernels in servectl.plan.cpu_rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servectl.errors import UserError

if TYPE_CHECKING:
    from servectl.catalog.gpu import GpuProfile
    from servectl.catalog.recipe import ModelRecipe
    from servectl.plan.sizing import Settings, Sizing

MIB = 2**20


class VllmRefuses(UserError):
    """vLLM itself would refuse these flags at start-up (names vLLM's check)."""


def check_start(recipe: ModelRecipe, profile: GpuProfile, s: Settings, sz: Sizing) -> None:
    """Raise VllmRefuses where vLLM would exit at start-up with these settings (its checks, in its order)."""
    native = recipe.architecture.max_position_embeddings
    mml, lay, acc = sz.max_model_len, sz.layout, sz.accounting
    if mml > native and not s.allow_long_max_model_len:
        raise VllmRefuses(
            f"vLLM refuses --max-model-len {mml}: it exceeds the model's max_position_embeddings {native} "
            "(ModelConfig: 'User-specified max_model_len ... is greater than the derived max_model_len')",
            f"use --max-model-len {native} or less (or set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if the model really supports more)",
        )
    avail = sz.memory.kv_available
    if avail > 0 and sz.num_blocks == 0:  # memory is left, but less than one block of every layer's page
        raise VllmRefuses(
            f"vLLM refuses max_model_len {mml}: {avail / MIB:.0f} MiB are left for the KV cache on {profile.name}, less "
            "than one KV block of the model's layers (vLLM's check: 'To serve at least one request with the model's "
            "max seq len')",
            "give the KV cache more memory (--gpu-memory-utilization / --kv-cache-memory-bytes) or pick a larger GPU; "
            "check the checkpoint's head_dim / num_key_value_heads if a block this large is unexpected",
        )
    if avail <= 0:
        raise VllmRefuses(
            f"vLLM refuses to start on {profile.name}: no memory left for the KV cache "
            f"(weights and overheads exceed the budget by {-avail / MIB:.0f} MiB; vLLM's check: "
            "'No available memory for the cache blocks')",
            "raise --gpu-memory-utilization or set --kv-cache-memory-bytes, lower --max-num-seqs / "
            "--max-num-batched-tokens, or pick a larger GPU",
        )
    if s.max_model_len_auto and mml <= 0:
        raise VllmRefuses(
            "vLLM refuses --max-model-len auto: not even one token fits ('Cannot auto-fit max_model_len')",
            "raise --gpu-memory-utilization or --kv-cache-memory-bytes",
        )
    if not acc.vllm_starts(lay, mml):
        fit = acc.auto_length(lay, native) if not acc.group0_only else 0
        raise VllmRefuses(
            f"vLLM refuses max_model_len {mml}: one request needs {acc.vllm_needs(lay, mml)} KV blocks and its "
            f"check allows {acc.check_blocks} of the {sz.num_blocks} on {profile.name} "
            "(vLLM's check: 'To serve at least one request with the model's max seq len')",
            f"use --max-model-len {fit} (vLLM's own estimate) or give the KV cache more memory"
            if fit > 0
            else "give the KV cache more memory (--gpu-memory-utilization / --kv-cache-memory-bytes) or pick a larger GPU",
        )
