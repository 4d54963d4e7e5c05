"""`servectl plan` (predict vLLM's memory before loading) and `servectl calibrate --log FILE`."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

import click
from rich.table import Table

from servectl import calibrate as cal
from servectl.checkpoint import cached_checkpoint, weight_bytes
from servectl import planner
from servectl import vllm_args as va
from servectl import vllm_log
from servectl.catalog import load_catalog
from servectl.cli.app import console, emit_json, main
from servectl.deployment import Request, resolve
from servectl.errors import UserError

# vLLM flags that change memory, as vLLM spells them (plus their dotted / negated forms).
MEMORY_FLAGS = (
    "--gpu-memory-utilization", "--kv-cache-memory-bytes", "--max-model-len", "--max-num-seqs",
    "--max-num-batched-tokens", "--max-cudagraph-capture-size", "--enforce-eager", "--limit-mm-per-prompt",
    "--skip-mm-profiling", "--kv-cache-dtype", "--tensor-parallel-size", "--enable-prefix-caching",
    "--no-enable-prefix-caching",
)
_ENV = "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"


def _check_memory_flags(tokens: list[str]) -> None:
    try:
        flags = va.parse_args(tokens)
    except ValueError as exc:
        raise UserError(f"cannot read the vLLM flags: {exc}") from None
    for f in flags:
        name = va.canonical(f.name)
        if name not in MEMORY_FLAGS and not name.startswith("--limit-mm-per-prompt."):
            raise UserError(f"{f.name} is not a vLLM memory flag servectl plan knows",
                            "memory flags: " + " ".join(MEMORY_FLAGS))


def _profile(cat, gpu: str | None):
    if gpu:
        return cat.gpu(gpu)
    from servectl.cli.app import info
    from servectl.detect import detect
    from servectl.matching import choose_profile

    choice = choose_profile(detect(), cat)
    info(f"profile {choice.profile.name} (preset {choice.preset}): {choice.reason}")
    for w in choice.warnings:
        info(f"warning: {w}")
    return choice.profile


def build(model: str, gpu: str | None, vllm_tokens: list[str], *, preset: str | None = None,
          vllm_version: str = planner.DEFAULT_VLLM, estimate: bool | None = None,
          target_context: int | None = None, target_concurrency: int = 1, env: dict[str, str] | None = None,
          model_path: str | None = None):
    """Recipe settings for the profile (deployment.resolve) + the user's flags -> Plan. Other commands reuse it."""
    cat = load_catalog()
    recipe, profile = cat.model(model), _profile(cat, gpu)
    spec = resolve(Request(recipe=recipe, profile=profile, overrides=list(vllm_tokens), preset=preset))
    flags = va.parse_args(spec.vllm_args)
    run_env = {**spec.env, **(env or {})}
    if estimate is not None:
        run_env[_ENV] = "1" if estimate else "0"
    s = planner.settings_from_flags(flags, run_env)
    correction = cal.correction_for(recipe.name, profile.name)
    kw = dict(vllm_version=vllm_version, correction=correction)
    notes: list[str] = []
    checkpoint = Path(model_path) if model_path else cached_checkpoint(recipe.repo)
    if checkpoint is not None:
        loaded, skipped = weight_bytes(checkpoint)
        kw["weights_gib"] = loaded / 2**30
        notes.append(f"weights {loaded / 2**30:.2f} GiB from the safetensors headers in {checkpoint}"
                     + (f" ({skipped / 2**30:.2f} GiB of MTP head not loaded)" if skipped else ""))
    if target_context:
        ceiling = s.gpu_memory_utilization
        s, notes = planner.plan_for_target(recipe, profile, s, target_context, target_concurrency, ceiling_util=ceiling, **kw)
    out_flags = va.to_tokens(planner.flags_for(flags, s))
    plan = planner.predict(recipe, profile, s, flags=out_flags, **kw)
    plan = planner.with_guide(plan, recipe, profile, s, **kw)
    if s.estimate_cudagraphs is not None and profile.vendor != "cpu":
        plan = plan.model_copy(update={"env": {_ENV: "1" if s.estimate_cudagraphs else "0"}})
    plan = plan.model_copy(update={"notes": notes + plan.notes})
    if plan.budget["kv_available"] <= 0:
        raise UserError(f"{recipe.name} does not fit on {profile.name}: weights and overheads exceed the budget by "
                        f"{-plan.budget['kv_available']:.0f} MiB",
                        "raise --gpu-memory-utilization, lower --max-num-batched-tokens, or pick a larger GPU")
    if not plan.fits:
        fit = planner.predict(recipe, profile, replace(s, max_model_len_auto=True), vllm_version="0.19.1",
                              correction=correction).max_model_len
        raise UserError(f"max_model_len {plan.max_model_len} does not fit in the {plan.num_blocks} KV blocks on {profile.name}",
                        f"the largest context that fits is --max-model-len {fit}" if fit > 0 else "pick a larger GPU")
    return plan


def _table(plan) -> None:
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


@main.command("plan", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("model")
@click.option("--gpu", help="GPU profile (default: detected).")
@click.option("--vllm-version", default=planner.DEFAULT_VLLM, show_default=True, help="vLLM release the figures are for (logged numbers changed in 0.20).")
@click.option("--estimate-cudagraphs/--no-estimate-cudagraphs", default=None,
              help=f"Subtract the CUDA-graph estimate from the KV budget (default: ${_ENV}, else the version's default).")
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
    _check_memory_flags(extra)
    env = {}
    if estimate_cudagraphs is None and os.environ.get(_ENV) is not None:
        env[_ENV] = os.environ[_ENV]
    plan = build(model, gpu, extra, preset=preset, vllm_version=vllm_version, estimate=estimate_cudagraphs,
                 target_context=target_context, target_concurrency=target_concurrency, env=env, model_path=model_path)
    if as_json:
        emit_json(plan.to_json())
    else:
        _table(plan)


@main.command("calibrate")
@click.argument("model")
@click.option("--gpu", help="GPU profile the log was taken on (default: detected).")
@click.option("--log", "log_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="vLLM start-up log.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def calibrate_cmd(model: str, gpu: str | None, log_file: Path, as_json: bool) -> None:
    """Compare a real vLLM start with the plan for the same flags; store the correction for later plans.

    --json keys: recipe, profile, vllm_version, overhead_mib, measured_kv_tokens, predicted_kv_tokens,
    measured_available_mib, predicted_available_mib, source, file.
    """
    fig = vllm_log.parse_text(log_file.read_text(errors="replace"))
    tokens: list[str] = []
    a = fig.args
    mapping = {"max_model_len": "--max-model-len", "kv_cache_memory_bytes": "--kv-cache-memory-bytes",
               "gpu_memory_utilization": "--gpu-memory-utilization", "max_num_seqs": "--max-num-seqs",
               "max_num_batched_tokens": "--max-num-batched-tokens", "kv_cache_dtype": "--kv-cache-dtype",
               "tensor_parallel_size": "--tensor-parallel-size", "max_cudagraph_capture_size": "--max-cudagraph-capture-size"}
    for key, flag in mapping.items():
        if key in a:
            tokens += [flag, a[key]]
    for key, flag in (("enforce_eager", "--enforce-eager"), ("enable_prefix_caching", "--enable-prefix-caching")):
        if a.get(key) == "True":
            tokens.append(flag)
    if fig.max_model_len and "max_model_len" not in a:
        tokens += ["--max-model-len", str(fig.max_model_len)]
    version = fig.vllm_version or planner.DEFAULT_VLLM
    cat = load_catalog()
    recipe, profile = cat.model(model), _profile(cat, gpu)
    spec = resolve(Request(recipe=recipe, profile=profile, overrides=tokens, force=True))
    flags = va.parse_args(spec.vllm_args)
    s = planner.settings_from_flags(flags, spec.env)
    plan = planner.predict(recipe, profile, s, vllm_version=version)
    rec = cal.compare(plan, fig, log_file.name)
    path = cal.save(rec)
    out = {**asdict(rec), "file": str(path)}
    if as_json:
        emit_json(out)
        return
    console.print(f"{rec.recipe} on {rec.profile}, vLLM {rec.vllm_version or '?'}: KV cache size measured "
                  f"{rec.measured_kv_tokens if rec.measured_kv_tokens is not None else '?'} vs predicted {rec.predicted_kv_tokens} tokens",
                  highlight=False)
    console.print(f"correction stored: {rec.overhead_mib:+.1f} MiB non-KV overhead -> {path}", highlight=False)
