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
from dataclasses import replace
from typing import Required, TypedDict, Unpack

from servectl.catalog import versions as vv
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import Architecture, ModelRecipe
from servectl.errors import UserError
from servectl.hardware.cpu_features import CpuFeatures
from servectl.plan import explain, refusals
from servectl.plan.accounting import Accounting
from servectl.plan.cpu_rules import cpu_mla_block, cpu_refusal, cpu_ssm_dtype
from servectl.plan.geometry import DTYPE_BYTES, Graphs, Layout, capture_sizes, graphs_for, layout
from servectl.plan.kvcache import LayoutRefused
from servectl.plan.models import GuideRow, Plan
from servectl.plan.refusals import VllmRefuses
from servectl.plan.sizing import Correction, Memory, Settings, Sizing
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


class Inputs(TypedDict, total=False):
    """What a plan is for besides the settings (predict's keywords, passed on by the searches over it): the vLLM
    release, the host's CPU features, past starts' correction, and the checkpoint's weights when read."""

    vllm_version: Required[str]
    correction: Correction | None
    host: CpuFeatures | None
    weights_gib: float | None
    mtp_weights_gib: float | None


def sparse_attention(recipe: ModelRecipe) -> bool:
    """DeepSeek sparse attention (V3.2-style indexer), which servectl does not size."""
    return recipe.architecture.mla is not None and recipe.architecture.mla.sparse


def prefix_caching_default(version: str) -> bool:
    """Whether vLLM turns prefix caching on by default for hybrid (Gated DeltaNet) models (catalog.versions)."""
    return vv.has("hybrid_prefix_caching_default", version)


def group_ratio(version: str) -> float:
    """Layers per KV group: the smaller layer count unless the larger is within this factor (catalog.versions)."""
    return 1.5 if vv.has("group_size_ratio_1_5", version) else 1.25


def estimate_cudagraphs_default(version: str) -> bool:
    """VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS's default in this version (catalog.versions)."""
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
    """Whether vLLM turns the hybrid KV-cache manager off, and why (vllm/config/vllm.py, 0.18 :2141-2197): the flag,
    or a model with chunked local attention unless VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1."""
    if s.disable_hybrid_kv_cache_manager is not None:
        return s.disable_hybrid_kv_cache_manager, "--disable-hybrid-kv-cache-manager" if s.disable_hybrid_kv_cache_manager else ""
    if arch.attention_chunk_size and "chunked_attention" in arch.kinds() and not s.allow_chunked_local_with_hma:
        return True, "chunked local attention turns it off by default"
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


def memory(
    recipe: ModelRecipe,
    profile: GpuProfile,
    s: Settings,
    *,
    version: str,
    seqs: int,
    mbt: int,
    estimate: bool,
    weights_gib: float | None,
    mtp_weights_gib: float | None,
    correction: Correction | None,
) -> Memory:
    """The budget vLLM profiles (vllm/v1/worker/gpu_worker.py determine_available_memory, 0.18 :350-502): the
    requested share of the device less weights, the activation peak, non-torch memory and (where the profiler
    estimates them, 0.18+) the CUDA graphs; --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE replace it
    (gpu_worker.py:362-380, platforms/cpu.py)."""
    arch = recipe.architecture
    cpu = profile.vendor == "cpu"
    tp = s.tensor_parallel_size
    total_gib = profile.memory_gib if profile.unified_memory else profile.total_memory_gib
    total = total_gib * GIB
    w = (weights_gib if weights_gib is not None else recipe.weights_gib) / tp * GIB
    c0 = profile.context_overhead_gib * GIB
    n = 0.0 if cpu else (NON_TORCH_GIB + (MULTIMODAL_RESIDENT_GIB if recipe.multimodal.modalities else 0.0)) * GIB
    corr = (correction.overhead_mib * MIB) if correction else 0.0
    measured = correction if (correction and correction.measured_terms and not cpu) else None
    if measured:
        # vLLM's own terms from a past start of this key replace the model's (and explain the overhead)
        w, n, corr = (measured.weights_mib or 0.0) * MIB, (measured.non_torch_mib or 0.0) * MIB, 0.0
    # The draft's weights (the checkpoint's mtp.* bytes when known) load with the model ("Model loading took").
    n_spec = s.num_speculative_tokens if arch.mtp_layers else 0
    w_mtp = 0.0
    if n_spec:
        w_mtp = mtp_weights_gib / tp * GIB if mtp_weights_gib is not None else float(mtp_weight_bytes(arch, tp))
        w += w_mtp

    # Activation peak: max over the profile phases (gpu_model_runner.py profile_run, 0.18 :5456-5529).
    a_lm = activation_mib(arch, mbt)
    a_enc = 0.0
    if recipe.multimodal.modalities and not s.skip_mm_profiling:
        video = "video" in recipe.multimodal.modalities and s.limit_mm.get("video", 1) > 0
        a_enc = VIDEO_ENCODER_MIB if video else 0.0
    rows = min(seqs, mbt)
    a_sampler = sampler_mib(arch, rows)
    a = (0.0 if cpu else max(a_lm + a_enc, a_sampler)) * MIB
    if measured:
        a = (measured.activation_mib or 0.0) * MIB
    # The sampler warm-up after graph capture keeps its buffers reserved (gpu_worker.compile_or_warm_up_model).
    s_warm = 0.0 if cpu else a_sampler * MIB

    # gpt-oss raises the default largest capture to 1024 (model_executor/models/config.py GptOssForCausalLMConfig)
    max_capture = s.max_cudagraph_capture_size
    if max_capture is None and arch.hf_architecture == "GptOssForCausalLM":
        max_capture = 1024
    graphs = graphs_for(seqs, mbt, max_capture, s.num_speculative_tokens, s.enforce_eager or cpu)
    g_actual = cudagraph_mib(arch, graphs) * MIB
    g_spec = 0.0
    if n_spec and graphs.count:
        g_spec = g_actual - cudagraph_mib(arch, graphs_for(seqs, mbt, s.max_cudagraph_capture_size, 0, False)) * MIB
    if measured and measured.cudagraph_mib is not None and graphs.count:
        g_actual = measured.cudagraph_mib * MIB
    g_est = g_actual if (estimate and graphs.count and vv.has("cudagraph_memory_profiled", version)) else 0.0
    if g_est and measured and measured.cudagraph_estimate_mib is not None:
        g_est = measured.cudagraph_estimate_mib * MIB

    requested = math.ceil(s.gpu_memory_utilization * total)
    kv_pinned: float | None = s.kv_cache_memory_bytes
    if cpu and s.cpu_kvcache_space_gib is not None:
        kv_pinned = s.cpu_kvcache_space_gib * GIB
    # vLLM's budget: requested - weights - activation peak - non-torch - graph estimate (gpu_worker.py:405-441)
    avail = float(kv_pinned) if kv_pinned is not None else requested - w - a - n - g_est - corr
    return Memory(
        total_gib=total_gib,
        requested=requested,
        context=c0,
        weights=w,
        mtp_weights=w_mtp,
        non_torch=n,
        calibration=corr,
        activation=a,
        activation_lm_mib=a_lm,
        activation_encoder_mib=a_enc,
        sampler_rows=rows,
        sampler_run_mib=a_sampler,
        sampler_warmup=s_warm,
        graphs=graphs,
        cudagraphs=g_actual,
        cudagraph_speculative=g_spec,
        cudagraph_estimate=g_est,
        kv_pinned=kv_pinned,
        kv_available=avail,
        measured=measured is not None,
    )


def num_blocks(lay: Layout, available: float) -> int:
    """KV blocks in `available` bytes (kv_cache_utils.py get_num_blocks: available // page // layers per group;
    one block id costs the largest group's pages where groups differ, :1520-1551)."""
    if lay.block_bytes == lay.page_bytes * lay.layers_per_group:
        return max(0, int(available // lay.page_bytes // lay.layers_per_group))
    return max(0, int(available // lay.block_bytes))


def resolved_max_model_len(s: Settings, acc: Accounting, lay: Layout, native: int) -> int:
    """max_model_len: --max-model-len, `auto` (vLLM's fit, kv_cache_utils.py _auto_fit_max_model_len), else native."""
    if s.max_model_len_auto:
        return acc.auto_length(lay, native)
    return s.max_model_len or native


def size(
    recipe: ModelRecipe,
    profile: GpuProfile,
    s: Settings,
    lay: Layout,
    *,
    version: str,
    weights_gib: float | None = None,
    mtp_weights_gib: float | None = None,
    correction: Correction | None = None,
) -> Sizing:
    """The arithmetic of a plan: numbers only, whether or not vLLM would start (refusals.check_start says)."""
    arch = recipe.architecture
    mbt_default, seqs_default = batch_defaults(profile, s.tensor_parallel_size * max(1, s.pipeline_parallel_size))
    seqs = s.max_num_seqs or seqs_default
    mbt = s.max_num_batched_tokens or mbt_default
    estimate = estimate_cudagraphs_default(version) if s.estimate_cudagraphs is None else s.estimate_cudagraphs
    m = memory(
        recipe,
        profile,
        s,
        version=version,
        seqs=seqs,
        mbt=mbt,
        estimate=estimate,
        weights_gib=weights_gib,
        mtp_weights_gib=mtp_weights_gib,
        correction=correction,
    )
    nb = num_blocks(lay, m.kv_available)
    acc = Accounting.of(nb, version, lay.n_groups > 1)
    mml = resolved_max_model_len(s, acc, lay, arch.max_position_embeddings)
    per_req = lay.blocks_per_request(mml) if mml else 1
    conc = nb / per_req if per_req else 0.0
    # the logged KV cache size: 0.20+ int(max_concurrency x max_model_len) (kv_cache_utils.py get_kv_cache_capacity);
    # before, num_blocks // groups x block_size (_report_kv_cache_config, 0.18 :1299-1303)
    logged = int(conc * mml) if vv.has("kv_tokens_logged_from_concurrency", version) else nb // lay.n_groups * lay.block_size
    return Sizing(
        layout=lay,
        seqs=seqs,
        mbt=mbt,
        estimate=estimate,
        memory=m,
        num_blocks=nb,
        accounting=acc,
        max_model_len=mml,
        blocks_per_request=per_req,
        concurrency=conc,
        logged=logged,
        longest=acc.longest_real(lay),
        fits=per_req <= acc.usable_blocks,
        version=version,
        cpu=profile.vendor == "cpu",
    )


def budget(sz: Sizing, unified_memory: bool) -> dict[str, float]:
    """`plan --json` budget: each term of the memory budget, MiB."""
    m = sz.memory
    out = {
        "device_total": m.total / MIB,
        "requested": (m.requested if m.kv_pinned is None else m.weights + m.activation + m.non_torch + m.kv_available) / MIB,
        "context": m.context / MIB,
        "weights": m.weights / MIB,
        "activation_peak": m.activation / MIB,
        "non_torch": m.non_torch / MIB,
        "calibration": m.calibration / MIB,
        "cudagraph_estimate": m.cudagraph_estimate / MIB,
        "cudagraphs": m.cudagraphs / MIB,
        "sampler_warmup": m.sampler_warmup / MIB,
        "kv_available": m.kv_available / MIB,
        "kv_allocated": sz.kv_allocated / MIB,
        "speculative": (m.mtp_weights + m.cudagraph_speculative) / MIB,
    }
    if unified_memory:
        out["os_headroom"] = sz.os_headroom / MIB
    return out


def predict(
    recipe: ModelRecipe,
    profile: GpuProfile,
    s: Settings,
    *,
    vllm_version: str,
    weights_gib: float | None = None,
    correction: Correction | None = None,
    flags: list[str] | None = None,
    host: CpuFeatures | None = None,
    mtp_weights_gib: float | None = None,
    check_target: bool = True,
) -> Plan:
    """Forward plan: what vLLM `vllm_version` will do with these settings on this hardware (and host CPU).
    check_target=False sizes a layout even where the target cannot run it (what vLLM would log before failing).

    Three steps: the numbers (size), vLLM's refusals (refusals.check_start raises VllmRefuses), the words
    (explain)."""
    cpu = profile.vendor == "cpu"
    lay, ssm_reason, ruled_block = _layout(recipe, profile, s, vllm_version, host or CpuFeatures(), correction, check_target)
    sz = size(
        recipe,
        profile,
        s,
        lay,
        version=vllm_version,
        weights_gib=weights_gib,
        mtp_weights_gib=mtp_weights_gib,
        correction=correction,
    )
    refusals.check_start(recipe, profile, s, sz)
    env = {} if cpu else {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "1" if sz.estimate else "0"}
    mml = sz.max_model_len
    return Plan(
        recipe=recipe.name,
        profile=profile.name,
        vllm_version=vllm_version,
        device="CPU" if cpu else "GPU",
        max_model_len=mml,
        block_size=lay.block_size,
        num_blocks=sz.num_blocks,
        kv_cache_tokens_logged=sz.logged,
        kv_cache_tokens_real=sz.real,
        max_concurrency=sz.concurrency,
        total_vram_mib=sz.total_vram / MIB,
        budget=budget(sz, profile.unified_memory),
        figures=explain.figures(recipe, s, sz, ssm_reason),
        flags=flags or [],
        env=env,
        fits=sz.fits,
        vllm_starts=True,
        warnings=explain.warnings(recipe, profile, s, sz, vllm_version, hma_disabled(recipe.architecture, s)[1]),
        notes=explain.notes(profile, s, sz, correction, ruled_block),
        layout=lay.describe(mml),
        kv_layout=kv_layout(lay, mml),
    )


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
    return {
        "block_size": lay.block_size,
        "page_bytes": lay.page_bytes,
        "layers_per_group": lay.layers_per_group,
        "block_bytes": lay.block_bytes,
        "groups": groups,
        "null_blocks": 1,
        "blocks_per_request": lay.blocks_per_request(max_model_len) if max_model_len else 0,
    }


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
        kv_cache_memory_bytes=kv_bytes,
        max_model_len=mml,
        max_model_len_auto=auto,
        max_num_seqs=num("--max-num-seqs"),
        max_num_batched_tokens=num("--max-num-batched-tokens"),
        max_cudagraph_capture_size=num("--max-cudagraph-capture-size"),
        enforce_eager=va.has(flags, "--enforce-eager"),
        limit_mm=limits,
        skip_mm_profiling=va.has(flags, "--skip-mm-profiling"),
        kv_cache_dtype=va.get(flags, "--kv-cache-dtype") or "auto",
        tensor_parallel_size=num("--tensor-parallel-size") or 1,
        enable_prefix_caching=prefix,
        estimate_cudagraphs=None if est_env is None else est_env.strip() not in ("", "0", "false", "False"),
        mamba_ssm_cache_dtype=(va.get(flags, "--mamba-ssm-cache-dtype") or "auto").lower(),
        block_size=num("--block-size"),
        num_speculative_tokens=num_spec,
        dtype=dtype,
        cpu_kvcache_space_gib=space_gib,
        allow_long_max_model_len=env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "").strip().lower() in ("1", "true"),
        disable_hybrid_kv_cache_manager=(
            True
            if va.has(flags, "--disable-hybrid-kv-cache-manager")
            else False
            if va.has(flags, "--no-disable-hybrid-kv-cache-manager")
            else None
        ),
        allow_chunked_local_with_hma=env.get("VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE", "").strip().lower()
        in ("1", "true"),
        async_scheduling=(
            True if va.has(flags, "--async-scheduling") else False if va.has(flags, "--no-async-scheduling") else None
        ),
        pipeline_parallel_size=num("--pipeline-parallel-size") or 1,
        disable_sliding_window=va.has(flags, "--disable-sliding-window"),
    )


def required_util(recipe: ModelRecipe, profile: GpuProfile, s: Settings, blocks: int, **kw: Unpack[Inputs]) -> float:
    """Smallest utilization (3 decimals) that gives at least `blocks` KV blocks."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if _blocks(recipe, profile, replace(s, gpu_memory_utilization=mid, kv_cache_memory_bytes=None), **kw) >= blocks:
            hi = mid
        else:
            lo = mid
    return math.ceil(hi * 1000) / 1000


def _blocks(
    recipe: ModelRecipe,
    profile: GpuProfile,
    s: Settings,
    *,
    vllm_version: str,
    weights_gib: float | None = None,
    correction: Correction | None = None,
    host: CpuFeatures | None = None,
    mtp_weights_gib: float | None = None,
) -> int:
    """num_blocks of a plan, 0 where vLLM would refuse (probe for searches over utilization: numbers, no words)."""
    s = replace(s, max_model_len=1, max_model_len_auto=False)
    try:
        lay = _layout(recipe, profile, s, vllm_version, host or CpuFeatures(), correction)[0]
        sz = size(
            recipe,
            profile,
            s,
            lay,
            version=vllm_version,
            weights_gib=weights_gib,
            mtp_weights_gib=mtp_weights_gib,
            correction=correction,
        )
        refusals.check_start(recipe, profile, s, sz)
    except VllmRefuses:
        return 0
    return sz.num_blocks


def with_guide(plan: Plan, recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw: Unpack[Inputs]) -> Plan:
    """Attach the utilization guide: each preset of the profile, computed for the plan's vLLM version."""
    rows = []
    for name, preset in sorted(profile.presets.items(), key=lambda kv: kv[1].gpu_memory_utilization):
        at = replace(s, gpu_memory_utilization=preset.gpu_memory_utilization, kv_cache_memory_bytes=None)
        try:
            p = predict(recipe, profile, at, **kw)
            logged, real = p.kv_cache_tokens_logged, p.kv_cache_tokens_real
        except VllmRefuses:
            logged = real = 0
        rows.append(
            GuideRow(
                name=name,
                gpu_memory_utilization=preset.gpu_memory_utilization,
                kv_cache_tokens_logged=logged,
                kv_cache_tokens_real=real,
                max_model_len_fit=_longest(recipe, profile, at, **kw),
            )
        )
    return replace(plan, guide=rows)


def _longest(recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw: Unpack[Inputs]) -> int:
    """Longest max_model_len one request really runs with at these settings (the null block counted)."""
    nb = _blocks(recipe, profile, s, **kw)
    return min(recipe.architecture.max_position_embeddings, layout_for(recipe, profile, s, **kw).longest_request(max(0, nb - 1)))


def layout_for(recipe: ModelRecipe, profile: GpuProfile, s: Settings, **kw: Unpack[Inputs]) -> Layout:
    """The layout predict() uses for these settings (keyword arguments as predict's)."""
    return _layout(recipe, profile, s, kw["vllm_version"], kw.get("host") or CpuFeatures(), kw.get("correction"))[0]


def _layout(
    recipe: ModelRecipe,
    profile: GpuProfile,
    s: Settings,
    version: str,
    host: CpuFeatures,
    correction: Correction | None,
    check_target: bool = True,
) -> tuple[Layout, str, int | None]:
    """(layout, why the SSM state has its dtype, the rules' block size when a measured one replaced it)."""
    cpu = profile.vendor == "cpu"
    arch = recipe.architecture
    hybrid = bool(arch.linear_attention_layers)
    prefix = prefix_caching_default(version) if s.enable_prefix_caching is None else s.enable_prefix_caching
    declared = arch.linear.ssm_dtype if arch.linear else (arch.mamba.ssm_dtype or arch.dtype) if arch.mamba else "float32"
    if cpu and hybrid:
        ssm, ssm_reason = cpu_ssm_dtype(version, host, declared, s.mamba_ssm_cache_dtype)
    else:
        ssm = s.mamba_ssm_cache_dtype if s.mamba_ssm_cache_dtype != "auto" else declared
        ssm_reason = "--mamba-ssm-cache-dtype" if s.mamba_ssm_cache_dtype != "auto" else "the model's state dtype"
    if cpu and check_target:
        why = cpu_refusal(
            arch,
            version,
            host,
            kv_cache_dtype=s.kv_cache_dtype,
            dtype=s.dtype if s.dtype != "auto" else arch.dtype,
            sparse=sparse_attention(recipe),
        )
        if why:
            raise VllmRefuses(f"vLLM cannot run {recipe.name} on the CPU build: {why}", "plan it for a GPU profile (--gpu)")
    mbt = s.max_num_batched_tokens or batch_defaults(profile, s.tensor_parallel_size * max(1, s.pipeline_parallel_size))[0]
    off, _ = hma_disabled(arch, s)
    try:
        lay = layout(
            arch,
            tp=s.tensor_parallel_size,
            kv_cache_dtype=s.kv_cache_dtype,
            cpu=cpu,
            prefix_caching=prefix and hybrid,
            num_spec=s.num_speculative_tokens,
            ssm_dtype=ssm,
            block_size=s.block_size,
            dtype=s.dtype,
            group_ratio=group_ratio(version),
            in_flight=in_flight_tokens(profile, s, version, mbt),
            hma=not off,
            pad_uneven_pages=vv.has("unify_pads_uneven_attention_pages", version),
            mla_block=cpu_mla_block(arch, host) if cpu else None,
            disable_sliding_window=s.disable_sliding_window,
            mamba2_checkpoint=vv.has("mamba2_prefill_checkpoint_block", version),
        )
    except LayoutRefused as exc:
        raise VllmRefuses(exc.message, exc.hint) from None
    measured = measured_block_size(lay, correction)
    if measured is None:
        return lay, ssm_reason, None
    return lay.with_block_size(measured), ssm_reason, lay.block_size


def plan_for_target(
    recipe: ModelRecipe,
    profile: GpuProfile,
    s: Settings,
    target_context: int,
    target_concurrency: int = 1,
    ceiling_util: float | None = None,
    **kw: Unpack[Inputs],
) -> tuple[Settings, list[str]]:
    """Inverse planning: the utilization that serves `target_concurrency` requests of `target_context` tokens.

    Returns the settings to use and notes; raises UserError naming the largest context that fits."""
    arch = recipe.architecture
    if target_context > arch.max_position_embeddings:
        raise UserError(
            f"target context {target_context} exceeds the model's native {arch.max_position_embeddings}",
            f"the largest context is {arch.max_position_embeddings}",
        )
    ceiling = ceiling_util or s.gpu_memory_utilization
    cpu = profile.vendor == "cpu"
    lay = layout_for(recipe, profile, s, **kw)
    need = 1 + target_concurrency * lay.blocks_per_request(target_context)  # + the null block
    if s.kv_cache_memory_bytes is not None or cpu:
        kv_bytes = need * lay.block_bytes
        notes = [
            f"{target_concurrency} x {target_context} tokens need {need} blocks (one is vLLM's null block) = "
            f"{kv_bytes / MIB:.0f} MiB of KV cache"
        ]
        return replace(s, kv_cache_memory_bytes=kv_bytes, max_model_len=target_context, max_model_len_auto=False), notes
    util = required_util(recipe, profile, replace(s, max_model_len=target_context), need, **kw)
    if util > ceiling:
        nb = _blocks(recipe, profile, replace(s, gpu_memory_utilization=ceiling, kv_cache_memory_bytes=None), **kw)
        per = (nb - 1) // max(1, target_concurrency)
        largest = lay.longest_request(per)
        if largest <= 0:
            raise UserError(
                f"{recipe.name} does not fit on {profile.name} at utilization {ceiling:g}: "
                "weights and overheads leave no room for the KV cache",
                "pick a smaller quantization or a larger GPU",
            )
        raise UserError(
            f"{target_concurrency} x {target_context} tokens do not fit on {profile.name} at utilization {ceiling:g} "
            + (f"(needs {util:g})" if util < 1 else "(not even the whole device is enough)"),
            f"the largest context that fits is --max-model-len {min(largest, arch.max_position_embeddings)}",
        )
    notes = [
        f"utilization {util:g} gives the {need} blocks {target_concurrency} x {target_context} tokens need "
        f"(ceiling {ceiling:g}); equivalently --kv-cache-memory-bytes {need * lay.block_bytes // MIB}M"
    ]
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


__all__ = [
    "Accounting",
    "CpuFeatures",
    "Correction",
    "Graphs",
    "Layout",
    "Memory",
    "Settings",
    "Sizing",
    "VllmRefuses",
    "activation_mib",
    "capture_sizes",
    "cpu_ssm_dtype",
    "cudagraph_mib",
    "flags_for",
    "graphs_for",
    "layout",
    "layout_for",
    "plan_for_target",
    "predict",
    "sampler_mib",
    "settings_from_flags",
    "size",
    "with_guide",
]
