"""Model recipes: a quantized checkpoint, its geometry and how to serve it (profiles/models.yaml)."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from servectl.catalog.base import DOTTED_KEY, Ge, Gt, Le, Quantization, SCHEMA_VERSION, TorchDtype, require_match, schema


ATTENTION_KINDS = ("full_attention", "sliding_attention", "chunked_attention")
STATE_KINDS = ("linear_attention", "mamba")
LAYER_KINDS = (*ATTENTION_KINDS, *STATE_KINDS, "attention+mamba", "none")


@schema
class LinearAttention:
    """Gated DeltaNet (linear attention) layer geometry: sizes the constant per-request state."""

    num_key_heads: Annotated[int, Ge(1)]  # linear_num_key_heads.
    num_value_heads: Annotated[int, Ge(1)]  # linear_num_value_heads.
    key_head_dim: Annotated[int, Ge(1)]  # linear_key_head_dim.
    value_head_dim: Annotated[int, Ge(1)]  # linear_value_head_dim.
    conv_kernel_dim: Annotated[int, Ge(1)]  # linear_conv_kernel_dim (conv state keeps kernel-1 rows).
    ssm_dtype: TorchDtype = "float32"  # dtype of the temporal (SSM) state; Qwen3.5's config sets float32.


@schema
class MlaAttention:
    """DeepSeek-style multi-head latent attention: one cached head of kv_lora_rank + qk_rope_head_dim values."""

    kv_lora_rank: Annotated[int, Ge(1)]  # kv_lora_rank (the compressed latent cached per token).
    qk_rope_head_dim: Annotated[int, Ge(0)]  # qk_rope_head_dim (the RoPE part cached beside the latent).
    sparse: bool = False  # DeepSeek sparse attention (V3.2): an indexer cache besides the latent, not sized by servectl.


@schema
class MambaState:
    """A Mamba2 or Mamba1 layer's constant per-request state (vllm/model_executor/layers/mamba/mamba_utils.py)."""

    kind: Literal["mamba2", "mamba1"]  # mamba2_state_shape or mamba1_state_shape.
    intermediate_size: Annotated[int, Ge(1)]  # Inner dimension the conv state spans (heads x head_dim for Mamba2).
    state_size: Annotated[int, Ge(1)]  # SSM state size (d_state).
    conv_kernel: Annotated[int, Ge(1)]  # Conv kernel width (the conv state keeps kernel - 1 rows).
    n_groups: Annotated[int, Ge(0)] = 0  # Mamba2 B/C groups.
    num_heads: Annotated[int, Ge(0)] = 0  # Mamba2 heads.
    head_dim: Annotated[int, Ge(0)] = 0  # Mamba2 head dim.
    ssm_dtype: TorchDtype | None = None  # Temporal state dtype the model asks for (None: the model dtype).


@schema
class VisionEncoder:
    """Vision tower geometry (kept in BF16 by every recipe here)."""

    depth: Annotated[int, Ge(1)]  # Number of ViT blocks.
    hidden_size: Annotated[int, Ge(1)]  # ViT hidden size.
    patch_size: Annotated[int, Ge(1)]  # Patch edge in pixels.
    params_b: Annotated[float, Ge(0)]  # Parameters, billions (sizes the encoder weights).


@schema
class Architecture:
    """The numbers memory planning needs (from the checkpoint's config.json text_config)."""

    hf_architecture: str  # `architectures[0]` of config.json; vLLM picks its model class from it.
    num_layers: Annotated[int, Ge(1)]  # num_hidden_layers of the text stack.
    full_attention_layers: Annotated[int, Ge(0)]  # Layers with a growing KV cache.
    linear_attention_layers: Annotated[int, Ge(0)] = 0  # Gated DeltaNet layers with constant per-request state.
    hidden_size: Annotated[int, Ge(1)]  # hidden_size.
    num_attention_heads: Annotated[int, Ge(1)]  # Query heads of the full-attention layers.
    num_kv_heads: Annotated[int, Ge(1)]  # num_key_value_heads.
    head_dim: Annotated[int, Ge(1)]  # Attention head dim.
    linear: LinearAttention | None = None  # Linear-attention geometry (hybrid models).
    num_experts: Annotated[int, Ge(0)] = 0  # Routed experts per MoE layer (0: dense).
    experts_per_token: Annotated[int, Ge(0)] = 0  # Active routed experts per token.
    moe_intermediate_size: Annotated[int, Ge(0)] = 0  # Intermediate size of one expert.
    shared_expert_intermediate_size: Annotated[int, Ge(0)] = 0  # Intermediate size of the shared expert.
    vocab_size: Annotated[int, Ge(1)]  # Vocabulary size (sizes logits and the sampler's profile peak).
    max_position_embeddings: Annotated[int, Ge(1)]  # Native context; vLLM's derived max_model_len.
    mtp_layers: Annotated[int, Ge(0)] = 0  # Multi-token-prediction layers (not loaded unless speculative decoding).
    dtype: TorchDtype = "bfloat16"  # Activation / KV dtype when --kv-cache-dtype is auto.
    vision: VisionEncoder | None = None  # Vision encoder, for multimodal recipes.
    layer_types: list[str] = field(default_factory=list)  # Per layer: full_attention, sliding_attention, chunked_attention, linear_attention (GDN), mamba, attention+mamba or none (empty: linear layers first, full every num_layers / full_attention_layers-th, as Qwen3-Next).
    sliding_window: Annotated[int, Ge(1)] | None = None  # Window of the sliding_attention layers, tokens.
    attention_chunk_size: Annotated[int, Ge(1)] | None = None  # Chunk of the chunked_attention layers, tokens.
    mla: MlaAttention | None = None  # Attention layers are MLA (one latent head) instead of num_kv_heads x head_dim.
    mamba: MambaState | None = None  # Geometry of the mamba layers.
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"  # What --kv-cache-dtype auto resolves to for this checkpoint (its quantization_config's KV scheme).

    def __post_init__(self) -> None:
        if self.layer_types:
            if len(self.layer_types) != self.num_layers:
                raise ValueError("layer_types needs one entry per layer")
            unknown = set(self.layer_types) - set(LAYER_KINDS)
            if unknown:
                raise ValueError(f"layer_types has unknown kinds {sorted(unknown)} (known: {', '.join(LAYER_KINDS)})")
            attn = sum(k in ATTENTION_KINDS or k == "attention+mamba" for k in self.layer_types)
            state = sum(k in STATE_KINDS or k == "attention+mamba" for k in self.layer_types)
            if (attn, state) != (self.full_attention_layers, self.linear_attention_layers):
                raise ValueError("full_attention_layers / linear_attention_layers must count the attention / state layers of layer_types")
            if "sliding_attention" in self.layer_types and not self.sliding_window:
                raise ValueError("sliding_attention layers need sliding_window")
            if "chunked_attention" in self.layer_types and not self.attention_chunk_size:
                raise ValueError("chunked_attention layers need attention_chunk_size")
            if any(k in ("mamba", "attention+mamba") for k in self.layer_types) and self.mamba is None:
                raise ValueError("mamba layers need the `mamba` geometry")
        elif self.full_attention_layers + self.linear_attention_layers != self.num_layers:
            raise ValueError("full_attention_layers + linear_attention_layers must equal num_layers")
        if "linear_attention" in self.kinds() and self.linear is None:
            raise ValueError("linear_attention_layers > 0 needs the `linear` geometry")

    def kinds(self) -> list[str]:
        """Each layer's KV kind (layer_types, or the Qwen3-Next layout the counts describe)."""
        if self.layer_types:
            return list(self.layer_types)
        if not self.linear_attention_layers:
            return ["full_attention"] * self.num_layers
        if not self.full_attention_layers:
            return ["linear_attention"] * self.num_layers
        interval = self.num_layers // self.full_attention_layers
        return ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(self.num_layers)]


@schema
class Parsers:
    """vLLM output parsers the recipe needs."""

    reasoning: str | None = None  # --reasoning-parser (splits <think> into reasoning_content).
    tool_call: str | None = None  # --tool-call-parser; implies --enable-auto-tool-choice.


@schema
class Multimodal:
    """Modalities and per-prompt limits."""

    modalities: list[Literal["image", "video", "audio"]] = field(default_factory=list)  # Input modalities the model accepts besides text.
    limits: dict[str, int] = field(default_factory=dict)  # Default --limit-mm-per-prompt (0 disables a modality and its encoder profile).


@schema
class CardLaunch:
    """A launch exactly as the model card publishes it (reproduced token for token by `--card`)."""

    style: Literal["serve", "docker"]  # `vllm serve ...` or `docker run ... IMAGE MODEL ...`.
    model: str  # Model argument as written on the card.
    args: list[str] = field(default_factory=list)  # vLLM arguments after the model, one token per item.
    env: list[str] = field(default_factory=list)  # Environment as on the card: NAME (passed by name) or NAME=value.
    container_name: str | None = None  # docker --name.
    image: str | None = None  # Container image.
    volumes: list[str] = field(default_factory=list)  # docker -v values.
    ports: list[str] = field(default_factory=list)  # docker -p values.
    remove: bool = True  # docker --rm.


@schema
class CardSettings:
    """The model card's published launch settings."""

    source: str  # Where the settings come from (model card URL or name).
    base: CardLaunch | None = None  # Launch common to every profile (complete when `generic`).
    generic: bool = False  # The base launch applies unchanged to every profile that can run the model.
    profiles: dict[str, list[str]] = field(default_factory=dict)  # Extra vLLM args per GPU profile, appended to the base args.
    profile_launches: dict[str, CardLaunch] = field(default_factory=dict)  # Complete launches for one profile only (no base).


@schema
class ProfileSettings:
    """servectl's own settings for a recipe on one GPU profile (beyond the card)."""

    args: list[str] = field(default_factory=list)  # vLLM arguments servectl adds or changes for this hardware.
    env: dict[str, str] = field(default_factory=dict)  # Environment for this pair (non-secret values only).
    notes: list[str] = field(default_factory=list)  # Why these settings.


@schema
class MtpDepth:
    """MTP speculation on one GPU profile: how deep to draft and the draft's kernel options."""

    num_speculative_tokens: Annotated[int, Ge(1), Le(16)]  # Draft tokens per decode step (the depth).
    options: dict[str, str] = field(default_factory=dict)  # Extra --speculative-config keys, e.g. moe_backend (the draft's MoE kernels; dropped for vLLM releases without the key).
    source: str | None = None  # Where this depth was published.


@schema
class Speculative:
    """Speculative decoding with the checkpoint's own multi-token-prediction head (opt-in: --speculative mtp)."""

    method: Literal["mtp"] = "mtp"  # vLLM's --speculative-config method (older releases: per-model names such as qwen3_next_mtp).
    min_vllm: str  # PEP 440 specifier of the vLLM releases that serve this model's MTP head.
    default: MtpDepth  # Depth for profiles not listed below.
    profiles: dict[str, MtpDepth] = field(default_factory=dict)  # Per-GPU-profile depth and options.
    not_helpful: list[str] = field(default_factory=list)  # Where MTP is known not to help (cited).
    sources: list[str] = field(default_factory=list)  # Public recipes and measurements the settings come from.


@schema
class Choice:
    """One setting of a recipe derived from a checkpoint: its value and why (shown by `models show`)."""

    setting: str  # What was chosen (quantization, parsers.tool_call, profiles.rtx-5090, ...).
    value: str  # The value chosen ("-" when the setting is left out).
    reason: str  # Why: the config key, the table row and its source, the plan figure.


@schema
class Derivation:
    """Where a recipe derived from a checkpoint came from, and every choice made for it."""

    source: str  # The checkpoint: a hub repo id (org/name) or a local directory.
    revision: str | None = None  # The hub revision asked for (branch, tag or commit), if any.
    commit: str | None = None  # The hub commit the files were read at, when known.
    vllm: str | None = None  # The vLLM release whose parser registry the parsers were checked against.
    choices: list[Choice] = field(default_factory=list)  # Every choice with its reason.
    warnings: list[str] = field(default_factory=list)  # What was left out or could not be decided.


@schema
class ModelRecipe:
    """A quantized model and everything needed to serve it well."""

    name: str  # Catalog key, used on the command line.
    title: str  # Human name.
    repo: str  # Hub repo id (or, for generated models, the local directory name).
    served_model_name: str  # Name clients use in the OpenAI API.
    generated: bool = False  # The checkpoint is generated locally by servectl (tiny-cpu), never downloaded.
    quantization: Quantization  # Weight format of the routed experts / linear layers.
    quantization_method: str | None = None  # quantization_config.quant_method of the checkpoint (informational).
    weights_gib: Annotated[float, Gt(0)]  # Weights resident on the devices after load, GiB (vLLM's 'Model loading took'); the checkpoint's safetensors headers override it when available.
    size_on_disk_gb: Annotated[float, Gt(0)] | None = None  # Checkpoint size on disk, GB.
    architecture: Architecture  # Geometry for memory planning.
    parsers: Parsers = field(default_factory=Parsers)  # Reasoning / tool-call parsers.
    multimodal: Multimodal = field(default_factory=Multimodal)  # Multimodal inputs.
    required_dtype: TorchDtype | None = None  # --dtype the kernels require on some hardware (GPTQ on ROCm: float16).
    min_vllm: str  # PEP 440 specifier the installed vLLM must satisfy (Qwen3.5: >0.16.0).
    hazards: list[str] = field(default_factory=list)  # Ids of known hazards (guards, patches, diagnosis rules) for this model.
    sampling_presets: str | None = None  # Name of the sampling preset family (profiles/presets.yaml).
    smoke_test: str = "Who are you?"  # Prompt of the card's smoke test.
    card: CardSettings | None = None  # The model card's published launch settings.
    profiles: dict[str, ProfileSettings] = field(default_factory=dict)  # Per-GPU-profile settings; a profile not listed cannot run the recipe.
    speculative: Speculative | None = None  # MTP speculative decoding settings (None: the checkpoint has no MTP head).
    model_path: str | None = None  # Local checkpoint directory vLLM serves instead of the hub repo (recipes of one's own).
    revision: str | None = None  # Hub revision (branch, tag or commit) to serve: vLLM's --revision.
    sampling_defaults: dict[str, float] = field(default_factory=dict)  # generation_config.json's sampling values vLLM applies as request defaults (--generation-config auto).
    derivation: Derivation | None = None  # For recipes derived from a checkpoint: its source and every choice with its reason.

    def __post_init__(self) -> None:
        require_match(self.name, DOTTED_KEY, "name")


@schema
class RecipesFile:
    """profiles/models.yaml."""

    schema_version: Annotated[int, Ge(1), Le(SCHEMA_VERSION)]  # Catalog schema version.
    models: list[ModelRecipe]
