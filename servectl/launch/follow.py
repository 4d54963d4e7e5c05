"""Following a server: its start-up (vLLM's phases from the log, /health, the deadline) and, for a foreground
`up`, its life until it exits. Progress goes to the caller's events; nothing is printed here."""

from __future__ import annotations

import time

from servectl.launch import runners, startup
from servectl.launch.events import Events, PhaseReached, StartupBegan, StartupEnded, StartupWaiting
from servectl.launch.ports import base_url, held_by_another
from servectl.spec.models import LaunchSpec


def start_up(
    runner: runners.Runner, launched: runners.Launched, spec: LaunchSpec, timeout_s: float, events: Events
) -> startup.StartupResult:
    """The readiness wait: each phase of vLLM's start-up as it is reached, and the seconds waited so far."""
    health = base_url(spec.host, spec.port) + "/health"
    # A local server must be the one on the port; a container's port is published by Docker's proxy.
    pid = launched.pid
    listening = (lambda: not held_by_another(spec.port, pid)) if launched.runtime == "local" and pid else (lambda: True)
    t0 = time.monotonic()

    def alive() -> bool:
        events(StartupWaiting(time.monotonic() - t0))
        return runner.alive(launched)

    def on_phase(pid: str, at: float) -> None:
        events(PhaseReached(startup.PHASE_LABELS[pid], at))

    events(StartupBegan(spec.model))
    result = None
    try:
        result = startup.wait_ready(launched.log_path, alive, health, timeout_s, on_phase=on_phase, listening=listening)
    finally:
        events(StartupEnded(result is not None and result.ready))
    return result


def while_alive(runner: runners.Runner, launched: runners.Launched, poll_s: float = 0.1) -> None:
    """Return when the server exits (a foreground `up` serves until then, or until Ctrl-C)."""
    while runner.alive(launched):
        time.sleep(poll_s)
