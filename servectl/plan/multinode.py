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

from dataclasses import dataclass
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


@dataclass
class _Node:
    """One node (pipeline stage) of the split, per rank."""

    node: int
    layers: range
    full: int
    linear: int
    weights: float  # bytes per rank
    avail: float  # KV bytes per rank
    block_bytes: int  # one KV block per rank (the group slots it holds)
    blocks: int | None  # None: the stage holds no KV layer

    def as_json(self, tp: int, blocks_used: int) -> dict[str, Any]:
        used = blocks_used * self.block_bytes
        avail_mib = round(self.avail / MIB, 1)
        return {
            "node": self.node,
            "layers": [self.layers.start, self.layers.stop - 1],
            "full_attention_layers": self.full,
            "linear_attention_layers": self.linear,
            "ranks": tp,
            "weights_mib_per_rank": round(self.weights / MIB, 1),
            "kv_available_mib_per_rank": avail_mib,
            "kv_block_bytes_per_rank": self.block_bytes,
            "kv_blocks": self.blocks,
            "kv_used_mib_per_rank": round(used / MIB, 1),
            "kv_unused_mib_per_rank": round(avail_mib - used / MIB, 1),
        }


def split(plan: Plan, arch: Architecture, lay: Layout, tp: int, nodes: int, kv_pinned: bool) -> dict[str, Any]:
    """The `nodes` block of `plan --nodes N --json`: per node (= per pipeline stage, T ranks each) and the bottleneck."""
    parts = pp_partition(arch.num_layers, nodes)
    mask = full_attention_mask(arch)
    embed_bytes = arch.vocab_size * arch.hidden_size * DTYPE_BYTES[arch.dtype]  # embedding and LM head stay 16-bit
    total_weights = plan.budget["weights"] * MIB * tp
    per_layer = max(0.0, total_weights - 2 * embed_bytes) / arch.num_layers
    avail_rank = plan.budget["kv_available"] * MIB
    per_node: list[_Node] = []
    start = 0
    for k, count in enumerate(parts):
        layers = range(start, start + count)
        start += count
        weights = (per_layer * count + (embed_bytes if k == 0 else 0) + (embed_bytes if k == nodes - 1 else 0)) / tp
        avail = avail_rank if kv_pinned else avail_rank + plan.budget["weights"] * MIB - weights
        block_bytes = lay.page_bytes * _slots(layers, mask, lay.layers_per_group)
        per_node.append(
            _Node(
                k,
                layers,
                sum(mask[i] for i in layers),
                sum(not mask[i] for i in layers),
                weights,
                avail,
                block_bytes,
                int(avail // block_bytes) if block_bytes else None,
            )
        )
    limited = [n for n in per_node if n.blocks is not None]
    bottleneck = min(limited, key=lambda n: n.blocks or 0) if limited else per_node[0]
    blocks = bottleneck.blocks or 0
    real = min(lay.longest_request(max(0, blocks - 1)), plan.max_model_len)  # one block is vLLM's null block
    if len({n.blocks for n in per_node}) == 1:
        why = "every node has the same KV blocks"
    elif kv_pinned:
        why = "fewest KV blocks: the most KV group slots for the same KV memory"
    else:
        why = "fewest KV blocks: its weights leave it the least memory"
    rows = [n.as_json(tp, blocks) for n in per_node]
    return {
        "count": nodes,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": nodes,
        "ranks": tp * nodes,
        "layers_per_node": parts,
        "per_node": rows,
        "bottleneck": {"node": bottleneck.node, "kv_blocks": blocks, "reason": why},
        "num_blocks": blocks,
        "kv_cache_tokens_real": real,
        "fits": real >= plan.max_model_len,
        "weights_mib_total": round(total_weights / MIB, 1),
        "max_weights_mib_per_rank": max(r["weights_mib_per_rank"] for r in rows),
        "note": "activation peak, non-torch memory and CUDA graphs per rank as the single-node plan's",
    }
