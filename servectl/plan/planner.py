"""Memory planner: recipe + GPU profile + vLLM flags + the vLLM version and host that will run them -> Plan.
Pure (no I/O, no vLLM import): the version, the host's CPU features and past starts come in as arguments.

Follows what vLLM does (paths are repo-relative; line numbers of 0.18.0 unless marked; version ranges in
servectl.catalog.versions):
- page unification of hybrid models: vllm/model_executor/models/config.py:103-248
  (`HybridAttentionMambaModelConfig`), in 0.20+ vllm/platforms/interface.py `_align_hybrid_block_size`
  (0.32: interface.py:939-1125);
- the CPU platform's rules (block size 128, SSM state dtype on AMX / AVX-512 BF16 hosts, VLLM_CPU_KVCACHE_SPACE):
  vllm/platforms/cpu.py `check_and_update_config` (0.32: cpu.py:196-330);
- KV groups, num_blocks, logged size and concurrency: vllm/v1/core/kv_cache_utils.py
  (`_get_kv_cache_groups_uniform_page_size` :956-1075, `get_num_blocks` :836-851,
  `get_max_concurrency_for_kv_cache_config` :799-817, `_report_kv_cache_config` :1284-1326;
  0.32 `get_kv_cache_capacity` :2300-2308 logs int(max_concurrency * max_model_len));
- the start-up check and `--max-model-len auto`: kv_cache_utils.py `_check_enough_kv_cache_memory` :616-650,
  `_auto_fit_max_model_len` :1400-1450 (the null block is reserved there only from 0.29);
- memory budget: vllm/v1/worker/gpu_worker.py:350-502 (`determine_available_memory`),
  vllm/v1/worker/utils.py:403-423 (requested = ceil(total * utilization));
- CUDA graphs: vllm/config/vllm.py:1287-1430 (capture sizes), vllm/v1/cudagraph_dispatcher.py:195-225 (FULL
  decode graphs up to max_num_seqs), gpu_model_runner.py profile_cudagraph_memory / capture_model (0.19.1 :5862-6050);
- sampler: gpu_model_runner.py `_dummy_sampler_run` (profiled) and gpu_worker.py `compile_or_warm_up_model`
  (a second sampler warm-up after graph capture, kept reserved on purpose: outside the profiled budget).
Constants that are not exact (activation per token, non-torch memory, graph memory per captured token) are
physics estimates with one fitted scale each; benchmarks/planner_accuracy.py prints the error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from servectl.catalog import versions as vv
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import Architecture, ModelRecipe
from servectl.errors import UserError
from servectl.hardware.cpu_features import CpuFeatures
from servectl.plan.accounting import Accounting
from servectl.plan.cpu_rules import cpu_mla_block, cpu_refusal, cpu_ssm_dtype
from servectl.plan.geometry import DTYPE_BYTES, Graphs, Layout, capture_sizes, graphs_for, layout
from servectl.plan.kvcache import LayoutRefused
from servectl.plan.models import Figure, GuideRow, Plan
from servectl.spec import values
from servectl.vllmenv import args as va

MIB = 2**20
GIB = 2**30

# Non-torch memory grown during profiling (cuBLAS / FlashInfer workspaces, NCCL): outside torch's
# allocator, counted by gpu_worker.py as non_torch_increase; 0.13-0.6 GiB in public logs.
NON_TORCH_GIB = 0.4
# Resident non-KV memory the model above does not explain for the multimodal Qwen3.5 recipes (the card's
# VRAM table shows it stays allocated after start-up: total ~= context + util x total - activations, so it
# is not a transient profile peak; candidates are the vision tower / encoder cache and allocator reserve).
# The ONE fitted constant: the RTX 5090 headless point of the NVFP4 card (util 0.956 -> ~40,000 tokens).
# benchmarks/planner_accuracy.py prints the error on every other measured point; calibration refines it.
MULTIMODAL_RESIDENT_GIB = 5.56
# Sampler working set per (request row, vocabulary entry), bytes: bf16 logits (2), their fp32 copy (4,
# sampler.py), softmax probs (4) and the exponential draws q (4, topk_topp_sampler.random_sample); the top-k/
# top-p step works in place from 8 rows up (Triton), below that the PyTorch path sorts: + values 4 + int64 ids 8.
SAMPLER_BYTES = 14
SAMPLER_BYTES_SORTED = 26
# CUDA-graph pool per captured token (PIECEWISE and FULL graphs alike), MiB, for hidden 2048 (scaled by hidden
# size). Fitted: the card's "capture <= 32 saves ~4,400 MiB" against vLLM's defaults on the RTX 5090 (max-num-seqs
# 256 -> 51 PIECEWISE + 35 FULL graphs, vs 7 + 7), after the sampler warm-up difference is taken out.
CUDAGRAPH_MIB_PER_TOKEN = 0.2501
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
    mamba_ssm_cache_dtype: str = "auto"
    block_size: int | None = None
    num_speculative_tokens: int = 0
    dtype: str = "auto"
    cpu_kvcache_space_gib: int | None = None  # VLLM_CPU_KVCACHE_SPACE: overrides the KV bytes on CPU
    allow_long_max_model_len: bool = False  # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
    disable_hybrid_kv_cache_manager: bool | None = None  # None: vLLM decides (off for chunked local attention)
    allow_chunked_local_with_hma: bool = False  # VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1
    async_scheduling: bool | None = None  # None: vLLM's default (on on GPUs, off on the CPU build)
    pipeline_parallel_size: int = 1
    disable_sliding_window: bool = False  # --disable-sliding-window


def sparse_attention(recipe: ModelRecipe) -> bool:
    """DeepSeek sparse attention (V3.2-style indexer), which servectl does not size."""
    return recipe.architecture.mla is not None and recipe.architecture.mla.sparse


def prefix_caching_default(version: str) -> bool:
    """Whether vLLM turns prefix caching on by default for hybrid (Gated DeltaNet) models (vllm_versions)."""
    return vv.has("hybrid_prefix_caching_default", version)


def group_ratio(version: str) -> float:
    """Layers per KV group: the smaller layer count unless the larger is within this factor (vllm_versions)."""
    return 1.5 if vv.has("group_size_ratio_1_5", version) else 1.25


def estimate_cudagraphs_default(version: str) -> bool:
    """VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS's default in this version (vllm_versions)."""
    return vv.has("estimate_cudagraphs_default", version)


def activation_mib(arch: Architecture, tokens: int) -> float:
    """Peak activation of the LM forward in the profile run over `tokens` batched tokens.

    Per token: the fused input projection (bf16), the fp32 working copies of the GDN kernel's q/k/v,
    fused-MoE intermediate caches (top-k x (gate+up, down, output)), and a few hidden-size buffers."""
    b = DTYPE_BYTES[arch.dtype]
    per = 4 * arch.hidden_size * b
    if arch.linear is not None:
        lin = arch.linear
        qk, v = lin.num_key_heads * lin.key_head_dim, lin.num_value_heads * lin.value_head_dim
        per += (2 * qk + 2 * v) * b + (2 * qk + v) * 4
    if arch.num_experts:
        per += arch.experts_per_token * (3 * arch.moe_intermediate_size + arch.hidden_size) * b
    return tokens * per / MIB


def sampler_mib(arch: Architecture, rows: int) -> float:
    """The sampler's working set over `rows` requests (the dummy sampler run on max_num_seqs rows)."""
    per = SAMPLER_BYTES if rows >= 8 else SAMPLER_BYTES_SORTED
    return rows * arch.vocab_size * per / MIB


def mtp_weight_bytes(arch: Architecture, tp: int = 1) -> int:
    """The MTP head in BF16 as the Qwen3-Next/3.5 checkpoints store it (mtp.* tensors): fc (2H -> H), one
    gated full-attention decoder layer with the MoE MLP, and its norms; vLLM loads it only when speculating."""
    h, hd, b = arch.hidden_size, arch.head_dim, DTYPE_BYTES[arch.dtype]
    attn = h * arch.num_attention_heads * hd * 2 + 2 * h * arch.num_kv_heads * hd + arch.num_attention_heads * hd * h
    moe = arch.num_experts * 3 * h * arch.moe_intermediate_size + h * arch.num_experts
    if arch.shared_expert_intermediate_size:
        moe += 3 * h * arch.shared_expert_intermediate_size + h
    per_layer = attn + moe + 2 * h + 2 * hd
    return (2 * h * h + 3 * h + arch.mtp_layers * per_layer) * b // tp


def cudagraph_mib(arch: Architecture, graphs: Graphs) -> float:
    """CUDA-graph pool: grows with the captured tokens."""
    return CUDAGRAPH_MIB_PER_TOKEN * (arch.hidden_size / 2048) * graphs.tokens


@dataclass(frozen=True)
class Correction:
    """What past starts of this (recipe, profile, vLLM version, host) measured (servectl.calibrate)."""

    overhead_mib: float = 0.0  # non-KV memory vLLM used beyond the model's prediction
    block_size: int | None = None  # the block size vLLM chose, when it differs from the rules' (a host they miss)
    rule_block_size: int | None = None  # what the rules gave for that start: the measurement applies to that case only
    starts: int = 0
    source: str = ""
    # vLLM's own memory terms, when a start logged them ("Actual usage is ..."; per GPU): they replace the model's
    weights_mib: float | None = None
    activation_mib: float | None = None
    non_torch_mib: float | None = None
    cudagraph_mib: float | None = None
    cudagraph_estimate_mib: float | None = None

    @property
    def measured_terms(self) -> bool:
        return None not in (self.weights_mib, self.activation_mib, self.non_torch_mib)


def measured_block_size(lay: Layout, correction: Correction | None) -> int | None:
    """The block size past starts measured, where it corrects the rules for this very case: a start whose rules
    gave the same block as this plan's (same host rules, KV dtype, speculation, TP). A start with other flags or
    for another host (its rules gave another block) says nothing about this plan."""
    if correction is None or not correction.block_size or correction.block_size == lay.block_size:
        return None
    return correction.block_size if correction.rule_block_size == lay.block_size else None


def batch_defaults(profile: GpuProfile, world_size: int = 1) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) vLLM picks for `vllm serve` when the flags are absent
    (vllm/engine/arg_utils.py get_batch_defaults, usage context OPENAI_API_SERVER): the CPU platform 2048 and
    128 per rank of the world size; devices of >= 160 GiB 16384 / 1024, >= 70 GiB 8192 / 1024 (vLLM exempts
    the A100, whose name a profile does not carry), others 2048 / 256."""
    if profile.vendor == "cpu":
        return 2048 * world_size, 128 * world_size
    if profile.total_memory_gib >= 160:
        return 16384, 1024
    if profile.total_memory_gib >= 70:
        return 8192, 1024
    return 2048, 256


def hma_disabled(arch: Architecture, s: Settings) -> tuple[bool, str]:
    """Whether vLLM turns the hybrid KV-cache manager off, and why (vllm/config/vllm.py:2141-2197): the flag, or a
    model with chunked local attention unless VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1."""
    if s.disable_hybrid_kv_cache_manager is not None:
        return s.disable_hybrid_kv_cache_manager, "--disable-hybrid-kv-cache-manager" if s.disable_hybrid_kv_cache_manager else ""
    if arch.attention_chunk_size and "chunked_attention" in arch.kinds() and not s.allow_chunked_local_with_hma:
        return True, "chunked local attention turns it off by default (vllm/config/vllm.py:2148-2168)"
    return False, ""


def in_flight_tokens(profile: GpuProfile, s: Settings, version: str, mbt: int) -> int:
    """Tokens scheduled but not settled, which sliding / chunked layers keep blocks for: max_concurrent_batches x
    max_num_batched_tokens (vllm/config/vllm.py:577-598; async scheduling: 2 batches with PP 1; the CPU build turns
    async scheduling off, platforms/cpu.py:331); before 0.26 the window plus max_num_batched_tokens."""
    if not vv.has("window_pins_in_flight_batches", version):
        return mbt
    pp = max(1, s.pipeline_parallel_size)
    async_on = (profile.vendor != "cpu") if s.async_scheduling is None else (s.async_scheduling and profile.vendor != "cpu")
    if async_on and pp == 1:
        return 2 * mbt
    return pp * mbt


class VllmRefuses(UserError):
    """vLLM itself would refuse these flags at start-up (names vLLM's check)."""


def predict(recipe: ModelRecipe, profile: GpuProfile, s: Settings, *, vllm_version: str,
            weights_gib: float | None = None, correction: Correction | None = None,
            flags: list[str] | None = None, host: CpuFeatures | None = None, mtp_weights_gib: float | None = None,
            check_target: bool = True) -> Plan:
    """Forward plan: what vLLM `vllm_version` will do with these settings on this hardware (and host CPU).
    check_target=False sizes a layout even where the target cannot run it (what vLLM would log before failing)."""
    arch = recipe.architecture
    cpu = profile.vendor == "cpu"
    tp = s.tensor_parallel_size
    host = host or CpuFeatures()
    fig: dict[str, Figure] = {}
    notes: list[str] = []
    warnings: list[str] = []

    lay, ssm_reason, ruled_block = _layout(recipe, profile, s, vllm_version, host, correction, check_target)
    if ruled_block is not None:
        notes.append(f"block size {lay.block_size} measured by {correction.starts} start(s) on this host "
                     f"(the rules gave {ruled_block})")
    if lay.promoted:
        warnings.append("the hybrid KV-cache manager is off (" + hma_disabled(arch, s)[1] + "): sliding-window / chunked "
                        "layers get blocks for the whole context like full attention (kv_cache_utils.py "
                        "_promote_local_kv_cache_specs); their compute stays local")
    mbt_default, seqs_default = batch_defaults(profile, s.tensor_parallel_size * max(1, s.pipeline_parallel_size))
    seqs = s.max_num_seqs or seqs_default
    mbt = s.max_num_batched_tokens or mbt_default
    estimate = estimate_cudagraphs_default(vllm_version) if s.estimate_cudagraphs is None else s.estimate_cudagraphs

    total_gib = profile.memory_gib if profile.unified_memory else profile.total_memory_gib
    total = total_gib * GIB
    w = (weights_gib if weights_gib is not None else recipe.weights_gib) / tp * GIB
    c0 = profile.context_overhead_gib * GIB
    n = 0.0 if cpu else (NON_TORCH_GIB + (MULTIMODAL_RESIDENT_GIB if recipe.multimodal.modalities else 0.0)) * GIB
    corr = (correction.overhead_mib * MIB) if correction else 0.0
    measured = bool(correction and correction.measured_terms and not cpu)
    if measured:
        # vLLM's own terms from a past start of this key replace the model's (and explain the overhead)
        w, n, corr = correction.weights_mib * MIB, correction.non_torch_mib * MIB, 0.0
    # The draft's weights (the checkpoint's mtp.* bytes when known) load with the model ("Model loading took").
    n_spec = s.num_speculative_tokens if arch.mtp_layers else 0
    w_mtp = 0.0
    if n_spec:
        w_mtp = mtp_weights_gib / tp * GIB if mtp_weights_gib is not None else float(mtp_weight_bytes(arch, tp))
        w += w_mtp
    if correction and correction.starts:
        notes.insert(0, f"calibrated from {correction.starts} start{'s' if correction.starts != 1 else ''}"
                     + (": vLLM's measured weights, activation peak, non-torch and CUDA-graph memory" if measured
                        else f": {correction.overhead_mib:+.0f} MiB non-KV memory" if correction.overhead_mib else "")
                     + (f" ({correction.source})" if correction.source else ""))

    # Activation peak: max over the profile phases (gpu_model_runner.py profile_run :5456-5529).
    a_lm = activation_mib(arch, mbt)
    a_enc = 0.0
    if recipe.multimodal.modalities and not s.skip_mm_profiling:
        video = "video" in recipe.multimodal.modalities and s.limit_mm.get("video", 1) > 0
        a_enc = VIDEO_ENCODER_MIB if video else 0.0
    rows = min(seqs, mbt)
    a_sampler = sampler_mib(arch, rows)
    a = (0.0 if cpu else max(a_lm + a_enc, a_sampler)) * MIB
    if measured:
        a = correction.activation_mib * MIB
    # The sampler warm-up after graph capture keeps its buffers reserved (gpu_worker.compile_or_warm_up_model).
    s_warm = 0.0 if cpu else a_sampler * MIB

    # gpt-oss raises the default largest capture to 1024 (model_executor/models/config.py GptOssForCausalLMConfig)
    max_capture = s.max_cudagraph_capture_size
    if max_capture is None and arch.hf_architecture == "GptOssForCausalLM":
        max_capture = 1024
    graphs = graphs_for(seqs, mbt, max_capture, s.num_speculative_tokens, s.enforce_eager or cpu)
    g_actual = cudagraph_mib(arch, graphs) * MIB
    g_spec = 0.0  # what capturing (1 + N)-token decode steps adds to the graph pool
    if n_spec and graphs.count:
        g_spec = g_actual - cudagraph_mib(arch, graphs_for(seqs, mbt, s.max_cudagraph_capture_size, 0, False)) * MIB
    if measured and correction.cudagraph_mib is not None and graphs.count:
        g_actual = correction.cudagraph_mib * MIB
    g_est = g_actual if (estimate and graphs.count and vv.has("cudagraph_memory_profiled", vllm_version)) else 0.0
    if g_est and measured and correction.cudagraph_estimate_mib is not None:
        g_est = correction.cudagraph_estimate_mib * MIB

    util = s.gpu_memory_utilization
    requested = math.ceil(util * total)
    kv_pinned = s.kv_cache_memory_bytes
    if cpu and s.cpu_kvcache_space_gib is not None:
        kv_pinned = s.cpu_kvcache_space_gib * GIB
        notes.append(f"VLLM_CPU_KVCACHE_SPACE={s.cpu_kvcache_space_gib} replaces the KV cache size (platforms/cpu.py)")
    if kv_pinned is not None:
        avail = float(kv_pinned)
        avail_reason = ("VLLM_CPU_KVCACHE_SPACE" if kv_pinned != s.kv_cache_memory_bytes else "--kv-cache-memory-bytes") + \
            " replaces the profiled budget (gpu_worker.py:362-380)"
    else:
        avail = requested - w - a - n - g_est - corr
        avail_reason = (f"ceil({util:g} x {total_gib:.2f} GiB) - weights - activation peak - non-torch"
                        + (" - CUDA-graph estimate" if g_est else "") + (" - calibration" if corr else "")
                        + " (gpu_worker.py:405-441)")
    if lay.block_bytes == lay.page_bytes * lay.layers_per_group:
        nb = max(0, int(avail // lay.page_bytes // lay.layers_per_group))
    else:
        nb = max(0, int(avail // lay.block_bytes))  # largest group's pages per block id (kv_cache_utils.py:1520-1551)
    acc = Accounting.of(nb, vllm_version, lay.n_groups > 1)

    native = arch.max_position_embeddings
    if s.max_model_len_auto:
        mml = acc.auto_length(lay, native)
        mml_reason = (("auto: vLLM <= 0.18 keeps the native length (its check sizes one request by a mamba group)"
                       if not lay.groups[0].spec.grows else
                       "auto: vLLM <= 0.18's fit of one request's group-0 blocks (its check looks at group 0 only)")
                      if acc.group0_only else
                      f"auto: vLLM's fit of one request into {acc.check_blocks} blocks"
                      + (" (num_blocks - the null block)" if acc.null_reserved else " (num_blocks; the null block not counted)"))
    else:
        mml = s.max_model_len or native
        mml_reason = "--max-model-len" if s.max_model_len else "the model's max_position_embeddings"

    # What vLLM refuses (it exits; nothing to warn about then).
    if mml > native and s.allow_long_max_model_len:
        warnings.append(f"--max-model-len {mml:,} exceeds the model's max_position_embeddings {native:,} "
                        "(allowed by VLLM_ALLOW_LONG_MAX_MODEL_LEN=1; outputs past it may be garbage)")
    elif mml > native:
        raise VllmRefuses(f"vLLM refuses --max-model-len {mml}: it exceeds the model's max_position_embeddings {native} "
                          "(ModelConfig: 'User-specified max_model_len ... is greater than the derived max_model_len')",
                          f"use --max-model-len {native} or less (or set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if the model really supports more)")
    if avail <= 0 or nb == 0:
        raise VllmRefuses(f"vLLM refuses to start on {profile.name}: no memory left for the KV cache "
                          f"(weights and overheads exceed the budget by {-avail / MIB:.0f} MiB; kv_cache_utils.py: "
                          "'No available memory for the cache blocks')",
                          "raise --gpu-memory-utilization or set --kv-cache-memory-bytes, lower --max-num-seqs / "
                          "--max-num-batched-tokens, or pick a larger GPU")
    if s.max_model_len_auto and mml <= 0:
        raise VllmRefuses("vLLM refuses --max-model-len auto: not even one token fits ('Cannot auto-fit max_model_len')",
                          "raise --gpu-memory-utilization or --kv-cache-memory-bytes")
    if not acc.vllm_starts(lay, mml):
        fit = acc.auto_length(lay, native) if not acc.group0_only else 0
        raise VllmRefuses(f"vLLM refuses max_model_len {mml}: one request needs {acc.vllm_needs(lay, mml)} KV blocks and its "
                          f"check allows {acc.check_blocks} of the {nb} on {profile.name} "
                          "(kv_cache_utils.py: 'To serve at least one request with the model's max seq len')",
                          f"use --max-model-len {fit} (vLLM's own estimate) or give the KV cache more memory" if fit > 0
                          else "give the KV cache more memory (--gpu-memory-utilization / --kv-cache-memory-bytes) or pick a larger GPU")

    per_req = lay.blocks_per_request(mml) if mml else 1
    conc = nb / per_req if per_req else 0.0
    if vv.has("kv_tokens_logged_from_concurrency", vllm_version):
        logged = int(conc * mml)
        logged_reason = "int(max_concurrency x max_model_len) (kv_cache_utils.py, 0.20+)"
    else:
        logged = nb // lay.n_groups * lay.block_size
        logged_reason = f"num_blocks // {lay.n_groups} groups x block_size (kv_cache_utils.py:1299-1303)"
    longest = acc.longest_real(lay)
    real = min(longest, mml)
    fits = per_req <= acc.usable_blocks
    if not fits:
        why = ("its check sizes one request by a mamba group only" if acc.group0_only
               else "its check counts the null block as usable" if not acc.null_reserved else "")
        warnings.append(f"vLLM {vllm_version} starts, but one request of max_model_len {mml:,} tokens needs {per_req} blocks and "
                        f"only {acc.usable_blocks} are usable (one of {nb} is the null block{'; ' + why if why else ''}): "
                        f"the longest request that runs is {longest:,} tokens (--max-model-len {longest} matches it)")
    if not vv.has("kv_tokens_logged_from_concurrency", vllm_version) and lay.n_groups > 1 and logged and longest < 2**31 - 1:
        warnings.append(f"vLLM {vllm_version} will log {logged:,} KV tokens (num_blocks // {lay.n_groups} groups x {lay.block_size}); "
                        f"its blocks really hold {longest:,} tokens for one request ({longest / logged:.1f}x the logged figure)")

    kv_alloc = nb * lay.block_bytes
    if cpu:
        vram = w + kv_alloc
        vram_reason = "weights + KV cache"
    else:
        # Activations are freed after profiling (torch.cuda.empty_cache); graphs and the sampler warm-up stay.
        # The KV term is vLLM's budget for it (whole blocks fill it to within one block).
        vram = c0 + w + n + corr + avail + g_actual + s_warm
        vram_reason = "context + weights + non-torch + KV budget + CUDA graphs + sampler warm-up (activations freed)"
    budget = {
        "device_total": total / MIB,
        "requested": (requested if kv_pinned is None else w + a + n + avail) / MIB,
        "context": c0 / MIB,
        "weights": w / MIB,
        "activation_peak": a / MIB,
        "non_torch": n / MIB,
        "calibration": corr / MIB,
        "cudagraph_estimate": g_est / MIB,
        "cudagraphs": g_actual / MIB,
        "sampler_warmup": s_warm / MIB,
        "kv_available": avail / MIB,
        "kv_allocated": kv_alloc / MIB,
        "speculative": (w_mtp + g_spec) / MIB,
    }
    if profile.unified_memory:
        left = total - (c0 + requested + (g_actual - g_est) + s_warm)
        budget["os_headroom"] = left / MIB
        notes.append(f"unified memory: {total_gib:.1f} GiB shared with the OS; the plan leaves {left / GIB:.1f} GiB "
                     f"(wanted >= {profile.os_headroom_gib:g} GiB)")
        if left < profile.os_headroom_gib * GIB:
            warnings.append("utilization eats into the OS headroom: lower --gpu-memory-utilization")

    mla_block = arch.mla is not None and cpu and lay.block_size == 16 and not s.block_size
    fig["block_size"] = Figure(value=lay.block_size, unit="tokens", reason=(
        f"{'128' if cpu else '16'}-aligned attention block whose page ({lay.page_bytes:,} B) holds one mamba state "
        f"({lay.mamba_state_bytes:,} B, SSM state {lay.ssm_dtype}: {ssm_reason})"
        if lay.mamba_state_bytes and lay.attn_groups else
        "CPU_MLA's block (platforms/cpu.py forces 16)" if mla_block else
        "--block-size" if s.block_size else "backend default block size"))
    fig["page_bytes"] = Figure(value=lay.page_bytes, unit="B", reason=(
        f"block_size x {lay.attn_bytes_per_token_layer} B per token per layer" if lay.attn_groups else "one mamba state"))
    if lay.groups and all(not g.spec.is_attention for g in lay.groups) or not lay.mamba_groups:
        kinds = ", ".join(sorted({g.kind for g in lay.groups}))
        fig["kv_groups"] = Figure(value=f"{lay.n_groups} ({kinds})", reason=(
            f"{lay.layers_per_group} layers per group share one tensor each" if lay.n_groups > 1 else
            "one group: every layer has the same kind of KV cache"))
    else:
        fig["kv_groups"] = Figure(value=f"{lay.attn_groups} attention + {lay.mamba_groups} mamba",
                                  reason=f"{lay.layers_per_group} layers per group share one tensor each")
    fig["num_blocks"] = Figure(value=nb, unit="blocks", reason=(
        f"kv_available // page // {lay.layers_per_group} (get_num_blocks); one is the null block"
        if lay.block_bytes == lay.page_bytes * lay.layers_per_group else
        f"kv_available // {lay.block_bytes:,} B per block (the largest group's pages); one is the null block"))
    fig["kv_available"] = Figure(value=round(avail / MIB, 1), unit="MiB", reason=avail_reason)
    fig["weights"] = Figure(value=round(w / MIB, 1), unit="MiB", reason="checkpoint weights resident after load" + (f", / tp {tp}" if tp > 1 else ""))
    fig["activation_peak"] = Figure(value=round(a / MIB, 1), unit="MiB", reason=(
        f"max(LM forward over {mbt} tokens {a_lm:.0f} + encoder {a_enc:.0f}, sampler {rows} rows {a_sampler:.0f})"))
    if n_spec:
        fig["speculative"] = Figure(value=round((w_mtp + g_spec) / MIB, 1), unit="MiB", reason=(
            f"MTP draft, {n_spec} tokens per step: head weights {w_mtp / MIB:.1f} MiB (in weights) + CUDA graphs for "
            f"(1 + {n_spec}) x seqs tokens {g_spec / MIB:+.1f} MiB; its KV: +{arch.mtp_layers} attention layer in the groups, "
            f"+{n_spec} conv rows per GDN state, {lay.mamba_blocks_per_request} state blocks per request and group"))
    fig["cudagraphs"] = Figure(value=round(g_actual / MIB, 1), unit="MiB", reason=(
        "eager: none" if not graphs.count else
        f"{len(graphs.piecewise)} PIECEWISE (largest {max(graphs.piecewise)}) + {len(graphs.full)} FULL graphs; "
        + ("subtracted from KV (estimate on)" if g_est else "on top of the budget (estimate off)")))
    fig["sampler_warmup"] = Figure(value=round(s_warm / MIB, 1), unit="MiB", reason=(
        "none on CPU" if cpu else f"{rows} rows x {arch.vocab_size:,} vocab kept reserved after graph capture (outside the budget)"))
    fig["max_model_len"] = Figure(value=mml, unit="tokens", reason=mml_reason)
    fig["kv_cache_tokens_logged"] = Figure(value=logged, unit="tokens", reason=logged_reason)
    fig["kv_cache_tokens_real"] = Figure(value=real, unit="tokens", reason=(
        f"(num_blocks - 1 null - {lay.state_blocks} state blocks) x block_size, capped at max_model_len"
        if lay.mamba_groups and lay.attn_groups and all(g.spec.grows or not g.spec.is_attention for g in lay.groups) else
        "the longest request whose blocks fit in num_blocks - 1 (the null block), capped at max_model_len"))
    fig["max_concurrency"] = Figure(value=round(conc, 2), unit="x", reason=f"num_blocks / {per_req} blocks per request of max_model_len")
    fig["total_vram"] = Figure(value=round(vram / MIB), unit="MiB", reason=vram_reason)
    env = {}
    if not cpu:
        env["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"] = "1" if estimate else "0"
    if lay.in_flight and any(g.kind in ("sliding_window", "sliding_window_mla", "chunked_local") for g in lay.groups):
        fig["in_flight_tokens"] = Figure(value=lay.in_flight, unit="tokens", reason=(
            "sliding / chunked layers keep blocks for the window plus the tokens scheduled but not settled "
            "(max_concurrent_batches x max_num_batched_tokens, vllm/config/vllm.py max_in_flight_tokens)"))
    layout_rows = lay.describe(mml)
    return Plan(recipe=recipe.name, profile=profile.name, vllm_version=vllm_version, device="CPU" if cpu else "GPU",
                max_model_len=mml, block_size=lay.block_size, num_blocks=nb, kv_cache_tokens_logged=logged,
                kv_cache_tokens_real=real, max_concurrency=conc, total_vram_mib=vram / MIB, budget=budget,
                figures=fig, flags=flags or [], env=env, fits=fits, vllm_starts=True, warnings=warnings, notes=notes,
                layout=layout_rows, kv_layout=kv_layout(lay, mml))


def kv_layout(lay: Layout, max_model_len: int) -> dict:
    """`plan --json` kv_layout: the KV groups and what one request of max_model_len pins in each (blocks of
    the one shared pool: kv_cache_utils.py groups, kv_cache_interface.py max_memory_usage_bytes). Groups of one
    kind that pin different counts (a sliding window beside full attention) are separate entries."""
    groups: list[dict] = []
    for i, g in enumerate(lay.groups):
        kind = "attention" if g.spec.is_attention else "mamba"
        pins = lay.group_blocks(i, max_model_len) if max_model_len else 0
        same = next((e for e in groups if e["kind"] == kind and e["blocks_per_request"] == pins), None)
        if same:
            same["count"] += 1
        else:
            groups.append({"kind": kind, "count": 1, "blocks_per_request": pins})
    groups.sort(key=lambda e: e["kind"] != "attention")  # attention entries first, as the key has always listed them
    return {"block_size": lay.block_size, "page_bytes": lay.page_bytes, "layers_per_group": lay.layers_per_group,
            "block_bytes": lay.block_bytes, "groups": groups, "null_blocks": 1,
            "blocks_per_request": lay.blocks_per_request(max_model_len) if max_model_len else 0}


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

    limits = values.mm_limits(flags)
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
    num_spec = (values.speculative_config(flags) or {}).get("num_speculative_tokens") or 0
    est_env = env.get("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS")
    space = env.get("VLLM_CPU_KVCACHE_SPACE")
    try:
        space_gib = int(space) if space not in (None, "") else None
    except ValueError:
        raise UserError(f"VLLM_CPU_KVCACHE_SPACE={space!r} is not a whole number of GiB") from None
    dtype = (va.get(flags, "--dtype") or "auto").lower()
    if dtype not in DTYPE_BYTES:
        raise UserError(f"--dtype {dtype!r} is not one of {', '.join(sorted(DTYPE_BYTES))}")
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
        mamba_ssm_cache_dtype=(va.get(flags, "--mamba-ssm-cache-dtype") or "auto").lower(),
        block_size=num("--block-size"), num_speculative_tokens=num_spec, dtype=dtype, cpu_kvcache_space_gib=space_gib,
        allow_long_max_model_len=env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "").strip().lower() in ("1", "true"),
        disable_hybrid_kv_cache_manager=(True if va.has(flags, "--disable-hybrid-kv-cache-manager") else
                                         False if va.has(flags, "--no-disable-hybrid-kv-cache-manager") else None),
        allow_chunked_local_with_hma=env.get("VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE", "").strip().lower()
        in ("1", "true"),
        async_scheduling=(True if va.has(flags, "--async-scheduling") else
                          False if va.has(flags, "--no-async-scheduling") else None),
        pipeline_parallel_size=num("--pipeline-parallel-size") or 1,
        disable_sliding_window=va.has(flags, "--disable-sliding-window"),
    )


def required_util(recipe: ModelRecipe, profile: GpuProfile, s: Settings, blocks: int, **kw) -> float:
    """Smallest utilization (3 decimals) that gives at least `blocks` KV blocks."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if _blocks(recipe, profile, replace(s, gpu_memory_utilization=mid, kv_cache_memory_bytes=None), **kw) >= blocks:
            hi = mid
        else:
            lo = mid
    return math.ceil(hi * 1000) / 1000


def _blocks(recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw) -> int:
    """num_blocks of a plan, 0 where vLLM would refuse (probe for searches over utilization)."""
    try:
        return predict(recipe, profile, replace(s, max_model_len=1, max_model_len_auto=False), **kw).num_blocks
    except VllmRefuses:
        return 0


def with_guide(plan: Plan, recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw) -> Plan:
    """Attach the utilization guide: each preset of the profile, computed for the plan's vLLM version."""
    rows = []
    for name, preset in sorted(profile.presets.items(), key=lambda kv: kv[1].gpu_memory_utilization):
        at = replace(s, gpu_memory_utilization=preset.gpu_memory_utilization, kv_cache_memory_bytes=None)
        try:
            p = predict(recipe, profile, at, **kw)
            logged, real = p.kv_cache_tokens_logged, p.kv_cache_tokens_real
        except VllmRefuses:
            logged = real = 0
        rows.append(GuideRow(name=name, gpu_memory_utilization=preset.gpu_memory_utilization, kv_cache_tokens_logged=logged,
                             kv_cache_tokens_real=real, max_model_len_fit=_longest(recipe, profile, at, **kw)))
    return replace(plan, guide=rows)


def _longest(recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw) -> int:
    """Longest max_model_len one request really runs with at these settings (the null block counted)."""
    nb = _blocks(recipe, profile, s, **kw)
    return min(recipe.architecture.max_position_embeddings, layout_for(recipe, profile, s, **kw).longest_request(max(0, nb - 1)))


def layout_for(recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw) -> Layout:
    """The layout predict() uses for these settings (keyword arguments as predict's)."""
    return _layout(recipe, profile, s, kw["vllm_version"], kw.get("host") or CpuFeatures(), kw.get("correction"))[0]


def _layout(recipe: ModelRecipe, profile: GpuProfile, s: Settings, version: str, host: CpuFeatures,
            correction: Correction | None, check_target: bool = True) -> tuple[Layout, str, int | None]:
    """(layout, why the SSM state has its dtype, the rules' block size when a measured one replaced it)."""
    cpu = profile.vendor == "cpu"
    arch = recipe.architecture
    hybrid = bool(arch.linear_attention_layers)
    prefix = prefix_caching_default(version) if s.enable_prefix_caching is None else s.enable_prefix_caching
    declared = (arch.linear.ssm_dtype if arch.linear else
                (arch.mamba.ssm_dtype or arch.dtype) if arch.mamba else "float32")
    if cpu and hybrid:
        ssm, ssm_reason = cpu_ssm_dtype(version, host, declared, s.mamba_ssm_cache_dtype)
    else:
        ssm = s.mamba_ssm_cache_dtype if s.mamba_ssm_cache_dtype != "auto" else declared
        ssm_reason = "--mamba-ssm-cache-dtype" if s.mamba_ssm_cache_dtype != "auto" else "the model's state dtype"
    if cpu and check_target:
        why = cpu_refusal(arch, version, host, kv_cache_dtype=s.kv_cache_dtype,
                          dtype=s.dtype if s.dtype != "auto" else arch.dtype, sparse=sparse_attention(recipe))
        if why:
            raise VllmRefuses(f"vLLM cannot run {recipe.name} on the CPU build: {why}", "plan it for a GPU profile (--gpu)")
    mbt = s.max_num_batched_tokens or batch_defaults(profile, s.tensor_parallel_size * max(1, s.pipeline_parallel_size))[0]
    off, _ = hma_disabled(arch, s)
    try:
        lay = layout(arch, tp=s.tensor_parallel_size, kv_cache_dtype=s.kv_cache_dtype, cpu=cpu,
                     prefix_caching=prefix and hybrid, num_spec=s.num_speculative_tokens, ssm_dtype=ssm,
                     block_size=s.block_size, dtype=s.dtype, group_ratio=group_ratio(version),
                     in_flight=in_flight_tokens(profile, s, version, mbt), hma=not off,
                     pad_uneven_pages=vv.has("unify_pads_uneven_attention_pages", version),
                     mla_block=cpu_mla_block(arch, host) if cpu else None, disable_sliding_window=s.disable_sliding_window,
                     mamba2_checkpoint=vv.has("mamba2_prefill_checkpoint_block", version))
    except LayoutRefused as exc:
        raise VllmRefuses(exc.message, exc.hint) from None
    measured = measured_block_size(lay, correction)
    if measured is None:
        return lay, ssm_reason, None
    return lay.with_block_size(measured), ssm_reason, lay.block_size


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
    lay = layout_for(recipe, profile, s, **kw)
    need = 1 + target_concurrency * lay.blocks_per_request(target_context)  # + the null block
    if s.kv_cache_memory_bytes is not None or cpu:
        kv_bytes = need * lay.block_bytes
        notes = [f"{target_concurrency} x {target_context} tokens need {need} blocks (one is vLLM's null block) = "
                 f"{kv_bytes / MIB:.0f} MiB of KV cache"]
        return replace(s, kv_cache_memory_bytes=kv_bytes, max_model_len=target_context, max_model_len_auto=False), notes
    util = required_util(recipe, profile, replace(s, max_model_len=target_context), need, **kw)
    if util > ceiling:
        nb = _blocks(recipe, profile, replace(s, gpu_memory_utilization=ceiling, kv_cache_memory_bytes=None), **kw)
        per = (nb - 1) // max(1, target_concurrency)
        largest = lay.longest_request(per)
        if largest <= 0:
            raise UserError(f"{recipe.name} does not fit on {profile.name} at utilization {ceiling:g}: "
                            "weights and overheads leave no room for the KV cache",
                            "pick a smaller quantization or a larger GPU")
        raise UserError(f"{target_concurrency} x {target_context} tokens do not fit on {profile.name} at utilization {ceiling:g} "
                        + (f"(needs {util:g})" if util < 1 else "(not even the whole device is enough)"),
                        f"the largest context that fits is --max-model-len {min(largest, arch.max_position_embeddings)}")
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


__all__ = ["Accounting", "CpuFeatures", "Correction", "Graphs", "Layout", "Settings", "VllmRefuses", "activation_mib",
           "capture_sizes", "cpu_ssm_dtype", "cudagraph_mib", "flags_for", "graphs_for", "layout", "layout_for",
           "plan_for_target", "predict", "sampler_mib", "settings_from_flags", "with_guide"]
