"""The server's watchdog: starts `vllm serve` and stops its whole process group when servectl dies.

Why a process of its own: vLLM runs in its own session (so Ctrl-C in the terminal reaches servectl
only), hence nothing kills it when servectl is SIGKILLed. PR_SET_PDEATHSIG would reach the API
server only, not EngineCore and the workers it forks, and a check from the server side needs code
inside vLLM. So servectl starts this script (stdlib only, `python -I`, its own session), which
starts the server itself: no instant exists where the server runs and nobody answers for it.
servectl holds the write end of the watchdog's stdin; the kernel closes it whenever servectl
exits, however it exits. On EOF the watchdog SIGTERMs the server's processes, waits the grace period
and SIGKILLs what is left. `release` on stdin (a detached `up` that succeeded) disarms it and it exits,
leaving the server to `servectl down`.

Which processes are the server's: those of this user whose environment carries the deployment's marker
(SERVECTL_DEPLOYMENT_ID=MARKER, which the watchdog puts into the server's environment, not its own),
each checked just before its signal, sent through a pidfd (servectl.launch.ownership explains the rules;
this file repeats them in the standard library only, since it runs as `python -I` beside any vLLM).
No signal goes to a process group as a whole, none to pid 1.

Protocol: argv = GRACE_S LOG_PATH MARKER CMD...; first stdout line `pid N` or `error TEXT`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

MARKER_ENV = "SERVECTL_DEPLOYMENT_ID"
ENVIRON_LIMIT = 8 * 2**20


def marked_env(marker: str) -> dict[str, str]:
    """What the server's environment gets: the marker, and SPT_NOENV=1. vLLM names its processes with the
    setproctitle package (VLLM::EngineCore, ...), which by default writes the title over the memory
    /proc/PID/environ shows, marker included; SPT_NOENV keeps that memory as it is (the title is then as
    long as the command line)."""
    return {MARKER_ENV: marker, "SPT_NOENV": "1"}


def carries(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read(ENVIRON_LIMIT + 1)
    except OSError:
        return False
    return len(data) <= ENVIRON_LIMIT and entry in data.split(b"\0")


def marked(entry: bytes) -> list[int]:
    """This user's live processes (not this one, never pid 1) whose environment carries the marker entry."""
    out = []
    me, uid = os.getpid(), os.getuid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) <= 1 or int(name) == me:
            continue
        pid = int(name)
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue
        except (OSError, IndexError):
            continue
        if carries(pid, entry):
            out.append(pid)
    return out


def send(pid: int, sig: int, entry: bytes) -> None:
    """Signal pid through a pidfd opened before the check, so the process checked is the one signalled."""
    pidfd = None
    try:
        if hasattr(os, "pidfd_open"):
            pidfd = os.pidfd_open(pid)
        if os.stat(f"/proc/{pid}").st_uid != os.getuid() or not carries(pid, entry):
            return
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)


def stop_marked(entry: bytes, child: subprocess.Popen, grace_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        child.poll()  # reap the leader so its zombie does not count
        pids = marked(entry)
        if not pids:
            return
        for pid in pids:
            send(pid, sig, entry)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            child.poll()
            if not marked(entry):
                return
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    grace_s, log_path, marker, cmd = float(argv[0]), argv[1], argv[2], argv[3:]
    entry = f"{MARKER_ENV}={marker}".encode()
    with open(log_path, "ab") as log:
        try:
            child = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, **marked_env(marker)},
            )
        except OSError as exc:
            print(f"error {exc.strerror or exc}", flush=True)
            return 1
    print(f"pid {child.pid}", flush=True)
    while True:
        readable, _, _ = select.select([0], [], [], 0.2)
        if readable:
            data = os.read(0, 64)
            if not data:  # servectl is gone (or is done with the server): nothing may outlive it
                stop_marked(entry, child, grace_s)
                return 0
            if b"release" in data:
                return 0
        if child.poll() is not None and not marked(entry):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
