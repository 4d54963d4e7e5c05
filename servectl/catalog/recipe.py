"""Model recipes: a quantized checkpoint, its geometry and how to serve it (profiles/models.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from servectl.catalog.base import Quantization, SCHEMA_VERSION, Strict, TorchDtype


class LinearAttention(Strict):
    """Gated DeltaNet (linear attention) layer geometry: sizes the constant per-request state."""

    num_key_heads: int = Field(ge=1, description="linear_num_key_heads.")
    num_value_heads: int = Field(ge=1, description="linear_num_value_heads.")
    key_head_dim: int = Field(ge=1, description="linear_key_head_dim.")
    value_head_dim: int = Field(ge=1, description="linear_value_head_dim.")
    conv_kernel_dim: int = Field(ge=1, description="linear_conv_kernel_dim (conv state keeps kernel-1 rows).")
    ssm_dtype: TorchDtype = Field("float32", description="dtype of the temporal (SSM) state; Qwen3.5's config sets float32.")


class VisionEncoder(Strict):
    """Vision tower geometry (kept in BF16 by every recipe here)."""

    depth: int = Field(ge=1, description="Number of ViT blocks.")
    hidden_size: int = Field(ge=1, description="ViT hidden size.")
    patch_size: int = Field(ge=1, description="Patch edge in pixels.")
    params_b: float = Field(ge=0, description="Parameters, billions (sizes the encoder weights).")


class Architecture(Strict):
    """The numbers memory planning needs (from the checkpoint's config.json text_config)."""

    hf_architecture: str = Field(description="`architectures[0]` of config.json; vLLM picks its model class from it.")
    num_layers: int = Field(ge=1, description="num_hidden_layers of the text stack.")
    full_attention_layers: int = Field(ge=0, description="Layers with a growing KV cache.")
    linear_attention_layers: int = Field(0, ge=0, description="Gated DeltaNet layers with constant per-request state.")
    hidden_size: int = Field(ge=1, description="hidden_size.")
    num_attention_heads: int = Field(ge=1, description="Query heads of the full-attention layers.")
    num_kv_heads: int = Field(ge=1, description="num_key_value_heads.")
    head_dim: int = Field(ge=1, description="Attention head dim.")
    linear: LinearAttention | None = Field(None, description="Linear-attention geometry (hybrid models).")
    num_experts: int = Field(0, ge=0, description="Routed experts per MoE layer (0: dense).")
    experts_per_token: int = Field(0, ge=0, description="Active routed experts per token.")
    moe_intermediate_size: int = Field(0, ge=0, description="Intermediate size of one expert.")
    shared_expert_intermediate_size: int = Field(0, ge=0, description="Intermediate size of the shared expert.")
    vocab_size: int = Field(ge=1, description="Vocabulary size (sizes logits and the sampler's profile peak).")
    max_position_embeddings: int = Field(ge=1, description="Native context; vLLM's derived max_model_len.")
    mtp_layers: int = Field(0, ge=0, description="Multi-token-prediction layers (not loaded unless speculative decoding).")
    dtype: TorchDtype = Field("bfloat16", description="Activation / KV dtype when --kv-cache-dtype is auto.")
    vision: VisionEncoder | None = Field(None, description="Vision encoder, for multimodal recipes.")

    @model_validator(mode="after")
    def _layers_add_up(self) -> "Architecture":
        if self.full_attention_layers + self.linear_attention_layers != self.num_layers:
            raise ValueError("full_attention_layers + linear_attention_layers must equal num_layers")
        if self.linear_attention_layers and self.linear is None:
            raise ValueError("linear_attention_layers > 0 needs the `linear` geometry")
        return self


class Parsers(Strict):
    """vLLM output parsers the recipe needs."""

    reasoning: str | None = Field(None, description="--reasoning-parser (splits <think> into reasoning_content).")
    tool_call: str | None = Field(None, description="--tool-call-parser; implies --enable-auto-tool-choice.")


class Multimodal(Strict):
    """Modalities and per-prompt limits."""

    modalities: list[Literal["image", "video", "audio"]] = Field(default_factory=list, description="Input modalities the model accepts besides text.")
    limits: dict[str, int] = Field(default_factory=dict, description="Default --limit-mm-per-prompt (0 disables a modality and its encoder profile).")


class CardLaunch(Strict):
    """A launch exactly as the model card publishes it (reproduced token for token by `--card`)."""

    style: Literal["serve", "docker"] = Field(description="`vllm serve ...` or `docker run ... IMAGE MODEL ...`.")
    model: str = Field(description="Model argument as written on the card.")
    args: list[str] = Field(default_factory=list, description="vLLM arguments after the model, one token per item.")
    env: list[str] = Field(default_factory=list, description="Environment as on the card: NAME (passed by name) or NAME=value.")
    container_name: str | None = Field(None, description="docker --name.")
    image: str | None = Field(None, description="Container image.")
    volumes: list[str] = Field(default_factory=list, description="docker -v values.")
    ports: list[str] = Field(default_factory=list, description="docker -p values.")
    remove: bool = Field(True, description="docker --rm.")


class CardSettings(Strict):
    """The model card's published launch settings."""

    source: str = Field(description="Where the settings come from (model card URL or name).")
    base: CardLaunch | None = Field(None, description="Launch common to every profile (complete when `generic`).")
    generic: bool = Field(False, description="The base launch applies unchanged to every profile that can run the model.")
    profiles: dict[str, list[str]] = Field(default_factory=dict, description="Extra vLLM args per GPU profile, appended to the base args.")
    profile_launches: dict[str, CardLaunch] = Field(default_factory=dict, description="Complete launches for one profile only (no base).")


class ProfileSettings(Strict):
    """servectl's own settings for a recipe on one GPU profile (beyond the card)."""

    args: list[str] = Field(default_factory=list, description="vLLM arguments servectl adds or changes for this hardware.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment for this pair (non-secret values only).")
    notes: list[str] = Field(default_factory=list, description="Why these settings.")


class MtpDepth(Strict):
    """MTP speculation on one GPU profile: how deep to draft and the draft's kernel options."""

    num_speculative_tokens: int = Field(ge=1, le=16, description="Draft tokens per decode step (the depth).")
    options: dict[str, str] = Field(default_factory=dict, description="Extra --speculative-config keys, e.g. moe_backend (the draft's MoE kernels; dropped for vLLM releases without the key).")
    source: str | None = Field(None, description="Where this depth was published.")


class Speculative(Strict):
    """Speculative decoding with the checkpoint's own multi-token-prediction head (opt-in: --speculative mtp)."""

    method: Literal["mtp"] = Field("mtp", description="vLLM's --speculative-config method (older releases: per-model names such as qwen3_next_mtp).")
    min_vllm: str = Field(description="PEP 440 specifier of the vLLM releases that serve this model's MTP head.")
    default: MtpDepth = Field(description="Depth for profiles not listed below.")
    profiles: dict[str, MtpDepth] = Field(default_factory=dict, description="Per-GPU-profile depth and options.")
    not_helpful: list[str] = Field(default_factory=list, description="Where MTP is known not to help (cited).")
    sources: list[str] = Field(default_factory=list, description="Public recipes and measurements the settings come from.")


class ModelRecipe(Strict):
    """A quantized model and everything needed to serve it well."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", description="Catalog key, used on the command line.")
    title: str = Field(description="Human name.")
    repo: str = Field(description="Hub repo id (or, for generated models, the local directory name).")
    served_model_name: str = Field(description="Name clients use in the OpenAI API.")
    generated: bool = Field(False, description="The checkpoint is generated locally by servectl (tiny-cpu), never downloaded.")
    quantization: Quantization = Field(description="Weight format of the routed experts / linear layers.")
    quantization_method: str | None = Field(None, description="quantization_config.quant_method of the checkpoint (informational).")
    weights_gib: float = Field(gt=0, description="Weights resident on the devices after load, GiB (vLLM's 'Model loading took'); the checkpoint's safetensors headers override it when available.")
    size_on_disk_gb: float | None = Field(None, gt=0, description="Checkpoint size on disk, GB.")
    architecture: Architecture = Field(description="Geometry for memory planning.")
    parsers: Parsers = Field(default_factory=Parsers, description="Reasoning / tool-call parsers.")
    multimodal: Multimodal = Field(default_factory=Multimodal, description="Multimodal inputs.")
    required_dtype: TorchDtype | None = Field(None, description="--dtype the kernels require on some hardware (GPTQ on ROCm: float16).")
    min_vllm: str = Field(description="PEP 440 specifier the installed vLLM must satisfy (Qwen3.5: >0.16.0).")
    hazards: list[str] = Field(default_factory=list, description="Ids of known hazards (guards, patches, diagnosis rules) for this model.")
    sampling_presets: str | None = Field(None, description="Name of the sampling preset family (profiles/presets.yaml).")
    smoke_test: str = Field("Who are you?", description="Prompt of the card's smoke test.")
    card: CardSettings | None = Field(None, description="The model card's published launch settings.")
    profiles: dict[str, ProfileSettings] = Field(default_factory=dict, description="Per-GPU-profile settings; a profile not listed cannot run the recipe.")
    speculative: Speculative | None = Field(None, description="MTP speculative decoding settings (None: the checkpoint has no MTP head).")


class RecipesFile(Strict):
    """profiles/models.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    models: list[ModelRecipe]
