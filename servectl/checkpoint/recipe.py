"""A plain recipe from a checkpoint's files: the derived architecture and the settings any profile can run (no
parsers, no card, no tuned flags), weights estimated from the architecture when there are no safetensors headers.
The planner's view of a config.json alone (public configs, captured starts); `plan DIR` and `models show DIR` go
through checkpoint.serving's full recipe, which derives the same architecture."""

from __future__ import annotations

from typing import Any, cast

from servectl.catalog.recipe import Architecture, ModelRecipe, ProfileSettings
from servectl.checkpoint.derive import Derived, derive, recipe_name
from servectl.checkpoint.source import CheckpointSource

# Bytes per parameter of the weight formats (packed 4-bit formats carry one 8-bit scale per group of 16/32).
BYTES_PER_PARAM = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "nvfp4": 0.5625,
    "mxfp4": 0.53125,
    "gptq-int4": 0.53125,
    "gptq-int8": 1.03,
    "awq-int4": 0.53125,
    "int4": 0.53125,
    "int8": 1.03,
}


def estimated_weight_bytes(arch: Architecture, quantization: str, intermediate_size: int | None = None) -> int:
    """Weights from the architecture when the checkpoint has no safetensors headers (a config.json alone): the
    embedding and LM head in 16-bit, every layer's attention / state and MLP / MoE projections at the format's
    bytes per parameter. An estimate, named as one wherever it is used."""
    h, b = arch.hidden_size, BYTES_PER_PARAM.get(quantization, 2.0)
    embed = 2 * arch.vocab_size * h * 2
    params = 0.0
    kinds = arch.kinds()
    separate_mlp = "none" in kinds  # Nemotron-H style: mixers and MLPs are separate layers
    for kind in kinds:
        if kind in ("full_attention", "sliding_attention", "chunked_attention", "attention+mamba"):
            if arch.mla is not None:
                params += h * arch.mla.kv_lora_rank * 2 + arch.num_attention_heads * arch.head_dim * h * 3
            else:
                params += h * arch.num_attention_heads * arch.head_dim * 2 + 2 * h * arch.num_kv_heads * arch.head_dim
        if kind == "linear_attention" and arch.linear is not None:
            lin = arch.linear
            qk, v = lin.num_key_heads * lin.key_head_dim, lin.num_value_heads * lin.value_head_dim
            params += h * (2 * qk + 2 * v) + v * h
        if kind in ("mamba", "attention+mamba") and arch.mamba is not None:
            m = arch.mamba
            params += (
                h * (2 * m.intermediate_size + 2 * max(1, m.n_groups) * m.state_size + m.num_heads) + m.intermediate_size * h
            )
        if separate_mlp and kind != "none":
            continue
        if arch.num_experts:
            params += arch.num_experts * 3 * h * (arch.moe_intermediate_size or intermediate_size or 4 * h)
        else:
            params += 3 * h * (intermediate_size or 4 * h)
    return int(embed + params * b)


def checkpoint_recipe(
    source: CheckpointSource, profiles: list[str], derived: Derived | None = None
) -> tuple[ModelRecipe, Derived]:
    """(recipe, derivation) of a checkpoint; every profile may run it with vLLM's defaults."""
    d = derived or derive(source)
    weights = d.weights_gib
    if weights is None or weights <= 0:
        inter = d.figures.get("intermediate_size")
        weights = max(estimated_weight_bytes(d.architecture, d.quantization, inter.value if inter else None) / 2**30, 1e-6)
        d.notes.append(f"weights {weights:.2f} GiB estimated from the architecture (the checkpoint has no safetensors headers)")
    name = recipe_name(source)
    recipe = ModelRecipe(
        name=name,
        title=f"{d.family.title}: {source.name}",
        repo=str(source.name),
        served_model_name=name,
        quantization=cast(Any, d.quantization),
        quantization_method=d.quant_method,
        weights_gib=weights,
        architecture=d.architecture,
        min_vllm=">=0",
        profiles={p: ProfileSettings() for p in profiles},
    )
    return recipe, d
