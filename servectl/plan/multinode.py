"""Memory per node and per rank of the multi-node layout (tensor parallel T within a node, pipeline
parallel N across nodes: servectl.render.multinode), from the single-node plan of one rank. Pure.

- Layers per stage: vLLM's get_pp_indices (vllm/distributed/utils.py; the remainder goes to the
  stages before the last, VLLM_PP_LAYER_PARTITION not set).
- Which layers are full attention: Qwen3-Next / Qwen3.5's `full_attention_interval` (the last of every
  num_layers / full_attention_layers layers), the layout of every hybrid recipe in the catalog.
- Weights per rank: the token embedding on the first stage, the LM head on the last (vLLM builds
  PPMissingLayer elsewhere, e.g. vllm/model_executor/models/qwen3_next.py), the decoder layers split
  evenly by count; everything / T (vocab-parallel embedding and head, tensor-parallel layers).
- KV per rank: each rank has the same budget as the single-node plan's rank (same GPU, same flags)
  and fills what its weights leave; vLLM then gives every rank the smallest rank's block count
  (vllm/v1/core/kv_cache_utils.py get_kv_cache_configs: "Change the num_blocks of each rank to the
  smallest among all ranks"), so the node with the fewest blocks is the bottleneck. KV groups are
  vLLM's global ones; a block costs a rank one page per group slot it holds.
Activation peak, non-torch memory and CUDA graphs are taken per rank as in the single-node plan.
"""

from __future__ import annotations

from typing import Any

from servectl.catalog.recipe import Architecture
from servectl.plan.geometry import DTYPE_BYTES, Layout
from servectl.plan.models import Plan

MIB = 2**20


def pp_partition(num_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage as vLLM's get_pp_indices splits them."""
    per = num_layers // pp
    parts = [per] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


def full_attention_mask(arch: Architecture) -> list[bool]:
    """True for the full-attention layers: the last of every interval (Qwen3-Next full_attention_interval)."""
    if not arch.linear_attention_layers:
        return [True] * arch.num_layers
    if not arch.full_attention_layers:
        return [False] * arch.num_layers
    interval = arch.num_layers // arch.full_attention_layers
    return [(i + 1) % interval == 0 for i in range(arch.num_layers)]


def _slots(stage_layers: range, mask: list[bool], group: int) -> int:
    """Group slots a stage holds: vLLM groups full and linear layers separately, `group` layers each, in order;
    a rank needs slot j when some group has its j-th layer there."""
    slots = set()
    for kind in (True, False):
        same = [i for i in range(len(mask)) if mask[i] == kind]
        for pos, layer in enumerate(same):
            if layer in stage_layers:
                slots.add(pos % group)
    return len(slots)


def split(plan: Plan, arch: Architecture, lay: Layout, tp: int, nodes: int, kv_pinned: bool) -> dict[str, Any]:
    """The `nodes` block of `plan --nodes N --json`: per node (= per pipeline stage, T ranks each) and the bottleneck."""
    parts = pp_partition(arch.num_layers, nodes)
    mask = full_attention_mask(arch)
    embed_bytes = arch.vocab_size * arch.hidden_size * DTYPE_BYTES[arch.dtype]  # embedding and LM head stay 16-bit
    total_weights = plan.budget["weights"] * MIB * tp
    per_layer = max(0.0, total_weights - 2 * embed_bytes) / arch.num_layers
    avail_rank = plan.budget["kv_available"] * MIB
    per_node = []
    start = 0
    for k, count in enumerate(parts):
        layers = range(start, start + count)
        start += count
        weights = (per_layer * count + (embed_bytes if k == 0 else 0) + (embed_bytes if k == nodes - 1 else 0)) / tp
        avail = avail_rank if kv_pinned else avail_rank + plan.budget["weights"] * MIB - weights
        slots = _slots(layers, mask, lay.layers_per_group)
        block_bytes = lay.page_bytes * slots
        blocks = int(avail // block_bytes) if block_bytes else None
        per_node.append({
            "node": k, "layers": [layers.start, layers.stop - 1],
            "full_attention_layers": sum(mask[i] for i in layers),
            "linear_attention_layers": sum(not mask[i] for i in layers),
            "ranks": tp,
            "weights_mib_per_rank": round(weights / MIB, 1),
            "kv_available_mib_per_rank": round(avail / MIB, 1),
            "kv_block_bytes_per_rank": block_bytes,
            "kv_blocks": blocks,
        })
    limited = [n for n in per_node if n["kv_blocks"] is not None]
    bottleneck = min(limited, key=lambda n: n["kv_blocks"]) if limited else per_node[0]
    blocks = bottleneck["kv_blocks"] or 0
    for n in per_node:
        used = blocks * n["kv_block_bytes_per_rank"]
        n["kv_used_mib_per_rank"] = round(used / MIB, 1)
        n["kv_unused_mib_per_rank"] = round(n["kv_available_mib_per_rank"] - used / MIB, 1)
    real = min(lay.longest_request(max(0, blocks - 1)), plan.max_model_len)  # one block is vLLM's null block
    if len({n["kv_blocks"] for n in per_node}) == 1:
        why = "every node has the same KV blocks"
    elif kv_pinned:
        why = "fewest KV blocks: the most KV group slots for the same KV memory"
    else:
        why = "fewest KV blocks: its weights leave it the least memory"
    return {
        "count": nodes, "tensor_parallel_size": tp, "pipeline_parallel_size": nodes, "ranks": tp * nodes,
        "layers_per_node": parts,
        "per_node": per_node,
        "bottleneck": {"node": bottleneck["node"], "kv_blocks": blocks, "reason": why},
        "num_blocks": blocks,
        "kv_cache_tokens_real": real,
        "fits": real >= plan.max_model_len,
        "weights_mib_total": round(total_weights / MIB, 1),
        "max_weights_mib_per_rank": max(n["weights_mib_per_rank"] for n in per_node),
        "note": "activation peak, non-torch memory and CUDA graphs per rank as the single-node plan's",
    }

