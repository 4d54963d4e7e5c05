"""Proof that a process is servectl's own, checked before every signal servectl sends.

A deployment gets a marker when it starts: `NAME:RANDOM` (`new_marker`), put into the environment of
the process group servectl starts as SERVECTL_DEPLOYMENT_ID (every process vLLM forks inherits it) and
into the deployment record. A process is the deployment's own only when all of these hold:
- its pid is not 0 or 1 and not servectl's own, and it runs as this user (never another user's);
- its environment (/proc/PID/environ, read with a size limit) carries SERVECTL_DEPLOYMENT_ID=MARKER as a
  whole entry, and the marker names the deployment whose record asks (a record cannot borrow another
  deployment's marker);
- for the pid a record names, also its create time (a PID the kernel reused fails it).
The server is started with SPT_NOENV=1 too: vLLM names its processes with the setproctitle package, which
would otherwise write the title over the memory /proc/PID/environ shows (a process whose marker cannot be
read is never signalled, so without it EngineCore would outlive `down`).
The signal is sent through a pidfd opened before the checks (Linux >= 5.3), so the process checked is
the process signalled, even if it exits in between and its PID is reused. Nothing is ever sent to a
process group as a whole (`killpg`): a group id can outlive its processes and be taken by a stranger.

Reuse: `proof_problem(pid, create_time, marker)` -> None or why not; `marked(marker)` lists a
deployment's live processes; `send(pid, sig, marker)` signals one after checking; `stop(marker, grace_s)`
SIGTERMs them all and SIGKILLs what is left after the grace period.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import time

MARKER_ENV = "SERVECTL_DEPLOYMENT_ID"
ENVIRON_LIMIT = 8 * 2**20  # a process environment is at most ARG_MAX (2 MiB on Linux) plus strings
# /proc create times are in clock ticks (10 ms); a reused PID starts at least a tick later.
CREATE_TIME_TOLERANCE_S = 0.05


def new_marker(name: str) -> str:
    """A fresh marker for deployment NAME: its name and 128 random bits."""
    return f"{name}:{secrets.token_hex(16)}"


def marker_names(marker: str | None, name: str) -> bool:
    """Whether `marker` is well formed and belongs to deployment `name`."""
    if not isinstance(marker, str) or ":" not in marker:
        return False
    owner, _, token = marker.rpartition(":")
    return owner == name and len(token) == 32 and all(c in "0123456789abcdef" for c in token)


def _environ(pid: int) -> bytes | None:
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(ENVIRON_LIMIT + 1)
    return None if len(data) > ENVIRON_LIMIT else data


def carries(pid: int, marker: str) -> bool:
    """Whether the process's environment has SERVECTL_DEPLOYMENT_ID=MARKER as one whole entry (never for an
    empty marker)."""
    if not marker:
        return False
    env = _environ(pid)
    if env is None:
        return False
    entry = f"{MARKER_ENV}={marker}".encode()
    return entry in env.split(b"\0")


def _proc(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except (psutil.Error, ValueError, OverflowError):
        return None


def _ours(proc) -> bool:
    import psutil

    try:
        return proc.uids().real == os.getuid() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def proof_problem(pid, create_time, marker) -> str | None:
    """None when the process `pid` is provably the deployment's own (see the module doc); else why not.
    A process that is gone is no problem of proof: there is nothing to signal (`is_gone` tells)."""
    if not isinstance(marker, str) or not marker:
        return "the record carries no deployment marker"
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return f"pid {pid!r} is not a process servectl starts"
    if pid == os.getpid():
        return f"pid {pid} is servectl itself"
    if not isinstance(create_time, (int, float)) or isinstance(create_time, bool) or not math.isfinite(create_time):
        return "the record carries no create time"
    proc = _proc(pid)
    if proc is None:
        return None
    import psutil

    try:
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE_S:
            return f"pid {pid} now belongs to another process (its create time differs)"
        if proc.uids().real != os.getuid():
            return f"pid {pid} belongs to another user"
    except psutil.Error:  # it went away while being read: nothing is left to signal
        return None
    if not carries(pid, marker):
        return f"process {pid} does not carry this deployment's marker in its environment"
    return None


def is_gone(pid) -> bool:
    return not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or _proc(pid) is None


def marked(marker: str) -> list[int]:
    """Live processes of this user (not servectl itself, never pid 1) whose environment carries the marker."""
    import psutil

    out = []
    me = os.getpid()
    for proc in psutil.process_iter():
        pid = proc.pid
        if pid <= 1 or pid == me or not _ours(proc):
            continue
        if carries(pid, marker):
            out.append(pid)
    return out


def send(pid: int, sig: int, marker: str) -> bool:
    """Signal `pid` if, at the moment of sending, it is this user's process carrying the marker. The pidfd
    is opened first, so the checks and the signal are about one process. False when nothing was sent."""
    if pid <= 1 or pid == os.getpid():
        return False
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False  # gone (or not allowed)
    try:
        proc = _proc(pid)
        if proc is None or not _ours(proc) or not carries(pid, marker):
            return False
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                return False
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def stop(marker: str, grace_s: float, reap=None) -> list[int]:
    """SIGTERM every process carrying the marker, wait up to grace_s for them to go, SIGKILL what is left.
    `reap`: called while waiting (a caller's own child must be reaped to stop counting as alive).
    Returns the pids still alive at the end (empty: all gone)."""

    def left() -> list[int]:
        if reap is not None:
            reap()
        return marked(marker)

    pids = left()
    if not pids:
        return []
    for pid in pids:
        send(pid, signal.SIGTERM, marker)
    deadline = time.monotonic() + grace_s
    while (pids := left()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        send(pid, signal.SIGKILL, marker)
    deadline = time.monotonic() + 5
    while (pids := left()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids
