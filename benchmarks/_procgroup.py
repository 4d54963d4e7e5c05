"""Stopping a process group a benchmark started itself (a bare `vllm serve` to compare with): not servectl's
code path (servectl signals only processes that carry its marker, servectl.launch.ownership)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil

DEFAULT_GRACE_S = 15.0


def stop_child_group(popen: subprocess.Popen, grace_s: float = DEFAULT_GRACE_S) -> None:
    """Stop a process group the caller started itself (start_new_session) and holds the Popen of: the
    unreaped leader pins the group id, so the group cannot belong to anyone else until `wait` below.
    SIGTERM, up to grace_s, then SIGKILL; the leader is reaped last."""
    pgid = popen.pid

    def members() -> list[int]:
        out = []
        for proc in psutil.process_iter(["status"]):
            try:
                if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                    out.append(proc.pid)
            except (ProcessLookupError, psutil.Error, PermissionError):
                continue
        return out

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not members():
            break
        try:
            os.killpg(pgid, sig)  # safe: the leader is not reaped yet, so the group is still ours
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait_s
        while members() and time.monotonic() < deadline:
            time.sleep(0.1)
        else:
            if not members():
                break
    popen.wait()
