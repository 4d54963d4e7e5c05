"""Memory planner: recipe + GPU profile + vLLM memory flags -> Plan. Pure (no I/O, no vLLM import).

Follows what vLLM does (paths are repo-relative; line numbers of 0.18.0 unless marked):
- page unification of hybrid models: vllm/model_executor/models/config.py:103-248
  (`HybridAttentionMambaModelConfig`), in 0.20+ vllm/platforms/interface.py `_align_hybrid_block_size`
  (0.32: interface.py:1040-1125, read from the installed CPU build);
- KV groups, num_blocks, logged size and concurrency: vllm/v1/core/kv_cache_utils.py
  (`_get_kv_cache_groups_uniform_page_size` :956-1075, `get_num_blocks` :836-851,
  `get_max_concurrency_for_kv_cache_config` :799-817, `_report_kv_cache_config` :1284-1326;
  0.32 `get_kv_cache_capacity` :2299-2308 logs int(max_concurrency * max_model_len));
- memory budget: vllm/v1/worker/gpu_worker.py:350-502 (`determine_available_memory`),
  vllm/v1/worker/utils.py:403-423 (requested = ceil(total * utilization));
- CUDA-graph capture sizes: vllm/config/vllm.py:1287-1430; estimate env default vllm/envs.py.
Constants that are not exact (activation per token, non-torch memory, graph memory per captured
token) are physics estimates with one fitted scale each; benchmarks/planner_accuracy.py prints the error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

from servectl.vllmenv import args as va
from servectl.errors import UserError
from servectl.catalog import versions
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import Architecture, ModelRecipe
from servectl.plan.models import Figure, GuideRow, Plan

MIB = 2**20
GIB = 2**30
DEFAULT_VLLM = versions.CARD_IMAGE_VLLM
# A release whose start-up check sums every KV-cache group: the length that truly fits one request.
FIT_VLLM = versions.row("max_model_len_check_sums_groups").since
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}

# Non-torch memory grown during profiling (cuBLAS / FlashInfer workspaces, NCCL): outside torch's
# allocator, counted by gpu_worker.py as non_torch_increase; 0.3-0.6 GiB in public logs.
NON_TORCH_GIB = 0.4
# Resident non-KV memory the model above does not explain for the multimodal Qwen3.5 recipes (the card's
# VRAM table shows it stays allocated after start-up: total ~= context + util x total - activations, so it
# is not a transient profile peak; candidates are the vision tower / encoder cache and allocator reserve).
# The ONE fitted constant: the RTX 5090 headless point of the NVFP4 card (util 0.956 -> ~40,000 tokens).
# benchmarks/planner_accuracy.py prints the error on every other measured point; calibration refines it.
MULTIMODAL_RESIDENT_GIB = 5.56
# CUDA-graph pool per captured token, MiB, for hidden 2048 (scaled by hidden size): the card's
# "capture <= 32 saves ~4,400 MiB" against the default <= 512 list, divided by the captured tokens.
CUDAGRAPH_MIB_PER_TOKEN = 4400 / (10563 - 87)
# The sampler profile: max_num_seqs rows of vocab logits in fp32 and ~5 working copies (top-k/top-p
# sort, softmax, probs): gpu_model_runner.py `_dummy_sampler_run` :5523.
SAMPLER_COPIES = 6
# Encoder profile delta when video is enabled (card: "video encoder off ~170 MiB").
VIDEO_ENCODER_MIB = 170.0


@dataclass(frozen=True)
class Settings:
    """vLLM's memory flags, already parsed (vLLM's names, vLLM's defaults when None)."""

    gpu_memory_utilization: float = 0.9
    kv_cache_memory_bytes: int | None = None
    max_model_len: int | None = None  # None: the model's max_position_embeddings
    max_model_len_auto: bool = False
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_cudagraph_capture_size: int | None = None
    enforce_eager: bool = False
    limit_mm: dict[str, int] = field(default_factory=dict)
    skip_mm_profiling: bool = False
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = 1
    enable_prefix_caching: bool | None = None  # None: the version's default for hybrid models
    estimate_cudagraphs: bool | None = None  # None: the version's default of the env var


@dataclass(frozen=True)
class Layout:
    """KV cache geometry after vLLM's hybrid page unification."""

    block_size: int
    attn_bytes_per_token_layer: int
    mamba_state_bytes: int
    page_bytes: int
    layers_per_group: int
    attn_groups: int
    mamba_groups: int
    mamba_blocks_per_request: int  # 1 ('none'), 2 ('align')

    @property
    def block_bytes(self) -> int:
        """One block id costs one page in each of the group_size shared tensors."""
        return self.page_bytes * self.layers_per_group

    def blocks_per_request(self, length: int) -> int:
        return self.attn_groups * math.ceil(length / self.block_size) + self.mamba_groups * self.mamba_blocks_per_request


def prefix_caching_default(version: str) -> bool:
    """Whether vLLM turns prefix caching on by default for hybrid (Gated DeltaNet) models."""
    return versions.has("hybrid_prefix_caching_default", version)


def estimate_cudagraphs_default(version: str) -> bool:
    """VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS's default."""
    return versions.has("estimate_cudagraphs_default", version)


def capture_sizes(max_size: int) -> list[int]:
    """vllm/config/vllm.py:1287-1430: [1, 2, 4] + multiples of 8 below 256 + multiples of 16 from 256."""
    sizes = [i for i in (1, 2, 4) if i <= max_size]
    if max_size >= 8:
        sizes += list(range(8, min(max_size + 1, 256), 8))
    if max_size >= 256:
        sizes += list(range(256, max_size + 1, 16))
    return sizes


def layout(arch: Architecture, *, tp: int = 1, kv_cache_dtype: str = "auto", cpu: bool = False,
           prefix_caching: bool = False, num_spec: int = 0) -> Layout:
    """Block size, page and groups as vLLM computes them for this model."""
    kv_bytes = 1 if kv_cache_dtype.startswith("fp8") else _DTYPE_BYTES[arch.dtype]
    kv_heads = max(1, arch.num_kv_heads // tp)
    # FullAttentionSpec.real_page_size_bytes (vllm/v1/kv_cache_interface.py:181-187), one token, one layer
    a = 2 * kv_heads * arch.head_dim * kv_bytes
    # CPU build: cache_config.block_size defaults to 128 (seen in vllm:cache_config_info of a 0.32 start);
    # GPU backends (FlashAttention/FlashInfer) have a smallest kernel block of 16.
    base_block = 128 if cpu else 16
    mamba = 0
    if arch.linear_attention_layers and arch.linear is not None:
        lin = arch.linear
        # vllm/model_executor/layers/mamba/mamba_utils.py:177-200 gated_delta_net_state_shape
        conv_dim = (lin.key_head_dim * lin.num_key_heads * 2 + lin.value_head_dim * lin.num_value_heads) // tp
        conv = (lin.conv_kernel_dim - 1 + num_spec) * conv_dim * _DTYPE_BYTES[arch.dtype]
        temporal = (lin.num_value_heads // tp) * lin.value_head_dim * lin.key_head_dim * _DTYPE_BYTES[lin.ssm_dtype]
        mamba = conv + temporal
    block = base_block
    if mamba:
        # alignment = max(min kernel block size, cache_config.block_size) (0.32 interface.py:1062-1069)
        align = base_block
        block = max(base_block, align * math.ceil(mamba / (align * a)))
    page = block * a
    full, lin_n = arch.full_attention_layers, arch.linear_attention_layers
    if lin_n and full:
        lo, hi = min(full, lin_n), max(full, lin_n)
        # kv_cache_utils.py:1043: one group per min-count layers unless the counts are close (x1.5)
        g = hi if hi < lo * 1.5 else lo
    else:
        g = full or lin_n
    attn_groups = math.ceil(full / g) if full else 0
    mamba_groups = math.ceil(lin_n / g) if lin_n else 0
    # MambaSpec.max_memory_usage_bytes (kv_cache_interface.py:293-300): 'align' 2+spec, 'none' 1+spec
    m = (2 if prefix_caching else 1) + num_spec
    return Layout(block, a, mamba, page, g, attn_groups, mamba_groups, m)


def activation_mib(arch: Architecture, tokens: int) -> float:
    """Peak activation of the LM forward in the profile run over `tokens` batched tokens.

    Per token: the fused input projection (bf16), the fp32 working copies of the GDN kernel's q/k/v,
    fused-MoE intermediate caches (top-k x (gate+up, down, output)), and a few hidden-size buffers."""
    b = _DTYPE_BYTES[arch.dtype]
    per = 4 * arch.hidden_size * b
    if arch.linear is not None:
        lin = arch.linear
        qk, v = lin.num_key_heads * lin.key_head_dim, lin.num_value_heads * lin.value_head_dim
        per += (2 * qk + 2 * v) * b + (2 * qk + v) * 4
    if arch.num_experts:
        per += arch.experts_per_token * (3 * arch.moe_intermediate_size + arch.hidden_size) * b
    return tokens * per / MIB


def cudagraph_mib(arch: Architecture, sizes: list[int]) -> float:
    """CUDA-graph pool: grows with the captured tokens (FULL_AND_PIECEWISE for hybrids)."""
    return CUDAGRAPH_MIB_PER_TOKEN * (arch.hidden_size / 2048) * sum(sizes)


@dataclass(frozen=True)
class Correction:
    """A per-machine correction from a real start (servectl.plan.calibrate)."""

    overhead_mib: float = 0.0  # non-KV memory vLLM used beyond the model's prediction
    source: str = ""


def batch_defaults(profile: GpuProfile) -> tuple[int, int]:
    """vllm/engine/arg_utils.py get_batch_defaults (serve): >= 70 GiB devices get 8192 / 1024, others 2048 / 256."""
    if profile.vendor != "cpu" and profile.total_memory_gib >= 70:
        return 8192, 1024
    return 2048, 256


def predict(recipe: ModelRecipe, profile: GpuProfile, s: Settings, *, vllm_version: str = DEFAULT_VLLM,
            weights_gib: float | None = None, correction: Correction | None = None,
            flags: list[str] | None = None) -> Plan:
    """Forward plan: what vLLM will do with these settings on this hardware."""
    arch = recipe.architecture
    cpu = profile.vendor == "cpu"
    tp = s.tensor_parallel_size
    prefix = prefix_caching_default(vllm_version) if s.enable_prefix_caching is None else s.enable_prefix_caching
    lay = layout(arch, tp=tp, kv_cache_dtype=s.kv_cache_dtype, cpu=cpu, prefix_caching=prefix and bool(arch.linear_attention_layers))
    mbt_default, seqs_default = batch_defaults(profile)
    seqs = s.max_num_seqs or seqs_default
    mbt = s.max_num_batched_tokens or mbt_default
    estimate = estimate_cudagraphs_default(vllm_version) if s.estimate_cudagraphs is None else s.estimate_cudagraphs
    fig: dict[str, Figure] = {}
    notes: list[str] = []

    total_gib = profile.memory_gib if profile.unified_memory else profile.total_memory_gib
    total = total_gib * GIB
    w = (weights_gib if weights_gib is not None else recipe.weights_gib) / tp * GIB
    c0 = profile.context_overhead_gib * GIB
    n = 0.0 if cpu else (NON_TORCH_GIB + (MULTIMODAL_RESIDENT_GIB if recipe.multimodal.modalities else 0.0)) * GIB
    corr = (correction.overhead_mib * MIB) if correction else 0.0
    if correction and correction.overhead_mib:
        notes.append(f"calibrated: {correction.overhead_mib:+.0f} MiB non-KV overhead from {correction.source}")

    # Activation peak: max over the profile phases (gpu_model_runner.py profile_run :5456-5529).
    a_lm = activation_mib(arch, mbt)
    a_enc = 0.0
    if recipe.multimodal.modalities and not s.skip_mm_profiling:
        video = "video" in recipe.multimodal.modalities and s.limit_mm.get("video", 1) > 0
        a_enc = VIDEO_ENCODER_MIB if video else 0.0
    a_sampler = seqs * arch.vocab_size * 4 * SAMPLER_COPIES / MIB
    a = (0.0 if cpu else max(a_lm + a_enc, a_sampler)) * MIB

    eager = s.enforce_eager or cpu
    cap = s.max_cudagraph_capture_size or min(seqs * 2, 512)
    cap = min(cap, mbt)
    sizes = [] if eager else capture_sizes(cap)
    g_actual = cudagraph_mib(arch, sizes) * MIB
    g_est = g_actual if (estimate and not eager and versions.has("cudagraph_memory_profiled", vllm_version)) else 0.0

    util = s.gpu_memory_utilization
    requested = math.ceil(util * total)
    if s.kv_cache_memory_bytes is not None:
        avail = float(s.kv_cache_memory_bytes)
        avail_reason = "--kv-cache-memory-bytes replaces the profiled budget (gpu_worker.py:362-380)"
    else:
        avail = requested - w - a - n - g_est - corr
        avail_reason = (f"ceil({util:g} x {total_gib:.2f} GiB) - weights - activation peak - non-torch"
                        + (" - CUDA-graph estimate" if g_est else "") + " (gpu_worker.py:405-441)")
    nb = max(0, int(avail // lay.page_bytes // lay.layers_per_group))

    native = arch.max_position_embeddings
    one_req_fit = ((nb - lay.mamba_groups * lay.mamba_blocks_per_request) // max(1, lay.attn_groups)) * lay.block_size
    if s.max_model_len_auto:
        if versions.has("max_model_len_check_sums_groups", vllm_version):
            mml = max(0, min(native, one_req_fit))
            mml_reason = f"auto: the largest length one request fits in {nb} blocks (0.19+ sums over groups)"
        else:
            mml = native
            mml_reason = "auto on <=0.18 keeps the native length (the check looks at a mamba group only)"
    else:
        mml = s.max_model_len or native
        mml_reason = "--max-model-len" if s.max_model_len else "the model's max_position_embeddings"
    per_req = lay.blocks_per_request(mml) if mml else 1
    conc = nb / per_req if per_req else 0.0
    n_groups = lay.attn_groups + lay.mamba_groups
    if versions.has("kv_tokens_logged_from_concurrency", vllm_version):
        logged = int(conc * mml)
        logged_reason = "int(max_concurrency x max_model_len) (kv_cache_utils.py, 0.20+)"
    else:
        logged = nb // n_groups * lay.block_size
        logged_reason = f"num_blocks // {n_groups} groups x block_size (kv_cache_utils.py:1299-1303)"
    real_capacity = max(0, (nb - 1 - lay.mamba_groups * lay.mamba_blocks_per_request) // max(1, lay.attn_groups) * lay.block_size)
    real = min(real_capacity, mml)
    fits = nb >= per_req and avail > 0
    if not fits and not versions.has("max_model_len_check_sums_groups", vllm_version) and avail > 0 and nb > lay.mamba_groups:
        notes.append("vLLM <= 0.18 starts anyway (its check looks at a mamba group only) but cannot serve one full-length request")

    kv_alloc = nb * lay.block_bytes
    if cpu:
        vram = w + kv_alloc
    else:
        # activations are freed after profiling (torch.cuda.empty_cache); graphs stay.
        vram = c0 + w + n + corr + kv_alloc + g_actual
    budget = {
        "device_total": total / MIB,
        "requested": (requested if s.kv_cache_memory_bytes is None else w + a + n + avail) / MIB,
        "context": c0 / MIB,
        "weights": w / MIB,
        "activation_peak": a / MIB,
        "non_torch": n / MIB,
        "calibration": corr / MIB,
        "cudagraph_estimate": g_est / MIB,
        "cudagraphs": g_actual / MIB,
        "kv_available": avail / MIB,
        "kv_allocated": kv_alloc / MIB,
    }
    if profile.unified_memory:
        left = total - (c0 + requested + (g_actual - g_est))
        budget["os_headroom"] = left / MIB
        notes.append(f"unified memory: {total_gib:.1f} GiB shared with the OS; the plan leaves {left / GIB:.1f} GiB "
                     f"(wanted >= {profile.os_headroom_gib:g} GiB)")
        if left < profile.os_headroom_gib * GIB:
            notes.append("utilization eats into the OS headroom: lower --gpu-memory-utilization")

    fig["block_size"] = Figure(value=lay.block_size, unit="tokens", reason=(
        f"16-aligned attention block whose page ({lay.page_bytes:,} B) holds one mamba state ({lay.mamba_state_bytes:,} B)"
        if lay.mamba_state_bytes else "backend default block size"))
    fig["page_bytes"] = Figure(value=lay.page_bytes, unit="B", reason=f"block_size x {lay.attn_bytes_per_token_layer} B per token per layer")
    fig["kv_groups"] = Figure(value=f"{lay.attn_groups} attention + {lay.mamba_groups} mamba", reason=f"{lay.layers_per_group} layers per group share one tensor each")
    fig["num_blocks"] = Figure(value=nb, unit="blocks", reason=f"kv_available // page // {lay.layers_per_group} (get_num_blocks)")
    fig["kv_available"] = Figure(value=round(avail / MIB, 1), unit="MiB", reason=avail_reason)
    fig["weights"] = Figure(value=round(w / MIB, 1), unit="MiB", reason="checkpoint weights resident after load" + (f", / tp {tp}" if tp > 1 else ""))
    fig["activation_peak"] = Figure(value=round(a / MIB, 1), unit="MiB", reason=(
        f"max(LM forward over {mbt} tokens {a_lm:.0f} + encoder {a_enc:.0f}, sampler {seqs} seqs {a_sampler:.0f})"))
    fig["cudagraphs"] = Figure(value=round(g_actual / MIB, 1), unit="MiB", reason=(
        "eager: none" if eager else f"{len(sizes)} capture sizes up to {cap}; " + ("subtracted from KV (estimate on)" if g_est else "on top of the budget (estimate off)")))
    fig["max_model_len"] = Figure(value=mml, unit="tokens", reason=mml_reason)
    fig["kv_cache_tokens_logged"] = Figure(value=logged, unit="tokens", reason=logged_reason)
    fig["kv_cache_tokens_real"] = Figure(value=real, unit="tokens", reason=(
        f"(num_blocks - 1 null - {lay.mamba_groups * lay.mamba_blocks_per_request} state blocks) x block_size, capped at max_model_len"))
    fig["max_concurrency"] = Figure(value=round(conc, 2), unit="x", reason=f"num_blocks / {per_req} blocks per request of max_model_len")
    fig["total_vram"] = Figure(value=round(vram / MIB), unit="MiB", reason="context + weights + non-torch + KV + CUDA graphs (activations freed)")
    env = {}
    if not cpu:
        env["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"] = "1" if estimate else "0"
    return Plan(recipe=recipe.name, profile=profile.name, vllm_version=vllm_version, device="CPU" if cpu else "GPU",
                max_model_len=mml, block_size=lay.block_size, num_blocks=nb, kv_cache_tokens_logged=logged,
                kv_cache_tokens_real=real, max_concurrency=conc, total_vram_mib=vram / MIB, budget=budget,
                figures=fig, flags=flags or [], env=env, fits=fits, notes=notes)


def settings_from_flags(flags: list[va.Flag], env: dict[str, str] | None = None) -> Settings:
    """vLLM flags (as vLLM spells them) -> Settings. Bad values are UserErrors."""
    env = env or {}

    def num(name: str, cast=int):
        raw = va.get(flags, name)
        if raw is None or raw == "":
            return None
        try:
            return cast(raw)
        except ValueError:
            raise UserError(f"{name} {raw!r} is not a number") from None

    limits: dict[str, int] = {}
    for f in flags:
        c = va.canonical(f.name)
        if c == "--limit-mm-per-prompt" and f.value:
            try:
                limits.update({k: int(v) if not isinstance(v, dict) else int(v.get("count", 1)) for k, v in json.loads(f.value).items()})
            except (ValueError, AttributeError):
                raise UserError(f"--limit-mm-per-prompt {f.value!r} is not JSON like '{{\"image\": 2}}'") from None
        elif c.startswith("--limit-mm-per-prompt.") and f.value is not None:
            limits[c.split(".", 1)[1]] = int(f.value)
    mml_raw = va.get(flags, "--max-model-len")
    auto = mml_raw is not None and mml_raw.lower() in ("auto", "-1")
    mml = None
    if mml_raw and not auto:
        try:
            mml = va.parse_size(mml_raw)
        except ValueError:
            raise UserError(f"--max-model-len {mml_raw!r} is not a length or 'auto'") from None
    kvb = va.get(flags, "--kv-cache-memory-bytes")
    try:
        kv_bytes = va.parse_size(kvb) if kvb else None
    except ValueError:
        raise UserError(f"--kv-cache-memory-bytes {kvb!r} is not a size (vLLM suffixes: 20600M, 32G, 32k)") from None
    util = num("--gpu-memory-utilization", float)
    if util is not None and not 0 < util <= 1:
        raise UserError(f"--gpu-memory-utilization {util} must be in (0, 1]")
    prefix = None
    if va.has(flags, "--enable-prefix-caching"):
        prefix = True
    if va.has(flags, "--no-enable-prefix-caching"):
        prefix = False
    est_env = env.get("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS")
    return Settings(
        gpu_memory_utilization=util if util is not None else 0.9,
        kv_cache_memory_bytes=kv_bytes, max_model_len=mml, max_model_len_auto=auto,
        max_num_seqs=num("--max-num-seqs"), max_num_batched_tokens=num("--max-num-batched-tokens"),
        max_cudagraph_capture_size=num("--max-cudagraph-capture-size"),
        enforce_eager=va.has(flags, "--enforce-eager"), limit_mm=limits,
        skip_mm_profiling=va.has(flags, "--skip-mm-profiling"),
        kv_cache_dtype=va.get(flags, "--kv-cache-dtype") or "auto",
        tensor_parallel_size=num("--tensor-parallel-size") or 1, enable_prefix_caching=prefix,
        estimate_cudagraphs=None if est_env is None else est_env.strip() not in ("", "0", "false", "False"),
    )


def required_util(recipe: ModelRecipe, profile: GpuProfile, s: Settings, blocks: int, **kw) -> float:
    """Smallest utilization (3 decimals) that gives at least `blocks` KV blocks."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if predict(recipe, profile, replace(s, gpu_memory_utilization=mid, kv_cache_memory_bytes=None), **kw).num_blocks >= blocks:
            hi = mid
        else:
            lo = mid
    return math.ceil(hi * 1000) / 1000


def with_guide(plan: Plan, recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw) -> Plan:
    """Attach the utilization guide: each preset of the profile, computed."""
    rows = []
    for name, preset in sorted(profile.presets.items(), key=lambda kv: kv[1].gpu_memory_utilization):
        p = predict(recipe, profile, replace(s, gpu_memory_utilization=preset.gpu_memory_utilization, kv_cache_memory_bytes=None), **kw)
        lay_fit = predict(recipe, profile, replace(s, gpu_memory_utilization=preset.gpu_memory_utilization,
                                                   kv_cache_memory_bytes=None, max_model_len_auto=True), vllm_version=FIT_VLLM,
                          **{k: v for k, v in kw.items() if k != "vllm_version"}).max_model_len
        rows.append(GuideRow(name=name, gpu_memory_utilization=preset.gpu_memory_utilization,
                             kv_cache_tokens_logged=p.kv_cache_tokens_logged, kv_cache_tokens_real=p.kv_cache_tokens_real,
                             max_model_len_fit=lay_fit))
    return plan.model_copy(update={"guide": rows})


def plan_for_target(recipe: ModelRecipe, profile: GpuProfile, s: Settings, target_context: int,
                    target_concurrency: int = 1, ceiling_util: float | None = None, **kw) -> tuple[Settings, list[str]]:
    """Inverse planning: the utilization that serves `target_concurrency` requests of `target_context` tokens.

    Returns the settings to use and notes; raises UserError naming the largest context that fits."""
    arch = recipe.architecture
    if target_context > arch.max_position_embeddings:
        raise UserError(f"target context {target_context} exceeds the model's native {arch.max_position_embeddings}",
                        f"the largest context is {arch.max_position_embeddings}")
    ceiling = ceiling_util or s.gpu_memory_utilization
    cpu = profile.vendor == "cpu"
    prefix = s.enable_prefix_caching if s.enable_prefix_caching is not None else prefix_caching_default(kw.get("vllm_version", DEFAULT_VLLM))
    lay = layout(arch, tp=s.tensor_parallel_size, kv_cache_dtype=s.kv_cache_dtype, cpu=cpu,
                 prefix_caching=prefix and bool(arch.linear_attention_layers))
    need = 1 + target_concurrency * lay.blocks_per_request(target_context)
    if s.kv_cache_memory_bytes is not None or cpu:
        kv_bytes = need * lay.block_bytes
        notes = [f"{target_concurrency} x {target_context} tokens need {need} blocks = {kv_bytes / MIB:.0f} MiB of KV cache"]
        return replace(s, kv_cache_memory_bytes=kv_bytes, max_model_len=target_context, max_model_len_auto=False), notes
    util = required_util(recipe, profile, replace(s, max_model_len=target_context), need, **kw)
    if util > ceiling:
        best = predict(recipe, profile, replace(s, gpu_memory_utilization=ceiling, kv_cache_memory_bytes=None), **kw)
        nb = best.num_blocks
        per = (nb - 1) // max(1, target_concurrency) - lay.mamba_groups * lay.mamba_blocks_per_request
        largest = max(0, per // max(1, lay.attn_groups) * lay.block_size)
        if largest <= 0:
            raise UserError(f"{recipe.name} does not fit on {profile.name} at utilization {ceiling:g}: "
                            f"weights and overheads leave {best.budget['kv_available']:.0f} MiB for the KV cache",
                            "pick a smaller quantization or a larger GPU")
        raise UserError(f"{target_concurrency} x {target_context} tokens do not fit on {profile.name} at utilization {ceiling:g} "
                        + (f"(needs {util:g})" if util < 1 else "(not even the whole device is enough)"), f"the largest context that fits is --max-model-len {min(largest, arch.max_position_embeddings)}")
    notes = [f"utilization {util:g} gives the {need} blocks {target_concurrency} x {target_context} tokens need "
             f"(ceiling {ceiling:g}); equivalently --kv-cache-memory-bytes {need * lay.block_bytes // MIB}M"]
    return replace(s, gpu_memory_utilization=util, max_model_len=target_context, max_model_len_auto=False), notes


def flags_for(base: list[va.Flag], s: Settings) -> list[va.Flag]:
    """The base flags with the plan's memory settings written back (vLLM spelling)."""
    out = [va.Flag(f.name, f.value) for f in base]
    if s.kv_cache_memory_bytes is not None:
        kv = s.kv_cache_memory_bytes
        out = va.merge(out, [va.Flag("--kv-cache-memory-bytes", f"{kv // MIB}M" if kv % MIB == 0 else str(kv))])
    else:
        out = va.merge(out, [va.Flag("--gpu-memory-utilization", f"{s.gpu_memory_utilization:g}")])
    if s.max_model_len is not None:
        out = va.merge(out, [va.Flag("--max-model-len", str(s.max_model_len))])
    return out
