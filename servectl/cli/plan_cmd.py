"""`servectl plan` (predict vLLM's memory before loading) and `servectl calibrate --log FILE`."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import click

from servectl.cli.app import console, emit_json
from servectl.plan import planner, service


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
        g = Table(title=f"utilization guide for {plan.profile} (computed)")
        for c in ("preset", "utilization", "KV tokens logged", "tokens one request holds", "max-model-len that fits"):
            g.add_column(c, justify="right")
        for r in plan.guide:
            g.add_row(r.name, f"{r.gpu_memory_utilization:g}", f"{r.kv_cache_tokens_logged:,}",
                      f"{r.kv_cache_tokens_real:,}", f"{r.max_model_len_fit:,}")
        console.print(g)
    for n in plan.notes:
        console.print(f"note: {n}", highlight=False)
    env = " ".join(f"{k}={v}" for k, v in plan.env.items())
    console.print(f"flags: {env + ' ' if env else ''}vllm serve MODEL {' '.join(plan.flags)}", highlight=False, soft_wrap=True)


@click.command("plan", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("model")
@click.option("--gpu", help="GPU profile (default: detected).")
@click.option("--vllm-version", default=planner.DEFAULT_VLLM, show_default=True, help="vLLM release the figures are for (logged numbers changed in 0.20).")
@click.option("--estimate-cudagraphs/--no-estimate-cudagraphs", default=None,
              help=f"Subtract the CUDA-graph estimate from the KV budget (default: ${service.ESTIMATE_ENV}, else the version's default).")
@click.option("--target-context", type=click.IntRange(1), help="Plan the utilization that serves this context.")
@click.option("--target-concurrency", type=click.IntRange(1), default=1, show_default=True, help="Concurrent requests of --target-context.")
@click.option("--desktop", "preset", flag_value="desktop", help="Leave display headroom (the profile's desktop preset).")
@click.option("--headless", "preset", flag_value="headless", help="No display on this GPU (the headless preset).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False),
              help="Local checkpoint: weights from its safetensors headers (default: the HF cache's copy, if any).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plan_cmd(ctx: click.Context, model: str, gpu: str | None, vllm_version: str, estimate_cudagraphs: bool | None,
             target_context: int | None, target_concurrency: int, preset: str | None, model_path: str | None,
             as_json: bool) -> None:
    """Predict vLLM's KV cache and memory before loading MODEL, and the flags that realise it.

    Any vLLM memory flag may follow, spelled as vLLM spells it: --gpu-memory-utilization F,
    --kv-cache-memory-bytes 20600M, --max-model-len N|auto, --max-num-seqs N, --max-num-batched-tokens N,
    --max-cudagraph-capture-size N, --enforce-eager, --limit-mm-per-prompt '{"video": 0}' or
    --limit-mm-per-prompt.video 0, --skip-mm-profiling, --kv-cache-dtype D, --tensor-parallel-size N,
    --enable-prefix-caching.

    --json keys: kv_cache_tokens_logged, kv_cache_tokens_real, max_concurrency, total_vram_mib,
    budget (MiB per term), max_model_len, block_size, num_blocks, vllm_version, flags, env, fits,
    figures, guide, notes.
    """
    extra = list(ctx.args)
    service.check_memory_flags(extra)
    env = {}
    if estimate_cudagraphs is None and os.environ.get(service.ESTIMATE_ENV) is not None:
        env[service.ESTIMATE_ENV] = os.environ[service.ESTIMATE_ENV]
    plan = service.build(model, gpu, extra, preset=preset, vllm_version=vllm_version, estimate=estimate_cudagraphs,
                 target_context=target_context, target_concurrency=target_concurrency, env=env, model_path=model_path)
    if as_json:
        emit_json(plan.to_json())
    else:
        _table(plan)


@click.command("calibrate")
@click.argument("model")
@click.option("--gpu", help="GPU profile the log was taken on (default: detected).")
@click.option("--log", "log_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="vLLM start-up log.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def calibrate_cmd(model: str, gpu: str | None, log_file: Path, as_json: bool) -> None:
    """Compare a real vLLM start with the plan for the same flags; store the correction for later plans.

    --json keys: recipe, profile, vllm_version, overhead_mib, measured_kv_tokens, predicted_kv_tokens,
    measured_available_mib, predicted_available_mib, source, file.
    """
    rec, path = service.calibrate_from_log(model, gpu, log_file)
    out = {**asdict(rec), "file": str(path)}
    if as_json:
        emit_json(out)
        return
    console.print(f"{rec.recipe} on {rec.profile}, vLLM {rec.vllm_version or '?'}: KV cache size measured "
                  f"{rec.measured_kv_tokens if rec.measured_kv_tokens is not None else '?'} vs predicted {rec.predicted_kv_tokens} tokens",
                  highlight=False)
    console.print(f"correction stored: {rec.overhead_mib:+.1f} MiB non-KV overhead -> {path}", highlight=False)
