"""The planner's edge: which vLLM release and host a plan is for, the user's whole vLLM command line, and the
starts it learns from. `plan`, `calibrate --log` and the launch (servectl.launch) call these; the memory model
(servectl.plan.planner) stays pure."""

from __future__ import annotations

import math
import os

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from servectl.catalog import versions
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.load import load_catalog
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.hardware.cpu_features import CpuFeatures
from servectl.plan import planner
from servectl.plan.models import Plan
from servectl.plan.request import PlanRequest
from servectl.spec import guards, known_bug_guards
from servectl.spec.models import LaunchSpec
from servectl.spec.resolve import Request, resolve
from servectl.spec.speculative import image_version
from servectl.vllmenv import args as va

if TYPE_CHECKING:  # calibration, vLLM's log and the checkpoint's headers load only where a command uses them
    from servectl.plan import calibrate as cal
    from servectl.plan import vllm_log

# vLLM flags that change memory, as vLLM spells them (plus their dotted / negated forms).
MEMORY_FLAGS = (
    "--gpu-memory-utilization",
    "--kv-cache-memory-bytes",
    "--max-model-len",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--max-cudagraph-capture-size",
    "--enforce-eager",
    "--limit-mm-per-prompt",
    "--skip-mm-profiling",
    "--kv-cache-dtype",
    "--tensor-parallel-size",
    "--enable-prefix-caching",
    "--no-enable-prefix-caching",
    "--mamba-ssm-cache-dtype",
    "--block-size",
    "--speculative-config",
    "--dtype",
    "--disable-hybrid-kv-cache-manager",
    "--no-disable-hybrid-kv-cache-manager",
    "--async-scheduling",
    "--no-async-scheduling",
    "--pipeline-parallel-size",
    "--disable-sliding-window",
)
ESTIMATE_ENV = "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"
# environment variables of the user's shell that change what vLLM does with memory
PLAN_ENV = (
    ESTIMATE_ENV,
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN",
    "VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE",
)


def is_memory_flag(name: str) -> bool:
    c = va.canonical(name)
    return c in MEMORY_FLAGS or c.startswith("--limit-mm-per-prompt.")


def command_tokens(tokens: list[str]) -> list[str]:
    """A vLLM command line as users write it -> its flag tokens (`vllm serve MODEL`, `serve MODEL` or
    `python -m vllm.entrypoints.openai.api_server` in front are dropped)."""
    toks = list(tokens)
    if toks and toks[0] in ("vllm", "python", "python3"):
        toks = toks[1:]
        if toks[:2] == ["-m", "vllm.entrypoints.openai.api_server"]:
            toks = toks[2:]
    if toks and toks[0] == "serve":
        toks = toks[1:]
    if toks and not toks[0].startswith("-"):
        toks = toks[1:]  # the model; the recipe names it
    try:
        va.parse_args(toks)
    except ValueError as exc:
        raise UserError(f"cannot read the vLLM flags: {exc}", "write them as vLLM does: --flag value") from None
    return toks


def written_vllm_flags(written: list[str], after_separator: int, own_options: list[str]) -> tuple[list[str], list[str]]:
    """(the vLLM flag tokens, warnings) of what follows the model on `plan`'s command line. Before `--`, a
    flag neither vLLM nor plan knows is refused with did-you-mean over both (a typo of plan's own
    --target-context must not pass for a vLLM flag); the last `after_separator` tokens came after `--`:
    flags vLLM's table lacks are only warned about (another release may have them)."""
    head, tail = written[: len(written) - after_separator], written[len(written) - after_separator :]
    head_tokens, tail_tokens = command_tokens(head), command_tokens(tail)
    table = va.bundled_options()
    warnings = []
    for name in va.unknown_flags(va.parse_args(head_tokens)):
        import difflib

        base = name.split(".", 1)[0]
        close = difflib.get_close_matches(base, own_options, n=1, cutoff=0.7) or table.suggest(base)
        hint = (
            f"did you mean {' or '.join(close)}?" if close else "`servectl plan --help` and `vllm serve --help` list the options"
        )
        raise UserError(f"no such option: {name} (neither plan's nor vLLM {table.vllm}'s)", hint)
    unknown = va.unknown_flags(va.parse_args(tail_tokens))
    if unknown:
        warnings.append(f"not checked against the target's vLLM: {', '.join(unknown)} (unknown to vLLM {table.vllm})")
    return head_tokens + tail_tokens, warnings


def split_memory_flags(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(tokens of the flags that change memory, tokens of the others)."""
    mem: list[va.Flag] = []
    other: list[va.Flag] = []
    for f in va.parse_args(tokens):
        (mem if is_memory_flag(f.name) else other).append(f)
    return va.to_tokens(mem), va.to_tokens(other)


@dataclass(frozen=True)
class Target:
    """The vLLM that will run a plan: its release (and why) and, for the cpu profile, the host's CPU features."""

    version: str
    version_reason: str
    host: CpuFeatures
    python: Path | None = None  # the local vLLM environment's interpreter, when it is what runs the plan


def _local_environment(python: str | None, profile: GpuProfile | None = None, recipe: ModelRecipe | None = None):
    """(interpreter, vllmenv.pyenv.Target) of the local vLLM environment for the profile's platform (and the
    recipe's releases), or (None, None)."""
    from servectl.vllmenv.location import find_vllm_python
    from servectl.vllmenv.pyenv import from_python

    try:
        py = find_vllm_python(python, recipe=recipe, profile=profile)
        return py, from_python(py)
    except UserError:
        return None, None


def target_for(
    profile: GpuProfile,
    *,
    override: str | None = None,
    image: str | None = None,
    python: str | None = None,
    runtime: str | None = None,
    env_target=None,
    recipe: ModelRecipe | None = None,
) -> Target:
    """The release that will run (`--vllm-version`, the environment's installed vLLM, or the image tag's) and, on
    the cpu profile, the CPU features that environment's torch reports (/proc/cpuinfo without one)."""
    from servectl.hardware.cpu_features import probe

    cpu = profile.vendor == "cpu"
    py, env = (None, None)
    if runtime != "docker":
        py, env = (env_target.python, env_target) if env_target is not None else _local_environment(python, profile, recipe)
    installed = versions.installed_vllm(env.versions) if env is not None else None
    version, why = versions.that_runs(
        override=override,
        installed=installed,
        cpu_profile=cpu,
        image=image or (profile.container.image if profile.container else None),
    )
    local = installed is not None and why.startswith("the vLLM environment")
    host = probe(str(py) if (py and local) else None) if cpu else CpuFeatures(source="not a CPU plan")
    return Target(version, why, host, Path(py) if (py and local) else None)


def plan_for(
    recipe: ModelRecipe,
    profile: GpuProfile,
    vllm_args: list[str],
    env: dict[str, str],
    target: Target,
    *,
    weights_gib: float | None = None,
    calibrated: bool = True,
) -> Plan:
    """The forward plan for a launch's whole vLLM argv (flags that do not change memory are ignored)."""
    mem, _ = split_memory_flags(vllm_args)
    s = planner.settings_from_flags(va.parse_args(mem), env)
    correction = None
    if calibrated:
        from servectl.plan import calibrate as cal

        correction = cal.correction_for(recipe.name, profile.name, target.version)
    return planner.predict(
        recipe,
        profile,
        s,
        vllm_version=target.version,
        correction=correction,
        host=target.host,
        weights_gib=weights_gib,
        flags=vllm_args,
    )


def render_target(profile: GpuProfile, image: str | None) -> list[Target]:
    """The vLLM a rendering will meet, known only by its image: the release its tag names, and for the cpu
    profile every host feature set vLLM's CPU rules tell apart (the rendering runs on a host not seen here)."""
    version, why = versions.that_runs(
        image=image or (profile.container.image if profile.container else None), cpu_profile=profile.vendor == "cpu"
    )
    if profile.vendor != "cpu":
        return [Target(version, why, CpuFeatures(source="not a CPU plan"))]
    return [
        Target(version, why, CpuFeatures(avx512_bf16=bf16, amx=amx, source="any host"))
        for bf16 in (False, True)
        for amx in (False, True)
    ]


def settle_max_num_seqs(spec: LaunchSpec, targets: list[Target], *, calibrated: bool = True) -> LaunchSpec:
    """servectl's own settings promise only what the KV cache holds. Without --max-num-seqs in the flags, vLLM
    takes its default (128 per rank on CPU, 256 or 1024 on GPUs): when the plan says the KV cache holds fewer
    requests of max_model_len than that (the smallest figure over `targets`), the launch gets
    --max-num-seqs N with N the whole requests it holds, and a note saying so; when the plan cannot say, a
    note says why and vLLM's default stays. A card's launch is its card's, verbatim."""
    if spec.card or va.has(va.parse_args(spec.vllm_args), "--max-num-seqs"):
        return spec
    recipe, profile = spec.model_recipe, spec.gpu_profile
    tp = int(va.get(va.parse_args(spec.vllm_args), "--tensor-parallel-size") or 1)
    default = planner.batch_defaults(profile, world_size=tp)[1]
    try:
        capacity = min(
            plan_for(recipe, profile, spec.vllm_args, spec.env, t, calibrated=calibrated).max_concurrency for t in targets
        )
    except UserError as exc:
        return replace(
            spec,
            notes=[
                *spec.notes,
                f"--max-num-seqs left to vLLM's default ({default}): the plan cannot "
                f"say how many requests the KV cache holds ({exc.message})",
            ],
        )
    n = math.floor(capacity)
    if n >= default:
        return spec
    if n < 1:
        return replace(
            spec,
            notes=[
                *spec.notes,
                f"--max-num-seqs left to vLLM's default ({default}): the KV cache holds "
                f"{capacity:.2f} requests of max_model_len, not one",
            ],
        )
    note = (
        f"--max-num-seqs {n}: the plan's KV cache holds {capacity:.2f} requests of max_model_len "
        f"(vLLM's default of {default} would be preempted); pass --max-num-seqs to choose yourself"
    )
    return replace(spec, vllm_args=[*spec.vllm_args, "--max-num-seqs", str(n)], notes=[*spec.notes, note])


def launch_spec(req: Request) -> LaunchSpec:
    """resolve() and then servectl's choice of --max-num-seqs for a rendering (no host known: the image's release,
    every CPU feature set, no calibration): what `render` and the golden files use."""
    spec = resolve(req)
    return settle_max_num_seqs(spec, render_target(spec.gpu_profile, spec.image), calibrated=False)


def predicted_kv_tokens(
    recipe: ModelRecipe, profile: GpuProfile, vllm_args: list[str], env: dict[str, str], target: Target
) -> int | None:
    """What the plan says vLLM will log as its KV cache size (None where vLLM would refuse these flags)."""
    try:
        return plan_for(recipe, profile, vllm_args, env, target).kv_cache_tokens_logged
    except UserError:
        return None


def default_block_size(profile: GpuProfile, vllm_args: list[str]) -> int:
    """The block vLLM keeps when it logs no alignment line: --block-size, else the platform's (CPU 128, GPU 16)."""
    raw = va.get(va.parse_args(split_memory_flags(vllm_args)[0]), "--block-size")
    return int(raw) if raw else (128 if profile.vendor == "cpu" else 16)


def learn_from_start(
    recipe: ModelRecipe,
    profile: GpuProfile,
    vllm_args: list[str],
    env: dict[str, str],
    target: Target,
    log_text: str,
    source: str,
) -> cal.CalibrationRecord | None:
    """Store what a start that reached vLLM's KV cache line measured (None when it did not get there)."""
    from servectl.plan import calibrate as cal
    from servectl.plan import vllm_log

    fig = vllm_log.parse_text(log_text)
    if fig.kv_cache_tokens is None and fig.available_kv_gib is None:
        return None
    t = replace(target, version=(fig.vllm_version or target.version).split("+")[0])
    try:
        plan = plan_for(recipe, profile, vllm_args, env, t, calibrated=False)
    except UserError:
        return None
    return cal.save(cal.compare(plan, fig, source, default_block_size=default_block_size(profile, vllm_args)))


def _recipe(cat, model: str | ModelRecipe) -> ModelRecipe:
    """A recipe given as such (servectl.plan.any_model resolved it: a repo, a directory, a recipe of one's own), or a
    catalog name."""
    return model if isinstance(model, ModelRecipe) else cat.model(model)


def profile_for(cat, gpu: str | None, detected=None):
    """--gpu's profile, else the one the caller detected (servectl.hardware.models.Choice), else the one matched
    to this machine here; the cpu profile with this host's memory."""
    from servectl.hardware.cpu_memory import for_this_host

    if gpu:
        return for_this_host(cat.gpu(gpu))
    if detected is None:
        from servectl.hardware.matching import choose_for_this_machine

        detected = choose_for_this_machine(cat)
    return for_this_host(detected.profile)


def _vllm_parser_verdict(target: Target, tokens: list[str]) -> str | None:
    """vLLM's own parser on the flags, where the vLLM that will run them is installed here."""
    if target.python is None or not tokens:
        return None
    from servectl.vllmenv.vllm_parser import vllm_parse

    return vllm_parse([tokens], target.python)[0]


def build(req: PlanRequest, *, target: Target | None = None) -> Plan:
    """Recipe settings for the profile + the user's whole vLLM command line -> what the vLLM that will run does.

    nodes >= 2: the multi-node layout (tensor parallel = the profile's GPUs, pipeline parallel = nodes), planned
    per rank and split per node (plan.multinode); the plan's `nodes` block carries it. A caller planning many
    command lines for one target passes it (then vLLM's parser is not asked again).

    Raises UserError where servectl's guard table refuses (spec.guards; `force` as render's and up's --force) and
    where vLLM itself refuses (its parser, or its start-up checks: planner.VllmRefuses)."""
    cat = load_catalog()
    detected = req.detected
    if req.gpu is None and detected is None:
        from servectl.hardware.matching import choose_for_this_machine

        detected = choose_for_this_machine(cat)
    recipe, profile = _recipe(cat, req.model), profile_for(cat, req.gpu, detected)
    # the preset detected with the profile is the one planned (the profile's default only under --gpu)
    preset = req.preset or (detected.preset if req.gpu is None else None)
    model_path, vllm_version, nodes, env = req.model_path, req.vllm_version, req.nodes, req.env
    if req.own_options is None:
        tokens, tail_warnings = command_tokens(list(req.vllm_tokens)), list[str]()
    else:
        tokens, tail_warnings = written_vllm_flags(list(req.vllm_tokens), req.after_separator, list(req.own_options))
    _, other_tokens = split_memory_flags(tokens)
    # servectl's guard table, as for render and up: the same refusals, messages and --force rule
    from servectl.plan import calibrate as cal
    from servectl.plan.checkpoint import cached_checkpoint, weight_bytes

    local = model_path or recipe.model_path
    checkpoint = Path(local) if local else cached_checkpoint(recipe.repo)
    headers = weight_bytes(checkpoint) if checkpoint is not None else None
    request = Request(
        recipe=recipe,
        profile=profile,
        overrides=tokens,
        preset=preset,
        force=req.force,
        speculative=req.speculative,
        vllm_version=vllm_version,
        nodes=nodes,
        known_bugs=False,
        checkpoint_mtp=bool(headers[1]) if headers is not None else None,
    )
    spec = resolve(request)
    # a caller planning many command lines for one target passes it (then vLLM's parser is not asked again)
    given = target is not None
    target = target or target_for(profile, override=vllm_version, image=spec.image, python=req.python, recipe=recipe)
    if vllm_version is None and target.version and target.version != image_version(spec.image):
        # servectl's settings follow the release that runs (parsers, MTP, known-bug workarounds), not the image's
        spec = resolve(replace(request, vllm_version=target.version))
    # known bugs of the release the plan is for, under the same --force rule as servectl's own guards
    spec = settle_max_num_seqs(spec, [target])  # as `up` will launch it on this host
    bugs = known_bug_guards.check(
        recipe,
        profile,
        va.parse_args(spec.vllm_args),
        {**known_bug_guards.caller_env(dict(os.environ)), **spec.env},
        target.version,
    )
    spec = replace(spec, warnings=[*spec.warnings, *bugs.warnings, *guards.enforce(bugs.violations, req.force)])
    verdict = None if given else _vllm_parser_verdict(target, tokens)
    if verdict:
        raise UserError(f"vLLM {target.version} rejects the flags: {verdict}", "fix or drop the flag vLLM names")
    run_env = {**spec.env, **env}
    if req.estimate is not None:
        run_env[ESTIMATE_ENV] = "1" if req.estimate else "0"
    s = planner.settings_from_flags(va.parse_args(split_memory_flags(spec.vllm_args)[0]), run_env)
    derived_notes: list[str] = []
    arch = recipe.architecture
    if s.kv_cache_dtype == "auto" and arch.kv_cache_dtype != "auto":
        s = replace(s, kv_cache_dtype=arch.kv_cache_dtype)
        derived_notes.append(
            f"KV cache {arch.kv_cache_dtype}: the checkpoint's quantization_config asks for it "
            "(vLLM resolves --kv-cache-dtype auto to it)"
        )
    if arch.mla is not None and arch.mla.sparse and profile.vendor != "cpu":
        derived_notes.append("DeepSeek sparse attention: its indexer cache is not in these figures")
    if nodes is not None and nodes >= 2:
        s = replace(s, tensor_parallel_size=profile.count)  # render.multinode's layout: one TP group per node
    correction = cal.correction_for(recipe.name, profile.name, target.version)
    kw: planner.Inputs = {"vllm_version": target.version, "correction": correction, "host": target.host}
    notes: list[str] = [f"vLLM {target.version}: {target.version_reason}", *spec.notes]
    if profile.vendor == "cpu":
        notes.append(f"host CPU: {target.host.describe()}")
    notes += derived_notes
    if checkpoint is not None and headers is not None:
        loaded, skipped = headers
        kw["weights_gib"] = loaded / 2**30
        if skipped:
            kw["mtp_weights_gib"] = skipped / 2**30
        notes.append(
            f"weights {loaded / 2**30:.2f} GiB from the safetensors headers in {checkpoint}"
            + (f" ({skipped / 2**30:.2f} GiB of MTP head not loaded)" if skipped else "")
        )
    if req.target_context:
        s, target_notes = planner.plan_for_target(
            recipe, profile, s, req.target_context, req.target_concurrency, ceiling_util=s.gpu_memory_utilization, **kw
        )
        notes += target_notes
    out_flags = va.to_tokens(planner.flags_for(va.parse_args(spec.vllm_args), s))
    plan = planner.predict(recipe, profile, s, flags=out_flags, **kw)
    plan = planner.with_guide(plan, recipe, profile, s, **kw)
    if s.num_speculative_tokens and recipe.architecture.mtp_layers:
        without = planner.predict(recipe, profile, replace(s, num_speculative_tokens=0), flags=out_flags, **kw)
        plan = replace(plan, speculative=speculative_summary(plan, without, s.num_speculative_tokens))
    if nodes is not None and nodes >= 2:
        from servectl.plan import multinode

        pinned = s.kv_cache_memory_bytes is not None or (profile.vendor == "cpu" and s.cpu_kvcache_space_gib is not None)
        lay = planner.layout_for(recipe, profile, s, **kw)
        plan = replace(plan, nodes=multinode.split(plan, recipe.architecture, lay, profile.count, nodes, pinned))
        notes.append(
            f"{nodes} nodes: tensor parallel {profile.count} x pipeline parallel {nodes}; figures above are per rank "
            "of a single stage holding every layer, `nodes` splits them per node"
        )
    calibrated = [n for n in plan.notes if n.startswith("calibrated from")]
    rest = [n for n in plan.notes if n not in calibrated]
    return replace(
        plan,
        notes=calibrated + notes + rest,
        ignored_flags=other_tokens,
        warnings=tail_warnings + list(spec.warnings) + plan.warnings,
    )


def speculative_summary(plan: Plan, without: Plan, depth: int) -> dict:
    """`plan --json` key `speculative`: the depth, the draft's MiB, and the same figures without speculation."""
    other = without.to_json()
    keys = ("kv_cache_tokens_logged", "kv_cache_tokens_real", "max_concurrency", "num_blocks", "total_vram_mib", "max_model_len")
    return {
        "method": "mtp",
        "num_speculative_tokens": depth,
        "budget_mib": round(plan.budget.get("speculative", 0.0), 1),
        "without": {**{k: other[k] for k in keys}, "budget": other["budget"]},
    }


_LOG_SWITCHES = ("enforce_eager", "enable_prefix_caching")


def _tokens_from_log(fig: vllm_log.LogFigures) -> list[str]:
    """The memory flags a start used, from vLLM's "non-default args" line (the keys vllm_log reads; a key is
    its flag's EngineArgs name)."""
    from servectl.plan import vllm_log

    tokens: list[str] = []
    for key in vllm_log.ARG_KEYS:
        if key in fig.args and key not in _LOG_SWITCHES:
            tokens += ["--" + key.replace("_", "-"), fig.args[key]]
    for key in _LOG_SWITCHES:
        if fig.args.get(key) == "True":
            tokens.append("--" + key.replace("_", "-"))
    if fig.max_model_len and "max_model_len" not in fig.args:
        tokens += ["--max-model-len", str(fig.max_model_len)]
    return tokens


def calibrate_from_log(
    model: str | ModelRecipe, gpu: str | None, log_file: Path, host: str | None = None, detected=None
) -> tuple[cal.CalibrationRecord, Path]:
    """Plan the flags a real start used (for the release it logged), compare with what it logged, store the start
    for (recipe, profile, release, host)."""
    from servectl.fsutil import read_log
    from servectl.plan import calibrate as cal
    from servectl.plan import vllm_log

    excerpt = read_log(log_file, str(log_file))  # any size: its start and its end, memory bounded
    fig = vllm_log.parse_text(f"{excerpt.head}\n{excerpt.tail}" if excerpt.head else excerpt.tail)
    if fig.kv_cache_tokens is None and fig.available_kv_gib is None:
        raise UserError(
            f"{Path(log_file).name} has no KV cache line (GPU/CPU KV cache size, Available KV cache memory)",
            "pass the log of a vLLM start that reached the KV cache allocation",
        )
    cat = load_catalog()
    recipe, profile = _recipe(cat, model), profile_for(cat, gpu, detected)
    spec = resolve(Request(recipe=recipe, profile=profile, overrides=_tokens_from_log(fig), force=True))
    target = target_for(profile, image=spec.image)
    if fig.vllm_version:
        target = replace(target, version=fig.vllm_version.split("+")[0], version_reason="the log's engine line")
    plan = plan_for(recipe, profile, spec.vllm_args, spec.env, target, calibrated=False)
    rec = cal.compare(plan, fig, Path(log_file).name, host=host, default_block_size=default_block_size(profile, spec.vllm_args))
    rec = cal.save(rec)
    return rec, cal.calibration_dir() / f"{rec.profile}.json"
