"""A checkpoint's architecture as vLLM reads it, every figure with its source.

- the model class: `architectures[0]` (V/config/model.py resolves the class from it);
- KV heads and head size: vLLM's config convertor (V/transformers_utils/model_arch_config_convertor.py:89-164):
  heads from n_head_kv / num_kv_heads / num_key_value_heads / multi_query_group_num / num_attention_groups, else
  num_attention_heads; head size from head_dim (> 0), else hidden_size_per_head, else hidden_size / heads; MLA
  (is_deepseek_mla: the model_type list with kv_lora_rank set) caches one head of kv_lora_rank + qk_rope_head_dim;
- the native length: the smallest of vLLM's length keys, model_max_length overriding, times the RoPE scaling
  factor except for the YaRN / llama3 / longrope kinds and Gemma 3 (V/config/model.py:2527-2633,
  model_arch_config_convertor.py derive_max_model_len_and_key);
- the dtype: config.json dtype / torch_dtype, else the weights' (safetensors headers), else float32; vLLM's auto
  dtype runs float32 models in bfloat16 (V/config/model.py:2405-2428);
- the layer layout and the state geometry: the family's rule (servectl.checkpoint.families);
- quantization: servectl.checkpoint.quant (the weight format and the KV cache dtype a checkpoint asks for);
- weights: the safetensors headers (servectl.checkpoint.safetensors), else model.safetensors.index.json.
`V/` is vLLM 0.32's `vllm/` package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

from servectl.catalog.recipe import Architecture, LinearAttention, MambaState, MlaAttention, VisionEncoder
from servectl.checkpoint import configfile, families, quant
from servectl.checkpoint.configfile import ModelConfig, Sourced
from servectl.checkpoint.safetensors import Weights, index_total, weights
from servectl.checkpoint.source import CheckpointSource
from servectl.errors import UserError

CONVERTOR = "transformers_utils/model_arch_config_convertor.py"
KV_HEAD_KEYS = ("n_head_kv", "num_kv_heads", "num_key_value_heads", "multi_query_group_num", "num_attention_groups")
LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
ROPE_KEEP = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")
TORCH_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "half": "float16", "float32": "float32", "float": "float32"}
SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
MAX_LAYERS = 100_000


@dataclass
class Derived:
    """The architecture servectl plans with, where every figure came from, and what the checkpoint asks of vLLM."""

    architecture: Architecture
    family: families.Family
    model_type: str
    figures: dict[str, Sourced]
    quantization: str  # servectl's format label (catalog.base.Quantization)
    quant_method: str | None
    kv_cache_dtype: str  # what `--kv-cache-dtype auto` resolves to for this checkpoint
    weights: Weights | None
    weights_source: str
    sparse_attention: bool = False  # DeepSeek sparse attention (an indexer cache servectl does not model)
    notes: list[str] = field(default_factory=list)

    @property
    def weights_gib(self) -> float | None:
        return self.weights.loaded_bytes / 2**30 if self.weights is not None else None


def _int(s: Sourced, name: str, minimum: int = 1) -> int:
    try:
        value = int(s.value)
    except (TypeError, ValueError):
        raise UserError(f"config.json {name} {s.value!r} is not a whole number") from None
    if value < minimum or value > 2**40:
        raise UserError(f"config.json {name} {value} is out of range")
    return value


def kv_heads(cfg: ModelConfig, heads: int, config_class: bool = True) -> Sourced:
    """vLLM's get_total_num_kv_heads: the first KV-head key that is set. `config_class`: a family's transformers
    config class fills a None with the attention heads (e.g. LlamaConfig.__post_init__); without one (an
    architecture outside the table) a None key is passed over, as getattr sees it."""
    for key in KV_HEAD_KEYS:
        if cfg.has(key):
            s = cfg.get(key)
            if s.value is not None:
                return s
            if config_class:
                break
    return Sourced(heads, f"num_attention_heads (no KV-head key: {CONVERTOR} get_total_num_kv_heads)")


def head_size(cfg: ModelConfig, hidden: int, heads: int, fam: families.Family) -> Sourced:
    if fam.name == "granite-h":
        return Sourced(hidden // heads, "vLLM rule: hidden_size / num_attention_heads (granitemoehybrid.py)")
    hd = cfg.get("head_dim", None)
    if hd.value is not None and hd.value != "auto" and int(hd.value) > 0:
        return Sourced(int(hd.value), hd.source)
    per = cfg.get("hidden_size_per_head", None)
    if per.value:
        return Sourced(int(per.value), per.source)
    return Sourced(hidden // heads, f"hidden_size / num_attention_heads ({CONVERTOR} get_head_size)")


def native_length(cfg: ModelConfig, model_type: str) -> Sourced:
    best: tuple[float, str] | None = None
    for key in LENGTH_KEYS:
        s = cfg.get(key, None)
        if s.value is not None and (best is None or s.value < best[0]):
            best = (float(s.value), s.source)
    mml = cfg.get("model_max_length", None)
    if mml.value:
        best = (float(mml.value), mml.source + " (overrides the others)")
    if best is None:
        return Sourced(2048, "vLLM's default: no length key in config.json (config/model.py)")
    length, src = best
    rope = cfg.get("rope_parameters", None).value or cfg.get("rope_scaling", None).value
    if isinstance(rope, dict) and "gemma3" not in model_type:
        params = [v for v in rope.values() if isinstance(v, dict)] or [rope]
        factor = 1.0
        for p in params:
            kind = p.get("rope_type", p.get("type", "default"))
            if kind == "longrope":
                orig = cfg.get("original_max_position_embeddings", None)
                if orig.value:
                    return Sourced(int(orig.value), f"{orig.source} (longrope: vLLM defaults to the original length)")
            if kind not in ROPE_KEEP and p.get("factor") is not None:
                factor = float(p["factor"])
        if factor != 1.0:
            return Sourced(int(length * factor), f"{src} x RoPE scaling factor {factor:g} (config/model.py)")
    return Sourced(int(length), src)


def model_dtype(cfg: ModelConfig, w: Weights | None) -> Sourced:
    raw = cfg.root_get("dtype") or cfg.root_get("torch_dtype")
    if raw is not None and raw.value is not None:
        dtype = TORCH_DTYPES.get(str(raw.value).removeprefix("torch."))
        if dtype is None:
            raise UserError(f"config.json dtype {raw.value!r} is not one vLLM serves (bfloat16, float16, float32)")
        src = raw.source
    elif w is not None and w.main_dtype in SAFETENSORS_DTYPES:
        dtype, src = SAFETENSORS_DTYPES[w.main_dtype], "the weights' dtype (safetensors headers; config.json names none)"
    else:
        dtype, src = "float32", "float32 (config.json names no dtype)"
    if dtype == "float32":
        return Sourced("bfloat16", f"{src}: float32, which vLLM's auto dtype runs in bfloat16 (config/model.py)")
    return Sourced(dtype, src)


def quantization(cfg: ModelConfig, dtype: str) -> tuple[str, str | None, Literal["auto", "fp8"], str]:
    """(servectl's label, quant_method, KV dtype `auto` resolves to, where that came from), read by
    servectl.checkpoint.quant (one reader for plans and derived recipes); an unquantized checkpoint is labelled
    by its model dtype (config.json's, else its weights')."""
    choice = quant.quantization(cfg.root, text=cfg.text)
    label = choice.quantization if choice.method is not None else ("bf16" if dtype == "bfloat16" else "fp16")
    kv, kv_src = quant.kv_cache_dtype(cfg.root, cfg.text)
    return label, choice.method, kv, kv_src


def _mamba(cfg: ModelConfig, fam: families.Family, hidden: int, figs: dict[str, Sourced]) -> MambaState:
    if fam.name == "nemotron-h":
        heads, hd = _int(cfg.get("mamba_num_heads"), "mamba_num_heads"), _int(cfg.get("mamba_head_dim"), "mamba_head_dim")
        inter = Sourced(heads * hd, "mamba_num_heads x mamba_head_dim (nemotron_h.py)")
        groups, state = cfg.get("n_groups"), cfg.get("ssm_state_size")
        conv = cfg.get("conv_kernel") if cfg.has("conv_kernel") else cfg.get("mamba_d_conv", 4)
        ssm = cfg.get("mamba_ssm_cache_dtype", "float32")
        ssm = Sourced(ssm.value, ssm.source + " (models/config.py: NemotronH defaults to float32)")
        heads_s, hd_s = cfg.get("mamba_num_heads"), cfg.get("mamba_head_dim")
    elif fam.name in ("granite-h", "falcon-h1"):
        if fam.name == "falcon-h1" and cfg.get("mamba_d_ssm", None).value is not None:
            inter = cfg.get("mamba_d_ssm")
            inter = Sourced(_int(inter, "mamba_d_ssm"), inter.source)
        else:
            expand = cfg.get("mamba_expand")
            inter = Sourced(int(float(expand.value) * hidden), f"mamba_expand x hidden_size ({expand.source})")
        heads_s = cfg.get("mamba_n_heads")
        heads = _int(heads_s, "mamba_n_heads")
        hd_s = cfg.get("mamba_d_head", "auto")
        if hd_s.value in (None, "auto"):
            hd_s = Sourced(inter.value // heads, "intermediate / mamba_n_heads (transformers' 'auto' head dim)")
        hd = _int(hd_s, "mamba_d_head")
        groups, state, conv = cfg.get("mamba_n_groups"), cfg.get("mamba_d_state"), cfg.get("mamba_d_conv")
        ssm = Sourced(None, "the model dtype (mamba_ssm_cache_dtype auto)")
    else:  # jamba: Mamba1
        expand = cfg.get("mamba_expand")
        inter = Sourced(int(expand.value) * hidden, f"mamba_expand x hidden_size ({expand.source}; jamba.py)")
        state, conv = cfg.get("mamba_d_state"), cfg.get("mamba_d_conv")
        figs.update(mamba_intermediate_size=inter, mamba_state_size=state, mamba_conv_kernel=conv)
        return MambaState(
            kind="mamba1",
            intermediate_size=inter.value,
            state_size=_int(state, "mamba_d_state"),
            conv_kernel=_int(conv, "mamba_d_conv"),
        )
    figs.update(
        mamba_intermediate_size=inter,
        mamba_num_heads=heads_s,
        mamba_head_dim=hd_s,
        mamba_n_groups=groups,
        mamba_state_size=state,
        mamba_conv_kernel=conv,
        mamba_ssm_dtype=ssm,
    )
    dtype = ssm.value if ssm.value in ("float32", "bfloat16", "float16") else None
    return MambaState(
        kind="mamba2",
        intermediate_size=inter.value,
        state_size=_int(state, "ssm state size"),
        conv_kernel=_int(conv, "conv kernel"),
        n_groups=_int(groups, "n_groups"),
        num_heads=heads,
        head_dim=hd,
        ssm_dtype=dtype,
    )


def _gdn(cfg: ModelConfig, architecture: str, dtype: str, figs: dict[str, Sourced], generic: bool = False) -> LinearAttention:
    keys = {
        "num_key_heads": "linear_num_key_heads",
        "num_value_heads": "linear_num_value_heads",
        "key_head_dim": "linear_key_head_dim",
        "value_head_dim": "linear_value_head_dim",
        "conv_kernel_dim": "linear_conv_kernel_dim",
    }
    vals = {}
    for field_name, key in keys.items():
        s = cfg.get(key)
        figs[key] = s
        vals[field_name] = _int(s, key)
    declared = cfg.get("mamba_ssm_dtype", None)
    if architecture.startswith("Qwen3_5") and declared.value in ("float32", "bfloat16", "float16"):
        ssm = Sourced(declared.value, declared.source + " (models/config.py Qwen3_5ForConditionalGenerationConfig)")
    elif generic and declared.value in ("float32", "float16"):
        ssm = Sourced(declared.value, declared.source)
    else:
        ssm = Sourced(dtype, "the model dtype (mamba_ssm_cache_dtype auto)")
    figs["ssm_dtype"] = ssm
    return LinearAttention(**vals, ssm_dtype=ssm.value)


def _first(cfg: ModelConfig, keys: tuple[str, ...], label: str) -> Sourced:
    """An architecture outside the family table: the first of `keys` config.json has (no transformers defaults)."""
    for key in keys:
        if cfg.get(key, None).value is not None:
            return cfg.get(key)
    where = f"config.json {cfg.text_key}" if cfg.text_key else "config.json"
    raise UserError(f"{label}: {where} has no {' / '.join(keys)}", "is this a transformers config.json of a language model?")


def derive(source: CheckpointSource, *, read_weights: bool = True, generic: bool = False) -> Derived:
    """The architecture and its figures. An architecture outside the family table is refused, or with `generic`
    read from config.json alone (servectl.checkpoint.families.GENERIC: full attention, or Gated DeltaNet by
    layer_types; the layouts only a model file's rule could size are refused in one line)."""
    cfg = configfile.load(source)
    archs = cfg.root.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        arch_name = archs[0]
    elif generic:
        arch_name = "unknown"  # no model class named: read from config.json alone, as any architecture outside the table
    else:
        raise UserError(f"{source.name}/config.json names no architectures", "vLLM picks the model class from it")
    try:
        fam = families.family_for(arch_name)
    except UserError:
        if not generic:
            raise
        fam = families.GENERIC
        what = families.generic_refusal(cfg.text)
        if what:
            raise UserError(
                f"{getattr(source, 'label', source.name)}: {what}: a layout servectl's planner cannot size yet",
                "plan it with a recipe of a supported layout, or serve it with -- flags of your own",
            ) from None
    is_generic = fam is families.GENERIC
    ckpt = getattr(source, "label", source.name)  # how messages name the checkpoint
    cfg.defaults, cfg.defaults_source = dict(fam.defaults), f"transformers {fam.config_class}"
    model_type = str(cfg.text.get("model_type") or cfg.root.get("model_type") or "")
    figs: dict[str, Sourced] = {
        "architecture": Sourced(arch_name, "config.json architectures[0]"),
        "model_type": Sourced(model_type, "config.json model_type"),
        "family": Sourced(
            fam.title,
            "config.json alone (no family rule for this architecture)"
            if is_generic
            else f"vLLM model file model_executor/models/{fam.model_file}",
        ),
    }
    if cfg.text_key:
        figs["text_config"] = Sourced(cfg.text_key, f"config.json {cfg.text_key} (transformers get_text_config)")

    n = _first(cfg, ("num_hidden_layers", "n_layer", "num_layers"), ckpt) if is_generic else cfg.get("num_hidden_layers", None)
    if (
        fam.name == "nemotron-h"
        and not cfg.text.get("hybrid_override_pattern")
        and isinstance(cfg.text.get("layers_block_type"), list)
    ):
        n = Sourced(len(cfg.text["layers_block_type"]), "len(config.json layers_block_type)")
    elif fam.name == "nemotron-h" and isinstance(cfg.text.get("hybrid_override_pattern"), str):
        n = Sourced(len(cfg.text["hybrid_override_pattern"]), "len(config.json hybrid_override_pattern)")
    if n.value is None:
        raise UserError(f"{source.name}/config.json has no num_hidden_layers", "is this a decoder model's config.json?")
    layers = _int(n, "num_hidden_layers")
    if layers > MAX_LAYERS:
        raise UserError(f"config.json num_hidden_layers {layers} is implausible")
    hidden_s = _first(cfg, ("hidden_size", "n_embd", "d_model"), ckpt) if is_generic else cfg.get("hidden_size")
    hidden = _int(hidden_s, "hidden_size")
    heads_s = _first(cfg, ("num_attention_heads", "n_head"), ckpt) if is_generic else cfg.get("num_attention_heads")
    heads = _int(heads_s, "num_attention_heads")
    kvh = kv_heads(cfg, heads, config_class=not is_generic)
    hd = head_size(cfg, hidden, heads, fam)
    figs.update(num_layers=n, hidden_size=hidden_s, num_attention_heads=heads_s, num_kv_heads=kvh, head_dim=hd)

    lay = fam.layers(cfg, layers)
    kinds = lay.kinds
    figs["layer_layout"] = Sourced(_summary(kinds), lay.source)
    if lay.sliding_window is not None:
        figs["sliding_window"] = lay.sliding_window
    if lay.attention_chunk_size is not None:
        figs["attention_chunk_size"] = lay.attention_chunk_size

    mla = None
    sparse = False
    if fam.mla or model_type in families.MLA_MODEL_TYPES:
        rank = cfg.get("kv_lora_rank", None)
        if model_type in families.MLA_MODEL_TYPES and rank.value is not None:
            rope = cfg.get("qk_rope_head_dim")
            sparse = model_type in families.SPARSE_MLA_MODEL_TYPES or bool(cfg.get("index_topk", None).value)
            mla = MlaAttention(
                kv_lora_rank=_int(rank, "kv_lora_rank"), qk_rope_head_dim=_int(rope, "qk_rope_head_dim", 0), sparse=sparse
            )
            figs["kv_lora_rank"], figs["qk_rope_head_dim"] = rank, rope
            figs["mla_head_size"] = Sourced(
                mla.kv_lora_rank + mla.qk_rope_head_dim,
                f"kv_lora_rank + qk_rope_head_dim, one KV head ({CONVERTOR} is_deepseek_mla)",
            )
    dtype = model_dtype(cfg, None)
    w, wsrc = None, "none (no safetensors headers read)"
    if read_weights:
        files = [f for f in source.list_files() if f.endswith(".safetensors")]
        if files:
            w = weights(source)
            wsrc = f"the safetensors headers of {w.files} file{'s' if w.files != 1 else ''} ({w.loaded_bytes / 2**30:.3f} GiB loaded)"
            if not (cfg.root_get("dtype") or cfg.root_get("torch_dtype")):
                dtype = model_dtype(cfg, w)
        elif (total := index_total(source)) is not None:
            w = Weights(total, 0, 0, {}, source="model.safetensors.index.json metadata.total_size")
            wsrc = f"model.safetensors.index.json metadata.total_size ({total / 2**30:.2f} GiB)"
    figs["dtype"] = dtype
    label, method, kv_dtype, kv_src = quantization(cfg, dtype.value)
    figs["quantization"] = Sourced(
        method or "none", "config.json quantization_config.quant_method" if method else "no quantization_config"
    )
    if kv_dtype != "auto":
        figs["kv_cache_dtype"] = Sourced(kv_dtype, kv_src)
    figs["weights"] = Sourced(round(w.loaded_bytes / 2**30, 3) if w else None, wsrc)

    linear = _gdn(cfg, arch_name, dtype.value, figs, is_generic) if "linear_attention" in kinds else None
    mamba = _mamba(cfg, fam, hidden, figs) if any(k in ("mamba", "attention+mamba") for k in kinds) else None
    if is_generic:  # a length key is required (no model class to default it)
        _first(cfg, ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"), ckpt)
    length = native_length(cfg, model_type)
    figs["max_position_embeddings"] = length
    inter = cfg.get("intermediate_size", None)
    if isinstance(inter.value, int) and inter.value > 0:
        figs["intermediate_size"] = inter
    vocab = _first(cfg, ("vocab_size",), ckpt) if is_generic else cfg.get("vocab_size", 32000)
    figs["vocab_size"] = vocab
    experts = (
        cfg.get("num_experts", None).value
        or cfg.get("n_routed_experts", None).value
        or cfg.get("num_local_experts", None).value
        or 0
    )
    per_tok = cfg.get("num_experts_per_tok", None).value or 0
    moe_inter = cfg.get("moe_intermediate_size", 0).value or 0
    if experts:
        figs["num_experts"] = Sourced(experts, "config.json num_experts / n_routed_experts / num_local_experts")
        if is_generic:
            per_s = _first(cfg, ("num_experts_per_tok", "num_experts_per_token", "moe_topk"), ckpt)
            per_tok, figs["experts_per_token"] = per_s.value, per_s
            moe_inter = moe_inter or cfg.get("intermediate_size", 0).value or 0
    mtp_s = next((cfg.get(k) for k in ("mtp_num_hidden_layers", "num_nextn_predict_layers") if cfg.has(k)), None)
    mtp = mtp_s.value if mtp_s is not None and isinstance(mtp_s.value, int) and mtp_s.value > 0 else 0
    if mtp and mtp_s is not None:
        figs["mtp_layers"] = mtp_s  # the multi-token-prediction head (loaded only when speculating)
    shared = cfg.value("shared_expert_intermediate_size", 0)
    vision = _vision(cfg.root.get("vision_config"))
    attn = sum(k in ("full_attention", "sliding_attention", "chunked_attention", "attention+mamba") for k in kinds)
    state = sum(k in ("linear_attention", "mamba", "attention+mamba") for k in kinds)
    arch = Architecture(
        hf_architecture=arch_name,
        num_layers=layers,
        full_attention_layers=attn,
        linear_attention_layers=state,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=_int(kvh, "num_kv_heads"),
        head_dim=_int(hd, "head_dim"),
        linear=linear,
        num_experts=int(experts or 0),
        experts_per_token=int(per_tok or 0),
        moe_intermediate_size=int(moe_inter),
        vocab_size=_int(vocab, "vocab_size"),
        max_position_embeddings=int(length.value),
        dtype=dtype.value,
        layer_types=kinds,
        sliding_window=lay.sliding_window.value if lay.sliding_window else None,
        attention_chunk_size=_int(lay.attention_chunk_size, "attention_chunk_size") if lay.attention_chunk_size else None,
        mla=mla,
        mamba=mamba,
        kv_cache_dtype=kv_dtype,
        mtp_layers=mtp,
        shared_expert_intermediate_size=shared if isinstance(shared, int) and shared > 0 else 0,
        vision=vision,
    )
    notes = list(fam.notes)
    if cfg.get("use_bidirectional_attention", None).value:
        notes.append("use_bidirectional_attention: transformers halves the sliding window for this config")
    return Derived(arch, fam, model_type, figs, label, method, kv_dtype, w, wsrc, sparse, notes)


def _vision(vision: Any) -> VisionEncoder | None:
    """The vision tower's geometry when config.json has one (its weights come with the checkpoint's)."""
    if not isinstance(vision, dict):
        return None

    def first(*keys: str) -> int | None:
        return next((v for k in keys if isinstance(v := vision.get(k), int) and not isinstance(v, bool) and v > 0), None)

    depth, hidden, patch = first("depth", "num_hidden_layers"), first("hidden_size", "embed_dim"), first("patch_size")
    return VisionEncoder(depth=depth, hidden_size=hidden, patch_size=patch, params_b=0.0) if depth and hidden and patch else None


def _summary(kinds: list[str]) -> str:
    counts: dict[str, int] = {}
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def recipe_name(source: CheckpointSource) -> str:
    """A catalog-style name for a checkpoint directory (its folder name, lower case, [a-z0-9.-])."""
    base = PurePath(source.name.rstrip("/")).name or "checkpoint"
    name = re.sub(r"[^a-z0-9.-]+", "-", base.lower()).strip("-.") or "checkpoint"
    return name if name[0].isalnum() else "m" + name
