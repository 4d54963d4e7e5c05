"""The server's watchdog: starts `vllm serve` and stops its whole process group when servectl dies.

Why a process of its own: vLLM runs in its own session (so Ctrl-C in the terminal reaches servectl
only), hence nothing kills it when servectl is SIGKILLed. PR_SET_PDEATHSIG would reach the API
server only, not EngineCore and the workers it forks, and a check from the server side needs code
inside vLLM. So servectl starts this script (stdlib only, `python -I`, its own session), which
starts the server itself: no instant exists where the server runs and nobody answers for it.
servectl holds the write end of the watchdog's stdin; the kernel closes it whenever servectl
exits, however it exits. On EOF the watchdog SIGTERMs the group (pgid == the server's pid), waits
the grace period and SIGKILLs what is left. `release` on stdin (a detached `up` that succeeded)
disarms it and it exits, leaving the server to `servectl down`.

Protocol: argv = GRACE_S LOG_PATH CMD...; first stdout line `pid N` or `error TEXT`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_group(pgid: int, child: subprocess.Popen, grace_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            child.poll()  # reap the leader so it does not keep the group alive as a zombie
            if not group_exists(pgid):
                return
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    grace_s, log_path, cmd = float(argv[0]), argv[1], argv[2:]
    with open(log_path, "ab") as log:
        try:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True)
        except OSError as exc:
            print(f"error {exc.strerror or exc}", flush=True)
            return 1
    print(f"pid {child.pid}", flush=True)
    while True:
        readable, _, _ = select.select([0], [], [], 0.2)
        if readable:
            data = os.read(0, 64)
            if not data:  # servectl is gone (or is done with the server): nothing may outlive it
                stop_group(child.pid, child, grace_s)
                return 0
            if b"release" in data:
                return 0
        if child.poll() is not None and not group_exists(child.pid):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
