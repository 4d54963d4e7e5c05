"""The flows around a launch: `servectl up` (launch, health-check, then serve in the foreground until the server
exits or Ctrl-C, or return detached; the preset proxy beside it) and `servectl demo` (the whole loop on this
machine's CPU). Nothing is left running unless detached. Progress goes to `events`; the CLI prints it."""

from __future__ import annotations

import signal
from pathlib import Path

from servectl.errors import CheckFailed, UserError
from servectl.fsutil import read_tail
from servectl.launch import follow, state
from servectl.launch.events import Events, HealthChecked, Message, Ready, ignore
from servectl.launch.ports import base_url, free_port
from servectl.launch.record import released
from servectl.launch.report import fail_start, health_report, summary
from servectl.launch.request import LaunchRequest
from servectl.launch.start import launch, tiny_model_path
from servectl.spec.models import proxy_port_for


def stop_on_sigterm() -> None:
    """SIGTERM / SIGHUP to a foreground `up` stop the server like Ctrl-C does."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread (CliRunner in a thread): leave as is
            pass


def up(req: LaunchRequest, events: Events = ignore) -> None:
    """`servectl up`: launch, health-check, then return (detached) or serve in the foreground until the server
    exits (StartFailed) or Ctrl-C."""
    req.check()
    proxy_port = proxy_port_for(req.port, req.proxy_port) if req.with_proxy else None  # before anything starts
    proxy_thread = None
    if not req.detach:
        stop_on_sigterm()
    ln = launch(req, events)
    url = base_url(ln.spec.host, ln.spec.port)
    keep = False
    try:
        report = health_report(url, ln.spec.served_model_name, ln.spec) if req.health_check else None
        if report is not None:
            events(HealthChecked(report))
            if not report.passed:
                raise CheckFailed(
                    f"{ln.spec.name} started but failed its health checks; stopped it", f"log: {ln.launched.log_path}"
                )
        events(Ready(summary(ln.record, ln.result, report)))
        if proxy_port is not None:
            from servectl.proxy.app import start_for_deployment

            proxy_thread = start_for_deployment(
                url, ln.spec.served_model_name or ln.spec.model, ln.spec.model_recipe.sampling_presets, ln.spec.host, proxy_port
            )
            events(Message(f"preset proxy: {proxy_thread.url}/v1 (models <served>-<preset>, `servectl presets list`)"))
        if req.detach:
            keep = True
            ln.runner.release(ln.launched)  # the watchdog lets go; the record loses its owner
            state.save(released(ln.record))
            events(Message(f"running detached; stop with `servectl down {ln.spec.name}`"))
            return
        events(Message("serving in the foreground; Ctrl-C stops it"))
        follow.while_alive(ln.runner, ln.launched)
        # Report first, clean up after: the leader is gone, its engine processes get a short grace.
        raise fail_start(
            ln.runner,
            ln.launched,
            ln.spec,
            read_tail(ln.launched.log_path),
            "vLLM exited while serving",
            grace_s=1,
            headline=f"vLLM server (pid {ln.launched.pid}) exited while serving",
        )
    except KeyboardInterrupt:
        events(Message("stopping vLLM ..."))
        raise
    finally:
        if proxy_thread is not None:
            proxy_thread.stop()
        if not keep:  # foreground, failed check or interrupt: no process left behind
            ln.runner.stop(ln.launched)
            state.remove(ln.spec.name)


def vllm_environment(python: str | None, events: Events = ignore) -> Path:
    """The CPU environment (find_vllm_python), bootstrapped when it is missing (demo)."""
    from servectl.catalog.load import load_catalog
    from servectl.vllmenv.location import find_vllm_python

    cpu = load_catalog().gpu("cpu")
    try:
        return find_vllm_python(python, profile=cpu)
    except UserError:
        if python:
            raise
    from servectl.vllmenv.bootstrap import Request as BootstrapRequest
    from servectl.vllmenv.bootstrap import bootstrap

    events(Message("setting up the vLLM CPU environment (one time, a few minutes) ..."))
    bootstrap(BootstrapRequest(cpu=True))
    return find_vllm_python(None, profile=cpu)


def demo(port: int | None, python: str | None, timeout_s: float, events: Events = ignore) -> None:
    """`servectl demo`: vLLM environment, tiny model, up, check, down on this machine's CPU; CheckFailed unless
    the server passed its health checks."""
    events(Message("1/5 vLLM environment", "step"))
    py = vllm_environment(python, events)
    events(Message(f"    {py}"))
    events(Message("2/5 tiny model (generated locally, cached)", "step"))
    path = tiny_model_path(python=str(py))
    events(Message(f"    {path}"))
    port = port or free_port()
    events(Message(f"3/5 servectl up tiny-cpu --gpu cpu --port {port}", "step"))
    ln = launch(
        LaunchRequest(
            "tiny-cpu",
            gpu="cpu",
            port=port,
            python=str(py),
            timeout_s=timeout_s,
            name="tiny-cpu-demo",
            model_path=str(path),
            detach=True,
        ),
        events,
    )
    try:
        url = base_url("127.0.0.1", port)
        events(Message(f"4/5 servectl check {url}", "step"))
        report = health_report(url, ln.spec.served_model_name)
        events(HealthChecked(report))
        events(Ready(summary(ln.record, ln.result, report)))
    finally:
        events(Message("5/5 servectl down tiny-cpu-demo", "step"))
        ln.runner.stop(ln.launched)
        state.remove(ln.spec.name)
    if not report.passed:
        raise CheckFailed("the demo server did not pass its health checks", f"log: {ln.record.log_path}")
    events(Message("demo passed: a real vLLM server served the tiny model and passed every check", "done"))
