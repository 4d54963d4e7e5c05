"""`servectl plan MODEL [VLLM FLAGS]`: predict vLLM's memory and KV cache before anything loads."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from servectl.cli import options
from servectl.cli.app import console, detected, emit_json
from servectl.plan import service


def _table(plan) -> None:
    from rich.table import Table

    t = Table(title=f"{plan.recipe} on {plan.profile} (vLLM {plan.vllm_version})", show_lines=False)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("why")
    for name, f in plan.figures.items():
        v = f"{f.value:,}" if isinstance(f.value, int) else str(f.value)
        t.add_row(name, f"{v} {f.unit}".strip(), f.reason)
    console.print(t)
    b = Table(title="budget (MiB)")
    b.add_column("term")
    b.add_column("MiB", justify="right")
    for k, v in plan.budget.items():
        b.add_row(k, f"{v:,.0f}")
    console.print(b)
    if plan.guide:
        g = Table(title=f"utilization guide for {plan.profile} (computed, vLLM {plan.vllm_version})")
        for c in ("preset", "utilization", "KV tokens logged", "tokens one request holds", "max-model-len that runs"):
            g.add_column(c, justify="right")
        for r in plan.guide:
            g.add_row(
                r.name,
                f"{r.gpu_memory_utilization:g}",
                f"{r.kv_cache_tokens_logged:,}",
                f"{r.kv_cache_tokens_real:,}",
                f"{r.max_model_len_fit:,}",
            )
        console.print(g)
    for n in plan.notes:
        console.print(f"note: {n}", highlight=False, soft_wrap=True)
    for w in plan.warnings:
        console.print("warning: ", style="yellow", end="")
        console.print(w, highlight=False, soft_wrap=True)
    if plan.ignored_flags:
        console.print(f"not affecting the plan: {' '.join(plan.ignored_flags)}", highlight=False, soft_wrap=True)
    if plan.nodes:
        n = plan.nodes
        for row in n["per_node"]:
            mark = "  <- bottleneck" if row["node"] == n["bottleneck"]["node"] else ""
            console.print(
                f"node {row['node']}: layers {row['layers'][0]}-{row['layers'][1]}, {row['ranks']} rank(s) with "
                f"{row['weights_mib_per_rank']:,.0f} MiB weights, {row['kv_available_mib_per_rank']:,.0f} MiB for KV, "
                f"{row['kv_blocks']} blocks{mark}",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            f"all nodes: {n['num_blocks']} blocks, {n['kv_cache_tokens_real']:,} tokens per request "
            f"({n['bottleneck']['reason']})",
            highlight=False,
            soft_wrap=True,
        )
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in plan.env.items())
    console.print(f"flags: {env + ' ' if env else ''}vllm serve MODEL {shlex.join(plan.flags)}", highlight=False, soft_wrap=True)


class _VllmTailCommand(click.Command):
    """Keeps the vLLM command line after the model as written, and remembers how much of it came after `--`
    (click drops the separator): before it, a flag nobody knows is refused; after it, only warned about."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[VLLM_FLAGS]..."]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["after_separator"] = len(args) - args.index("--") - 1 if "--" in args else 0
        return super().parse_args(ctx, args)


@click.command("plan", cls=_VllmTailCommand, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("model")
@options.GPU(options.DETECTED)
@options.PRESET()
@options.VLLM_VERSION(
    "The figures are for it. Default: the vLLM that will run, the environment's installed one, else the profile's image tag."
)
@options.PYTHON(
    "Its installed vLLM is the release planned for, its parser checks the vLLM flags, and (cpu profile) its "
    "torch says the CPU features. Default: $SERVECTL_VLLM_PYTHON, else the environment that fits the recipe and "
    "GPU, else none (the profile's image tag)."
)
@click.option(
    "--estimate-cudagraphs/--no-estimate-cudagraphs",
    default=None,
    help=f"Subtract the CUDA-graph estimate from the KV budget (default: ${service.ESTIMATE_ENV}, else the version's default).",
)
@click.option("--target-context", type=click.IntRange(1), help="Plan the utilization that serves this context.")
@click.option(
    "--target-concurrency", type=click.IntRange(1), default=1, show_default=True, help="Concurrent requests of --target-context."
)
@options.MODEL_PATH(
    "Its safetensors headers give the weights (default: the HF cache's copy, if any).",
    type=click.Path(file_okay=False, exists=True),
)
@options.SPECULATIVE()
@options.NODES("Planned per rank and split per node.")
@options.FORCE(options.GUARDS)
@options.JSON("Keys below.")
@options.PLOT("Here: the memory as a stacked bar (one per node with --nodes) and the KV cache's blocks.")
@click.pass_context
def plan(
    ctx: click.Context,
    model: str,
    gpu: str | None,
    preset: str | None,
    vllm_version: str | None,
    python: str | None,
    estimate_cudagraphs: bool | None,
    target_context: int | None,
    target_concurrency: int,
    model_path: str | None,
    speculative: str | None,
    nodes: int | None,
    force: bool,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Predict what vLLM does with MODEL's memory before loading it, and the flags that realise it. MODEL is a recipe
    (curated or your own), a hub repo id (org/name[@revision]) or a checkpoint directory (its config.json read as
    vLLM reads it).

    After MODEL goes the vLLM command line as you would write it (`vllm serve REPO` in front is fine). Flags that
    change memory are planned: --gpu-memory-utilization, --kv-cache-memory-bytes, --max-model-len N|auto,
    --max-num-seqs, --max-num-batched-tokens, --max-cudagraph-capture-size, --enforce-eager,
    --limit-mm-per-prompt[.MODALITY], --skip-mm-profiling, --kv-cache-dtype, --tensor-parallel-size,
    --[no-]enable-prefix-caching, --mamba-ssm-cache-dtype, --block-size, --speculative-config, --dtype. The others
    are accepted (checked by vLLM's own parser when the vLLM that will run is installed here) and listed as not
    affecting the plan. servectl's guards refuse as in render and up (exit 2; --force plans past the forceable ones,
    with a warning each); beyond them exit 0 for everything vLLM starts, with warnings, and exit 2 where vLLM refuses
    to start (the message names vLLM's check and the flag that fixes it).

    --json keys: kv_cache_tokens_logged, kv_cache_tokens_real, max_concurrency, total_vram_mib, budget (MiB per
    term; `speculative`: the MTP draft's), max_model_len, block_size, num_blocks, vllm_version, flags, env, fits,
    vllm_starts, warnings, ignored_flags, figures, guide, notes, layout (per KV-cache group: kind, layers, page_bytes,
    block_size, blocks_per_request), speculative (null, or num_speculative_tokens,
    budget_mib and `without`: the same figures without speculation); with --nodes N (N >= 2) also nodes: count,
    tensor_parallel_size, pipeline_parallel_size, ranks, layers_per_node, per_node (node, layers,
    full_attention_layers, linear_attention_layers, ranks, weights_mib_per_rank, kv_available_mib_per_rank,
    kv_block_bytes_per_rank, kv_blocks, kv_used_mib_per_rank, kv_unused_mib_per_rank), bottleneck (node,
    kv_blocks, reason), num_blocks, kv_cache_tokens_real, fits, weights_mib_total, max_weights_mib_per_rank, note;
    kv_layout (block_size, page_bytes, layers_per_group, block_bytes, groups [kind, count, blocks_per_request],
    null_blocks, blocks_per_request: what one request of max_model_len pins).

    """
    if plot is not None:  # refused before planning; matplotlib loads only here
        from servectl.observe.plot_style import plot_format, require_matplotlib

        plot_format(plot)
        require_matplotlib()
    from servectl.plan.any_model import resolve_model
    from servectl.plan.request import PlanRequest

    # a derived recipe gets settings for the profile asked for only (--gpu); detection needs them all
    request = PlanRequest(
        resolve_model(model, python=python, profiles=[gpu] if gpu else None).recipe,
        gpu,
        tuple(ctx.args),
        preset=preset,
        detected=detected(gpu),
        vllm_version=vllm_version,
        estimate=estimate_cudagraphs,
        target_context=target_context,
        target_concurrency=target_concurrency,
        env={k: os.environ[k] for k in service.PLAN_ENV if os.environ.get(k) is not None},
        model_path=model_path,
        python=python,
        speculative=speculative,
        nodes=nodes,
        force=force,
        after_separator=min(ctx.meta.get("after_separator", 0), len(ctx.args)),
        own_options=tuple(o for p in ctx.command.params for o in p.opts + p.secondary_opts if o.startswith("--")),
    )
    plan = service.build(request)
    if plot is not None:
        from servectl.observe.plan_plot import draw

        draw(plan.to_json(), plot)
    if as_json:
        emit_json(plan.to_json())
    else:
        _table(plan)
        if plot is not None:
            console.print(f"plot: {plot}", highlight=False, soft_wrap=True)
