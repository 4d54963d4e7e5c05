"""Model families: which KV-cache layout vLLM builds for a config.json, as data plus one small rule each.

A family names the `architectures` vLLM maps to one model file, the transformers config class whose defaults
fill keys a config.json leaves out (transformers 5.19, the one vLLM 0.32's CPU build installs), and a rule
giving each decoder layer's KV kind the way that model file builds its layers:

    full_attention     attention over the whole context (MLA when the family has an MLA geometry)
    sliding_attention  attention over the last `sliding_window` tokens
    chunked_attention  attention within `attention_chunk_size` chunks (Llama 4)
    linear_attention   a Gated DeltaNet state (Qwen3-Next / Qwen3.5)
    mamba              a Mamba2 (or Mamba1) state
    attention+mamba    both, in parallel (Falcon-H1)
    none               no KV cache (MLP or MoE only)

Paths are relative to vLLM 0.32's `vllm/` package; `V/` below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from servectl.checkpoint.configfile import ModelConfig, Sourced
from servectl.errors import UserError

# transformers' configuration_utils._LEGACY_LAYER_TYPE_REMAP (older checkpoints spell the kinds this way)
LEGACY_LAYER_TYPES = {"mamba": "linear_attention", "attention": "full_attention", "hybrid": "attention+mamba"}
# vLLM's model-level window applies only when every layer slides or none is typed (V/engine/arg_utils.py:2248-2254)
# engine/arg_utils.py (0.32 :2248-2254)
CACHE_WINDOW_RULE = "engine/arg_utils.py (CacheConfig.sliding_window when layer_types is absent or all sliding)"

# model_type values vLLM treats as DeepSeek-style MLA when kv_lora_rank is set
# (V/transformers_utils/model_arch_config_convertor.py is_deepseek_mla)
MLA_MODEL_TYPES = (
    "axk1",
    "deepseek_v2",
    "deepseek_v3",
    "deepseek_v32",
    "deepseek_mtp",
    "glm4_moe_lite",
    "kimi_k2",
    "kimi_linear",
    "longcat_flash",
    "pangu_ultra_moe",
    "dots3_note",
    "glm_moe_dsa",
    "glm5_next",
    "glm5_next_text",
    "bailing_hybrid",
    "hy_v4",
)
SPARSE_MLA_MODEL_TYPES = ("deepseek_v32", "glm_moe_dsa", "glm5_next", "glm5_next_text")


@dataclass(frozen=True)
class Layers:
    """Each decoder layer's KV kind, and the window / chunk the sliding / chunked layers use."""

    kinds: list[str]
    source: str
    sliding_window: Sourced | None = None
    attention_chunk_size: Sourced | None = None


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    architectures: tuple[str, ...]
    model_file: str  # the vLLM model file that builds the layers (V/model_executor/models/...)
    config_class: str  # transformers config class whose defaults apply
    defaults: dict[str, Any]
    layers: Callable[[ModelConfig, int], Layers]
    state: str | None = None  # "gdn", "mamba2", "mamba1" or None
    mla: bool = False  # DeepSeek-style MLA when kv_lora_rank is set
    notes: tuple[str, ...] = field(default_factory=tuple)


def _window(cfg: ModelConfig, *, use_flag: str | None = None) -> Sourced | None:
    """config.sliding_window as transformers leaves it (Qwen2/Qwen3: None unless use_sliding_window; 0 = none,
    V/config/model.py:802-808)."""
    if use_flag is not None:
        flag = cfg.get(use_flag, False)
        if not flag.value:
            return None
    w = cfg.get("sliding_window", None)
    if not w.value:
        return None
    try:
        return Sourced(int(w.value), w.source)
    except (TypeError, ValueError):
        raise UserError(f"config.json sliding_window {w.value!r} is not a number") from None


def _layer_types(cfg: ModelConfig, n: int, key: str = "layer_types") -> list[str] | None:
    raw = cfg.get(key, None).value
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise UserError(f"config.json {key} is not a list of layer kinds")
    kinds = [LEGACY_LAYER_TYPES.get(x) or x for x in raw]
    if len(kinds) != n:
        raise UserError(f"config.json {key} has {len(kinds)} entries for {n} layers")
    return kinds


def decoder_layers(per_layer: bool, use_flag: str | None = None) -> Callable[[ModelConfig, int], Layers]:
    """Llama-style decoders. Per layer (llama.py:185-203): `layer_types[i] == "sliding_attention"` gives the layer
    config.sliding_window (families without a per-layer rule, e.g. Qwen2/Qwen3, pass nothing); a layer without its
    own window takes the model-level one, which vLLM sets only when layer_types is absent or all sliding."""

    def rule(cfg: ModelConfig, n: int) -> Layers:
        window = _window(cfg, use_flag=use_flag)
        types = _layer_types(cfg, n)
        cache = window if (types is None or all(t == "sliding_attention" for t in types)) else None
        kinds = []
        for i in range(n):
            own = per_layer and types is not None and types[i] == "sliding_attention" and window is not None
            kinds.append("sliding_attention" if (own or cache is not None) else "full_attention")
        src = ("config.json layer_types and sliding_window (llama.py); " if per_layer and types else "") + CACHE_WINDOW_RULE
        return Layers(kinds, src, window if "sliding_attention" in kinds else None)

    return rule


def pattern_layers(default_pattern: int) -> Callable[[ModelConfig, int], Layers]:
    """Gemma 2/3: layer_types, else transformers' pattern: layer i slides unless (i + 1) % pattern == 0
    (Gemma3TextConfig reads the legacy sliding_window_pattern, default 6; Gemma2Config alternates)."""

    def rule(cfg: ModelConfig, n: int) -> Layers:
        window = _window(cfg)
        types = _layer_types(cfg, n)
        if types is None:
            p = cfg.get("sliding_window_pattern", default_pattern, rule=f"transformers default pattern {default_pattern}")
            pattern = int(p.value)
            types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
            src = f"sliding_window_pattern {pattern} ({p.source}): layer i slides unless (i + 1) % {pattern} == 0"
        else:
            src = "config.json layer_types"
        kinds = [("sliding_attention" if t == "sliding_attention" and window is not None else "full_attention") for t in types]
        return Layers(kinds, src + " (gemma2.py / gemma3.py)", window if "sliding_attention" in kinds else None)

    return rule


def gpt_oss_layers(cfg: ModelConfig, n: int) -> Layers:
    """gpt-oss: the window on even layers, whatever layer_types says (gpt_oss.py:174-176)."""
    window = _window(cfg)
    kinds = ["sliding_attention" if (i % 2 == 0 and window is not None) else "full_attention" for i in range(n)]
    return Layers(kinds, "vLLM rule: sliding window on layer_idx % 2 == 0 (gpt_oss.py)", window)


def llama4_layers(cfg: ModelConfig, n: int) -> Layers:
    """Llama 4: RoPE layers use chunked local attention when attention_chunk_size is set; NoPE layers
    (no_rope_layers[i] == 0) attend fully (llama4.py:184-185, 251-265)."""
    chunk = cfg.get("attention_chunk_size", None)
    nope = cfg.get("no_rope_layers", None).value
    interval = int(cfg.value("no_rope_layer_interval", 4))
    if not nope:
        nope = [int((i + 1) % interval != 0) for i in range(n)]
    if len(nope) != n:
        raise UserError(f"config.json no_rope_layers has {len(nope)} entries for {n} layers")
    kinds = ["chunked_attention" if (chunk.value and nope[i]) else "full_attention" for i in range(n)]
    return Layers(
        kinds,
        "no_rope_layers: RoPE layers chunked, NoPE layers full (llama4.py)",
        attention_chunk_size=chunk if chunk.value else None,
    )


def gdn_layers(cfg: ModelConfig, n: int) -> Layers:
    """Qwen3-Next / Qwen3.5: layer_types, else every full_attention_interval-th layer is full attention."""
    types = _layer_types(cfg, n)
    if types is None:
        interval = int(cfg.value("full_attention_interval", 4))
        types = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n)]
        src = f"full_attention_interval {interval} (transformers default when layer_types is absent)"
    else:
        src = "config.json layer_types"
    bad = sorted(set(types) - {"full_attention", "linear_attention"})
    if bad:
        raise UserError(f"config.json layer_types has kinds this family does not build: {', '.join(bad)}")
    return Layers(types, src + " (qwen3_next.py / qwen3_5.py)")


NEMOTRON_PATTERN = {"M": "linear_attention", "*": "full_attention", "-": "none", "E": "none"}


def nemotron_h_layers(cfg: ModelConfig, n: int) -> Layers:
    """Nemotron-H: hybrid_override_pattern (M mamba, * attention, - MLP, E MoE) or transformers 5's
    layers_block_type; attention layers take config.sliding_window when set (nemotron_h.py:478-489, 549-603)."""
    pattern = cfg.get("hybrid_override_pattern", None)
    if pattern.value:
        if not isinstance(pattern.value, str) or set(pattern.value) - set(NEMOTRON_PATTERN):
            raise UserError(f"config.json hybrid_override_pattern {pattern.value!r} has characters other than M * - E")
        raw = [NEMOTRON_PATTERN[c] for c in pattern.value]
        src = f"hybrid_override_pattern ({pattern.source})"
    else:
        key = "layers_block_type" if cfg.has("layers_block_type") else "layer_types"
        listed = cfg.get(key, None).value
        if not isinstance(listed, list):
            raise UserError("config.json has neither hybrid_override_pattern nor layers_block_type")
        named = [LEGACY_LAYER_TYPES.get(str(t)) or str(t) for t in listed]
        raw = [{"moe": "none", "mlp": "none"}.get(t, t) for t in named]
        src = f"config.json {key}"
    window = _window(cfg)
    kinds = [
        ("mamba" if k == "linear_attention" else "sliding_attention" if (k == "full_attention" and window) else k) for k in raw
    ]
    return Layers(kinds, src + " (nemotron_h.py)", window)


def granite_hybrid_layers(cfg: ModelConfig, n: int) -> Layers:
    """Granite 4.0-H: layer_types / layers_block_type (mamba, attention), all Mamba2 by default
    (granitemoehybrid.py:322-351)."""
    types = _layer_types(cfg, n) or _layer_types(cfg, n, "layers_block_type") or ["linear_attention"] * n
    kinds = ["mamba" if t == "linear_attention" else "full_attention" for t in types]
    return Layers(kinds, "config.json layer_types (granitemoehybrid.py)")


def jamba_layers(cfg: ModelConfig, n: int) -> Layers:
    """Jamba: layers_block_type, else attention where i % attn_layer_period == attn_layer_offset (jamba.py:294-323)."""
    types = _layer_types(cfg, n, "layers_block_type")
    if types is None:
        period, offset = int(cfg.value("attn_layer_period", 8)), int(cfg.value("attn_layer_offset", 4))
        types = ["full_attention" if i % period == offset else "linear_attention" for i in range(n)]
        src = f"attn_layer_period {period}, attn_layer_offset {offset}"
    else:
        src = "config.json layers_block_type"
    kinds = ["mamba" if t == "linear_attention" else "full_attention" for t in types]
    return Layers(kinds, src + " (jamba.py)")


def falcon_h1_layers(cfg: ModelConfig, n: int) -> Layers:
    """Falcon-H1: every decoder layer runs attention and Mamba2 in parallel (falcon_h1.py:314-345)."""
    return Layers(["attention+mamba"] * n, "vLLM rule: every layer is attention + Mamba2 in parallel (falcon_h1.py)")


def mla_layers(cfg: ModelConfig, n: int) -> Layers:
    return Layers(["full_attention"] * n, "every layer is MLA attention (deepseek_v2.py)")


_LLAMA = dict(num_key_value_heads=None, head_dim=None, max_position_embeddings=2048)
_MISTRAL = dict(num_key_value_heads=8, head_dim=None, max_position_embeddings=4096 * 32, sliding_window=4096)
_QWEN = dict(num_key_value_heads=32, max_position_embeddings=32768, use_sliding_window=False, sliding_window=4096)

FAMILIES: tuple[Family, ...] = (
    Family(
        "llama",
        "Llama-style decoder (full or sliding attention)",
        (
            "LlamaForCausalLM",
            "Phi3ForCausalLM",
            "InternLM3ForCausalLM",
            "Olmo2ForCausalLM",
            "GraniteForCausalLM",
            "Exaone4ForCausalLM",
        ),
        "llama.py",
        "LlamaConfig",
        _LLAMA,
        decoder_layers(per_layer=True),
    ),
    Family(
        "mistral",
        "Mistral / Ministral (sliding window on every layer when set)",
        ("MistralForCausalLM", "MinistralForCausalLM", "Ministral3ForCausalLM", "MixtralForCausalLM"),
        "llama.py / mixtral.py",
        "MistralConfig",
        _MISTRAL,
        decoder_layers(per_layer=True),
    ),
    Family(
        "qwen",
        "Qwen2 / Qwen3 dense and MoE",
        ("Qwen2ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM"),
        "qwen2.py / qwen3.py / qwen3_moe.py",
        "Qwen3Config",
        {**_QWEN, "head_dim": None},
        decoder_layers(per_layer=False, use_flag="use_sliding_window"),
    ),
    Family(
        "glm",
        "GLM-4.5 / 4.6 (GLM-4 MoE)",
        ("Glm4MoeForCausalLM", "Glm4ForCausalLM"),
        "glm4_moe.py",
        "Glm4MoeConfig",
        dict(num_key_value_heads=8, head_dim=None, max_position_embeddings=131072),
        decoder_layers(per_layer=False),
    ),
    Family(
        "gemma2",
        "Gemma 2 (alternating sliding / full)",
        ("Gemma2ForCausalLM",),
        "gemma2.py",
        "Gemma2Config",
        dict(num_key_value_heads=4, head_dim=256, sliding_window=4096, max_position_embeddings=8192),
        pattern_layers(2),
    ),
    Family(
        "gemma3",
        "Gemma 3 (5 sliding : 1 full by default)",
        ("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"),
        "gemma3.py",
        "Gemma3TextConfig",
        dict(num_key_value_heads=4, head_dim=256, sliding_window=4096, max_position_embeddings=131072),
        pattern_layers(6),
    ),
    Family(
        "gpt-oss",
        "gpt-oss (sliding window on even layers, attention sinks)",
        ("GptOssForCausalLM",),
        "gpt_oss.py",
        "GptOssConfig",
        dict(num_key_value_heads=8, head_dim=64, sliding_window=128, max_position_embeddings=131072),
        gpt_oss_layers,
        notes=("attention sinks are a per-head parameter, not KV cache (gpt_oss.py)",),
    ),
    Family(
        "llama4",
        "Llama 4 (chunked local attention on RoPE layers)",
        ("Llama4ForConditionalGeneration", "Llama4ForCausalLM"),
        "llama4.py",
        "Llama4TextConfig",
        dict(
            num_key_value_heads=8,
            head_dim=128,
            attention_chunk_size=8192,
            max_position_embeddings=4096 * 32,
            no_rope_layer_interval=4,
        ),
        llama4_layers,
    ),
    Family(
        "deepseek",
        "DeepSeek-V2/V3, Kimi K2, GLM-4.7-Flash (MLA)",
        (
            "DeepseekV2ForCausalLM",
            "DeepseekV3ForCausalLM",
            "DeepseekV32ForCausalLM",
            "KimiK2ForCausalLM",
            "Glm4MoeLiteForCausalLM",
        ),
        "deepseek_v2.py",
        "DeepseekV3Config",
        dict(num_key_value_heads=None, kv_lora_rank=512, qk_rope_head_dim=64, max_position_embeddings=4096),
        mla_layers,
        mla=True,
    ),
    Family(
        "qwen3-next",
        "Qwen3-Next / Qwen3.5 / 3.6 (Gated DeltaNet + attention)",
        (
            "Qwen3NextForCausalLM",
            "Qwen3_5ForConditionalGeneration",
            "Qwen3_5MoeForConditionalGeneration",
            "Qwen3_5ForCausalLM",
            "Qwen3_5MoeForCausalLM",
        ),
        "qwen3_next.py / qwen3_5.py",
        "Qwen3NextConfig",
        dict(
            num_key_value_heads=2,
            head_dim=256,
            max_position_embeddings=32768,
            linear_conv_kernel_dim=4,
            linear_key_head_dim=128,
            linear_value_head_dim=128,
            linear_num_key_heads=16,
            linear_num_value_heads=32,
        ),
        gdn_layers,
        state="gdn",
    ),
    Family(
        "nemotron-h",
        "Nemotron-H (Mamba2 + attention)",
        ("NemotronHForCausalLM",),
        "nemotron_h.py",
        "NemotronHConfig",
        dict(
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=4096,
            ssm_state_size=128,
            mamba_num_heads=128,
            mamba_head_dim=64,
            n_groups=8,
            conv_kernel=4,
            mamba_ssm_cache_dtype="float32",
        ),
        nemotron_h_layers,
        state="mamba2",
    ),
    Family(
        "granite-h",
        "Granite 4.0-H (Mamba2 + attention)",
        ("GraniteMoeHybridForCausalLM",),
        "granitemoehybrid.py",
        "GraniteMoeHybridConfig",
        dict(
            num_key_value_heads=None,
            max_position_embeddings=2048,
            mamba_n_heads=128,
            mamba_n_groups=1,
            mamba_d_state=256,
            mamba_d_head="auto",
            mamba_d_conv=4,
            mamba_expand=2,
        ),
        granite_hybrid_layers,
        state="mamba2",
    ),
    Family(
        "falcon-h1",
        "Falcon-H1 (attention and Mamba2 in parallel)",
        ("FalconH1ForCausalLM",),
        "falcon_h1.py",
        "FalconH1Config",
        dict(
            num_key_value_heads=8,
            max_position_embeddings=8192,
            mamba_d_ssm=1024,
            mamba_n_heads=128,
            mamba_d_head="auto",
            mamba_n_groups=1,
            mamba_d_state=256,
            mamba_d_conv=4,
            mamba_expand=2,
        ),
        falcon_h1_layers,
        state="mamba2",
    ),
    Family(
        "jamba",
        "Jamba (Mamba1 + attention)",
        ("JambaForCausalLM",),
        "jamba.py",
        "JambaConfig",
        dict(
            num_key_value_heads=8,
            max_position_embeddings=262144,
            attn_layer_period=8,
            attn_layer_offset=4,
            mamba_d_state=16,
            mamba_d_conv=4,
            mamba_expand=2,
        ),
        jamba_layers,
        state="mamba1",
    ),
)

_BY_ARCH = {a: f for f in FAMILIES for a in f.architectures}


def generic_layers(cfg: ModelConfig, n: int) -> Layers:
    """An architecture outside the table: full attention on every layer, or a Gated DeltaNet state where
    layer_types says linear_attention (the layouts a config shows without a model file's own rule)."""
    types = _layer_types(cfg, n)
    if types is None:
        return Layers(["full_attention"] * n, "no family rule: full attention on every layer")
    return Layers(
        ["linear_attention" if t == "linear_attention" else "full_attention" for t in types],
        "config.json layer_types (linear_attention: a Gated DeltaNet state; the others full attention)",
    )


# The architectures outside FAMILIES, read from config.json alone (no transformers defaults, every key required).
GENERIC = Family("generic", "a decoder outside servectl's family table", (), "", "", {}, generic_layers)


def generic_refusal(text: dict[str, Any]) -> str | None:
    """What an architecture outside the table has that only a model file's own rule could size (its text config's
    keys), or None: MLA, chunked local attention, Mamba layers, sliding windows."""
    if text.get("kv_lora_rank"):
        return "multi-head latent attention (kv_lora_rank)"
    if text.get("attention_chunk_size"):
        return "chunked local attention (attention_chunk_size)"
    if any(
        k in text for k in ("hybrid_override_pattern", "layers_block_type", "mamba_d_state", "ssm_state_size", "mamba_n_heads")
    ):
        return "Mamba layers"
    types = text.get("layer_types") if isinstance(text.get("layer_types"), list) else None
    if types and any(t in ("sliding_attention", "chunked_attention") for t in types):
        return "sliding-window layers (layer_types)"
    window = text.get("sliding_window")
    uses_window = window and (text.get("use_sliding_window", True) if "use_sliding_window" in text else True)
    if uses_window and not types:
        return f"sliding-window attention on every layer (sliding_window {window})"
    return None


def family_for(architecture: str) -> Family:
    try:
        return _BY_ARCH[architecture]
    except KeyError:
        known = ", ".join(sorted(_BY_ARCH))
        raise UserError(
            f"servectl has no KV-cache rule for architecture {architecture!r}", f"families it knows: {known}"
        ) from None
