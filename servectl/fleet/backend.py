"""One fleet server's process, through the launch layer: claim its record, start it under the watchdog, follow
its start-up, stop it. Blocking (the front door runs these on worker threads).

Everything that starts or signals a process goes through servectl.launch (state.claim / runners / state.remove),
so a fleet's servers carry the same records, proof of ownership and watchdog as `servectl up`'s: `servectl status`
lists them, `servectl down NAME` stops one, and a front door that dies however it dies takes them with it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from servectl.errors import UserError
from servectl.fsutil import read_tail
from servectl.launch import ownership, runners, startup, state
from servectl.launch.ports import base_url, free_port, held_by_another
from servectl.launch.record import DeploymentRecord
from servectl.spec.models import LaunchSpec

LOG_TAIL_BYTES = 4 << 20  # a diagnosis reads the end of a log, never a whole one
STOP_GRACE_S = 15.0


@dataclass
class Running:
    """A server of the fleet that answered /health."""

    spec: LaunchSpec
    launched: runners.Launched
    runner: runners.SubprocessRunner
    record: DeploymentRecord
    startup_s: float

    @property
    def url(self) -> str:
        return base_url(self.spec.host, self.spec.port)

    def alive(self) -> bool:
        return self.runner.alive(self.launched)


@dataclass
class Failed:
    """A start that did not get to ready: why, and the log text the diagnosis reads."""

    why: str
    log_text: str
    log_path: Path
    elapsed_s: float


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last `limit` bytes of a log, as text ("" when it cannot be read)."""
    try:
        return read_tail(path, limit)
    except (OSError, UserError):
        return ""


def start(
    spec: LaunchSpec, executable: list[str], fleet_label: str, timeout_s: float, cancelled: threading.Event, on_started=None
) -> Running | Failed:
    """Start one server on a free port and wait until it is ready. The record is claimed first (a live deployment
    of the same name refuses: UserError); a start that fails, times out or is cancelled stops what it started and
    removes its record before returning Failed."""
    spec = replace(spec, port=free_port(spec.host))
    log_path = state.log_path_for(spec.name)
    me = psutil.Process()
    record = DeploymentRecord(
        name=spec.name,
        runtime="local",
        recipe=spec.recipe,
        profile=spec.profile,
        model=spec.model,
        served_model_name=spec.served_model_name,
        host=spec.host,
        port=spec.port,
        log_path=str(log_path),
        argv=[],
        started_at=time.time(),
        owner_pid=me.pid,
        owner_create_time=me.create_time(),
        fleet=fleet_label,
        marker=ownership.new_marker(spec.name),
    )  # the proof every later signal is checked against
    state.claim(record)
    runner = runners.SubprocessRunner(executable)
    launched = None
    try:
        launched = runner.start(spec, log_path, marker=record.marker)
        pid = launched.pid or 0  # a local start always has one
        if on_started is not None:
            on_started(launched, runner)
        record = record.model_copy(update={"pid": launched.pid, "create_time": launched.create_time, "argv": launched.argv})
        state.save(record)
        result = startup.wait_ready(
            log_path,
            lambda: runner.alive(launched) and not cancelled.is_set(),
            base_url(spec.host, spec.port) + "/health",
            timeout_s,
            listening=lambda: not held_by_another(spec.port, pid),
        )
        if not result.ready:
            runner.stop(launched, grace_s=5)
            state.remove(spec.name)
            why = (
                "cancelled (the fleet is stopping)"
                if cancelled.is_set()
                else f"vLLM exited during start-up (after {result.elapsed_s:.0f} s)"
                if result.failure == "exited"
                else f"vLLM was not ready within {timeout_s:.0f} s; stopped it"
            )
            return Failed(why, log_tail(log_path), log_path, result.elapsed_s)
        record = record.model_copy(update={"ready": True, "kv_cache_tokens_reported": result.kv_cache_tokens})
        state.save(record)
        return Running(spec, launched, runner, record, result.elapsed_s)
    except BaseException:
        if launched is not None:
            runner.stop(launched, grace_s=5)
        state.remove(spec.name)
        raise


def stop(run: Running, grace_s: float = STOP_GRACE_S) -> None:
    """Stop the server's whole process group (SIGTERM, SIGKILL after the grace) and remove its record."""
    run.runner.stop(run.launched, grace_s=grace_s)
    state.remove(run.spec.name)


def diagnosis(log_text: str, spec: LaunchSpec) -> str:
    """`servectl diagnose` on a failed start's log, in one line (root error, cause, remedy, fix)."""
    from servectl.launch.report import diagnosis_lines

    try:
        lines, _ = diagnosis_lines(log_text, spec)
    except Exception as exc:  # noqa: BLE001 - a diagnosis never hides the failure it explains
        return f"(no diagnosis: {type(exc).__name__})"
    return "; ".join(line.strip() for line in lines)
