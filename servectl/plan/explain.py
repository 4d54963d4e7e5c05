"""The words of a plan: each figure's reason, the notes and the warnings, from the numbers servectl.plan.planner
worked out. Pure; no arithmetic of its own beyond formatting. The vLLM source each figure follows is cited in
the planner's comments and in the docs, not here: these lines are what a user reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servectl.catalog import versions as vv
from servectl.plan.models import Figure

if TYPE_CHECKING:
    from servectl.catalog.gpu import GpuProfile
    from servectl.catalog.recipe import ModelRecipe
    from servectl.plan.sizing import Correction, Settings, Sizing

MIB = 2**20
GIB = 2**30


def notes(profile: GpuProfile, s: Settings, sz: Sizing, correction: Correction | None, ruled_block: int | None) -> list[str]:
    """What the user should know: calibration used, a measured block size, a pinned KV size, unified memory."""
    out: list[str] = []
    m = sz.memory
    if correction and correction.starts:
        out.append(
            f"calibrated from {correction.starts} start{'s' if correction.starts != 1 else ''}"
            + (
                ": vLLM's measured weights, activation peak, non-torch and CUDA-graph memory"
                if m.measured
                else f": {correction.overhead_mib:+.0f} MiB non-KV memory"
                if correction.overhead_mib
                else ""
            )
            + (f" ({correction.source})" if correction.source else "")
        )
    if ruled_block is not None and correction is not None:
        out.append(
            f"block size {sz.layout.block_size} measured by {correction.starts} start(s) on this host "
            f"(the rules gave {ruled_block})"
        )
    if sz.cpu and s.cpu_kvcache_space_gib is not None:
        out.append(f"VLLM_CPU_KVCACHE_SPACE={s.cpu_kvcache_space_gib} replaces the KV cache size")
    if profile.unified_memory:
        out.append(
            f"unified memory: {m.total_gib:.1f} GiB shared with the OS; the plan leaves {sz.os_headroom / GIB:.1f} GiB "
            f"(wanted >= {profile.os_headroom_gib:g} GiB)"
        )
    return out


def warnings(recipe: ModelRecipe, profile: GpuProfile, s: Settings, sz: Sizing, version: str, hma_off_reason: str) -> list[str]:
    """What vLLM will do that the user may not expect (it still starts)."""
    out: list[str] = []
    lay, acc, mml = sz.layout, sz.accounting, sz.max_model_len
    native = recipe.architecture.max_position_embeddings
    if lay.promoted:
        out.append(
            "the hybrid KV-cache manager is off (" + hma_off_reason + "): sliding-window / chunked "
            "layers get blocks for the whole context like full attention; their compute stays local"
        )
    if s.allow_long_max_model_len and mml > native:
        out.append(
            f"--max-model-len {mml:,} exceeds the model's max_position_embeddings {native:,} "
            "(allowed by VLLM_ALLOW_LONG_MAX_MODEL_LEN=1; outputs past it may be garbage)"
        )
    if not sz.fits:
        why = (
            "its check sizes one request by a mamba group only"
            if acc.group0_only
            else "its check counts the null block as usable"
            if not acc.null_reserved
            else ""
        )
        out.append(
            f"vLLM {version} starts, but one request of max_model_len {mml:,} tokens needs {sz.blocks_per_request} "
            f"blocks and only {acc.usable_blocks} are usable (one of {sz.num_blocks} is the null block"
            f"{'; ' + why if why else ''}): the longest request that runs is {sz.longest:,} tokens "
            f"(--max-model-len {sz.longest} matches it)"
        )
    if not vv.has("kv_tokens_logged_from_concurrency", version) and lay.n_groups > 1 and sz.logged and sz.longest < 2**31 - 1:
        out.append(
            f"vLLM {version} will log {sz.logged:,} KV tokens (num_blocks // {lay.n_groups} groups x {lay.block_size}); "
            f"its blocks really hold {sz.longest:,} tokens for one request ({sz.longest / sz.logged:.1f}x the logged figure)"
        )
    if profile.unified_memory and sz.os_headroom < profile.os_headroom_gib * GIB:
        out.append("utilization eats into the OS headroom: lower --gpu-memory-utilization")
    return out


def figures(recipe: ModelRecipe, s: Settings, sz: Sizing, ssm_reason: str) -> dict[str, Figure]:
    """Every figure of a plan with its one-line reason (a formula, or the rule vLLM follows)."""
    arch = recipe.architecture
    lay, m, cpu = sz.layout, sz.memory, sz.cpu
    mml, tp, graphs = sz.max_model_len, s.tensor_parallel_size, m.graphs
    n_spec = s.num_speculative_tokens if arch.mtp_layers else 0
    fig: dict[str, Figure] = {}
    mla_block = arch.mla is not None and cpu and lay.block_size == 16 and not s.block_size
    fig["block_size"] = Figure(
        value=lay.block_size,
        unit="tokens",
        reason=(
            f"{'128' if cpu else '16'}-aligned attention block whose page ({lay.page_bytes:,} B) holds one mamba state "
            f"({lay.mamba_state_bytes:,} B, SSM state {lay.ssm_dtype}: {ssm_reason})"
            if lay.mamba_state_bytes and lay.attn_groups
            else "CPU_MLA's block (vLLM's CPU build forces 16)"
            if mla_block
            else "--block-size"
            if s.block_size
            else "backend default block size"
        ),
    )
    fig["page_bytes"] = Figure(
        value=lay.page_bytes,
        unit="B",
        reason=(f"block_size x {lay.attn_bytes_per_token_layer} B per token per layer" if lay.attn_groups else "one mamba state"),
    )
    if lay.groups and all(not g.spec.is_attention for g in lay.groups) or not lay.mamba_groups:
        kinds = ", ".join(sorted({g.kind for g in lay.groups}))
        fig["kv_groups"] = Figure(
            value=f"{lay.n_groups} ({kinds})",
            reason=(
                f"{lay.layers_per_group} layers per group share one tensor each"
                if lay.n_groups > 1
                else "one group: every layer has the same kind of KV cache"
            ),
        )
    else:
        fig["kv_groups"] = Figure(
            value=f"{lay.attn_groups} attention + {lay.mamba_groups} mamba",
            reason=f"{lay.layers_per_group} layers per group share one tensor each",
        )
    fig["num_blocks"] = Figure(
        value=sz.num_blocks,
        unit="blocks",
        reason=(
            f"kv_available // page // {lay.layers_per_group} layers per group; one is the null block"
            if lay.block_bytes == lay.page_bytes * lay.layers_per_group
            else f"kv_available // {lay.block_bytes:,} B per block (the largest group's pages); one is the null block"
        ),
    )
    fig["kv_available"] = Figure(value=round(m.kv_available / MIB, 1), unit="MiB", reason=_available_reason(s, sz))
    fig["weights"] = Figure(
        value=round(m.weights / MIB, 1),
        unit="MiB",
        reason="checkpoint weights resident after load" + (f", / tp {tp}" if tp > 1 else ""),
    )
    fig["activation_peak"] = Figure(
        value=round(m.activation / MIB, 1),
        unit="MiB",
        reason=(
            f"max(LM forward over {sz.mbt} tokens {m.activation_lm_mib:.0f} + encoder {m.activation_encoder_mib:.0f}, "
            f"sampler {m.sampler_rows} rows {m.sampler_run_mib:.0f})"
        ),
    )
    if n_spec:
        fig["speculative"] = Figure(
            value=round((m.mtp_weights + m.cudagraph_speculative) / MIB, 1),
            unit="MiB",
            reason=(
                f"MTP draft, {n_spec} tokens per step: head weights {m.mtp_weights / MIB:.1f} MiB (in weights) + CUDA graphs for "
                f"(1 + {n_spec}) x seqs tokens {m.cudagraph_speculative / MIB:+.1f} MiB; its KV: +{arch.mtp_layers} attention "
                f"layer in the groups, +{n_spec} conv rows per GDN state, {lay.mamba_blocks_per_request} state blocks per "
                "request and group"
            ),
        )
    fig["cudagraphs"] = Figure(
        value=round(m.cudagraphs / MIB, 1),
        unit="MiB",
        reason=(
            "eager: none"
            if not graphs.count
            else f"{len(graphs.piecewise)} PIECEWISE (largest {max(graphs.piecewise)}) + {len(graphs.full)} FULL graphs; "
            + ("subtracted from KV (estimate on)" if m.cudagraph_estimate else "on top of the budget (estimate off)")
        ),
    )
    fig["sampler_warmup"] = Figure(
        value=round(m.sampler_warmup / MIB, 1),
        unit="MiB",
        reason=(
            "none on CPU"
            if cpu
            else f"{m.sampler_rows} rows x {arch.vocab_size:,} vocab kept reserved after graph capture (outside the budget)"
        ),
    )
    fig["max_model_len"] = Figure(value=mml, unit="tokens", reason=_max_model_len_reason(s, sz))
    fig["kv_cache_tokens_logged"] = Figure(
        value=sz.logged,
        unit="tokens",
        reason=(
            f"int(max_concurrency x max_model_len), as vLLM {sz.version} logs it"
            if vv.has("kv_tokens_logged_from_concurrency", sz.version)
            else f"num_blocks // {lay.n_groups} groups x block_size, as vLLM {sz.version} logs it"
        ),
    )
    fig["kv_cache_tokens_real"] = Figure(
        value=sz.real,
        unit="tokens",
        reason=(
            f"(num_blocks - 1 null - {lay.state_blocks} state blocks) x block_size, capped at max_model_len"
            if lay.mamba_groups and lay.attn_groups and all(g.spec.grows or not g.spec.is_attention for g in lay.groups)
            else "the longest request whose blocks fit in num_blocks - 1 (the null block), capped at max_model_len"
        ),
    )
    fig["max_concurrency"] = Figure(
        value=round(sz.concurrency, 2),
        unit="x",
        reason=f"num_blocks / {sz.blocks_per_request} blocks per request of max_model_len",
    )
    fig["total_vram"] = Figure(
        value=round(sz.total_vram / MIB),
        unit="MiB",
        reason=(
            "weights + KV cache"
            if cpu
            else "context + weights + non-torch + KV budget + CUDA graphs + sampler warm-up (activations freed)"
        ),
    )
    if lay.in_flight and any(g.kind in ("sliding_window", "sliding_window_mla", "chunked_local") for g in lay.groups):
        fig["in_flight_tokens"] = Figure(
            value=lay.in_flight,
            unit="tokens",
            reason=(
                "sliding / chunked layers keep blocks for the window plus the tokens scheduled but not settled "
                "(max_concurrent_batches x max_num_batched_tokens)"
            ),
        )
    return fig


def _available_reason(s: Settings, sz: Sizing) -> str:
    m = sz.memory
    if m.kv_pinned is not None:
        return (
            "VLLM_CPU_KVCACHE_SPACE" if m.kv_pinned != s.kv_cache_memory_bytes else "--kv-cache-memory-bytes"
        ) + " replaces the profiled budget"
    return (
        f"ceil({s.gpu_memory_utilization:g} x {m.total_gib:.2f} GiB) - weights - activation peak - non-torch"
        + (" - CUDA-graph estimate" if m.cudagraph_estimate else "")
        + (" - calibration" if m.calibration else "")
    )


def _max_model_len_reason(s: Settings, sz: Sizing) -> str:
    if not s.max_model_len_auto:
        return "--max-model-len" if s.max_model_len else "the model's max_position_embeddings"
    acc, lay = sz.accounting, sz.layout
    if acc.group0_only:
        return (
            "auto: vLLM <= 0.18 keeps the native length (its check sizes one request by a mamba group)"
            if not lay.groups[0].spec.grows
            else "auto: vLLM <= 0.18's fit of one request's group-0 blocks (its check looks at group 0 only)"
        )
    return f"auto: vLLM's fit of one request into {acc.check_blocks} blocks" + (
        " (num_blocks - the null block)" if acc.null_reserved else " (num_blocks; the null block not counted)"
    )
