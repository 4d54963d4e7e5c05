"""The architecture figures the planner needs, from config.json, for the layouts the recipe schema holds today:
full attention on every layer (Llama, Qwen2/3, Mistral without a window, ...) and Gated DeltaNet hybrids
(Qwen3-Next, Qwen3.5/3.6). A layout it cannot hold (sliding windows, MLA, Mamba, chunked local attention) is
refused with one line; the planner's general layouts take those over. Every figure comes with its config key.

Rules as vLLM reads a config (transformers_utils/model_arch_config_convertor.py:89-164): KV heads from
num_key_value_heads (else the attention heads), head size from head_dim (else hidden_size / heads); the text
stack's fields from `text_config` when the config nests one."""

from __future__ import annotations

from typing import Any

from servectl.catalog.base import validate
from servectl.catalog.recipe import Architecture
from servectl.errors import UserError


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) else config


def _int(cfg: dict[str, Any], *keys: str) -> tuple[int | None, str | None]:
    for key in keys:
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value, key
    return None, None


def _refuse(label: str, what: str) -> UserError:
    return UserError(f"{label}: {what}: a layout servectl's planner cannot size yet",
                     "plan it with a recipe of a supported layout, or serve it with -- flags of your own")


def architecture(config: dict[str, Any], label: str, dtype: str) -> tuple[Architecture, list[tuple[str, str, str]]]:
    """(the architecture, [(figure, value, source)]) of a config, or a UserError for a layout not held yet."""
    cfg = text_config(config)
    where = "config.json text_config" if cfg is not config else "config.json"
    src: list[tuple[str, str, str]] = []

    def need(*keys: str) -> int:
        value, key = _int(cfg, *keys)
        if value is None:
            raise UserError(f"{label}: {where} has no {' / '.join(keys)}", "is this a transformers config.json of a language model?")
        return value

    if cfg.get("kv_lora_rank"):
        raise _refuse(label, "multi-head latent attention (kv_lora_rank)")
    if cfg.get("attention_chunk_size"):
        raise _refuse(label, "chunked local attention (attention_chunk_size)")
    if any(k in cfg for k in ("hybrid_override_pattern", "layers_block_type", "mamba_d_state", "ssm_state_size", "mamba_n_heads")):
        raise _refuse(label, "Mamba layers")
    types = cfg.get("layer_types") if isinstance(cfg.get("layer_types"), list) else None
    if types and any(t in ("sliding_attention", "chunked_attention") for t in types):
        raise _refuse(label, "sliding-window layers (layer_types)")
    window = cfg.get("sliding_window")
    uses_window = window and (cfg.get("use_sliding_window", True) if "use_sliding_window" in cfg else True)
    if uses_window and not types:
        raise _refuse(label, f"sliding-window attention on every layer (sliding_window {window})")

    archs = config.get("architectures") or []
    layers = need("num_hidden_layers", "n_layer", "num_layers")
    heads = need("num_attention_heads", "n_head")
    kv, kv_key = _int(cfg, "num_key_value_heads", "n_head_kv", "num_kv_heads", "multi_query_group_num")
    hidden = need("hidden_size", "n_embd", "d_model")
    head_dim, hd_key = _int(cfg, "head_dim")
    linear = [t for t in (types or []) if t == "linear_attention"]
    fields: dict[str, Any] = {
        "hf_architecture": archs[0] if archs else "unknown",
        "num_layers": layers,
        "full_attention_layers": layers - len(linear),
        "linear_attention_layers": len(linear),
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": kv or heads,
        "head_dim": head_dim or hidden // heads,
        "vocab_size": need("vocab_size"),
        "max_position_embeddings": need("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"),
        "dtype": dtype,
    }
    src += [("hf_architecture", fields["hf_architecture"], "config.json architectures[0]"),
            ("num_layers", str(layers), f"{where} num_hidden_layers"),
            ("num_kv_heads", str(fields["num_kv_heads"]), f"{where} {kv_key}" if kv else f"{where} num_attention_heads (no KV head count: MHA)"),
            ("head_dim", str(fields["head_dim"]), f"{where} {hd_key}" if head_dim else f"{where} hidden_size / num_attention_heads"),
            ("max_position_embeddings", str(fields["max_position_embeddings"]), f"{where} max_position_embeddings")]
    if linear:
        fields["linear"] = {
            "num_key_heads": need("linear_num_key_heads"), "num_value_heads": need("linear_num_value_heads"),
            "key_head_dim": need("linear_key_head_dim"), "value_head_dim": need("linear_value_head_dim"),
            "conv_kernel_dim": need("linear_conv_kernel_dim"),
            "ssm_dtype": {"float32": "float32", "float16": "float16"}.get(str(cfg.get("mamba_ssm_dtype")), dtype),
        }
        src.append(("linear_attention_layers", str(len(linear)), f"{where} layer_types (linear_attention)"))
    experts, ex_key = _int(cfg, "num_experts", "n_routed_experts", "num_local_experts")
    if experts:
        fields["num_experts"] = experts
        fields["experts_per_token"] = need("num_experts_per_tok", "num_experts_per_token", "moe_topk")
        fields["moe_intermediate_size"] = _int(cfg, "moe_intermediate_size", "intermediate_size")[0] or 0
        fields["shared_expert_intermediate_size"] = _int(cfg, "shared_expert_intermediate_size")[0] or 0
        src.append(("num_experts", str(experts), f"{where} {ex_key}"))
    mtp, mtp_key = _int(cfg, "mtp_num_hidden_layers", "num_nextn_predict_layers")
    if mtp:
        fields["mtp_layers"] = mtp
        src.append(("mtp_layers", str(mtp), f"{where} {mtp_key}"))
    vision = config.get("vision_config")
    if isinstance(vision, dict):
        depth, _ = _int(vision, "depth", "num_hidden_layers")
        vhidden, _ = _int(vision, "hidden_size", "embed_dim")
        patch, _ = _int(vision, "patch_size")
        if depth and vhidden and patch:
            fields["vision"] = {"depth": depth, "hidden_size": vhidden, "patch_size": patch, "params_b": 0.0}
    return validate(Architecture, fields), src
