"""`plan` and `calibrate` as functions: a recipe, a profile and the user's vLLM flags -> a Plan; a real
start-up log -> a stored correction. The commands only parse and print."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from servectl.catalog.load import load_catalog
from servectl.errors import UserError
from servectl.plan import calibrate as cal
from servectl.plan import planner, vllm_log
from servectl.plan.checkpoint import cached_checkpoint, weight_bytes
from servectl.spec.resolve import Request, resolve
from servectl.vllmenv import args as va

# vLLM flags that change memory, as vLLM spells them (plus their dotted / negated forms).
MEMORY_FLAGS = (
    "--gpu-memory-utilization", "--kv-cache-memory-bytes", "--max-model-len", "--max-num-seqs",
    "--max-num-batched-tokens", "--max-cudagraph-capture-size", "--enforce-eager", "--limit-mm-per-prompt",
    "--skip-mm-profiling", "--kv-cache-dtype", "--tensor-parallel-size", "--enable-prefix-caching",
    "--no-enable-prefix-caching",
)
ESTIMATE_ENV = "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"


def check_memory_flags(tokens: list[str]) -> None:
    try:
        flags = va.parse_args(tokens)
    except ValueError as exc:
        raise UserError(f"cannot read the vLLM flags: {exc}") from None
    for f in flags:
        name = va.canonical(f.name)
        if name not in MEMORY_FLAGS and not name.startswith("--limit-mm-per-prompt."):
            raise UserError(f"{f.name} is not a vLLM memory flag servectl plan knows",
                            "memory flags: " + " ".join(MEMORY_FLAGS))


def profile_for(cat, gpu: str | None):
    if gpu:
        return cat.gpu(gpu)
    from servectl.console import info
    from servectl.hardware.detect import detect
    from servectl.hardware.matching import choose_profile

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
    recipe, profile = cat.model(model), profile_for(cat, gpu)
    spec = resolve(Request(recipe=recipe, profile=profile, overrides=list(vllm_tokens), preset=preset))
    flags = va.parse_args(spec.vllm_args)
    run_env = {**spec.env, **(env or {})}
    if estimate is not None:
        run_env[ESTIMATE_ENV] = "1" if estimate else "0"
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
        plan = plan.model_copy(update={"env": {ESTIMATE_ENV: "1" if s.estimate_cudagraphs else "0"}})
    plan = plan.model_copy(update={"notes": notes + plan.notes})
    if plan.budget["kv_available"] <= 0:
        raise UserError(f"{recipe.name} does not fit on {profile.name}: weights and overheads exceed the budget by "
                        f"{-plan.budget['kv_available']:.0f} MiB",
                        "raise --gpu-memory-utilization, lower --max-num-batched-tokens, or pick a larger GPU")
    if not plan.fits:
        fit = planner.predict(recipe, profile, replace(s, max_model_len_auto=True), vllm_version=planner.FIT_VLLM,
                              correction=correction).max_model_len
        raise UserError(f"max_model_len {plan.max_model_len} does not fit in the {plan.num_blocks} KV blocks on {profile.name}",
                        f"the largest context that fits is --max-model-len {fit}" if fit > 0 else "pick a larger GPU")
    return plan


def calibrate_from_log(model: str, gpu: str | None, log_file: Path) -> tuple[cal.CalibrationRecord, Path]:
    """Plan the flags a real start used, compare with what it logged, store the correction."""
    fig = vllm_log.parse_text(Path(log_file).read_text(errors="replace"))
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
    recipe, profile = cat.model(model), profile_for(cat, gpu)
    spec = resolve(Request(recipe=recipe, profile=profile, overrides=tokens, force=True))
    flags = va.parse_args(spec.vllm_args)
    s = planner.settings_from_flags(flags, spec.env)
    plan = planner.predict(recipe, profile, s, vllm_version=version)
    rec = cal.compare(plan, fig, Path(log_file).name)
    path = cal.save(rec)
    return rec, path
