"""Copy a container's output into its deployment's log file, as the local runner's log gets it.

Run as its own process (`python -m servectl.launch.docker_follow CONTAINER LOG [OWNER_PID]`, own
session) so the copy goes on after a detached `up` returns: it ends when the container stops.
With OWNER_PID (a foreground `up`), it also stops the container when that process dies, even by
SIGKILL, as the local runner's parent-death tie does for a process group.
"""

from __future__ import annotations

import os
import sys
import threading
import time

STOP_GRACE_S = 15


def _watch_owner(container, owner: int) -> None:
    import docker

    while True:
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            try:
                container.stop(timeout=STOP_GRACE_S)
            except docker.errors.APIError:  # already gone (NotFound), or the engine refused: nothing more to do here
                pass
            return
        except PermissionError:
            pass
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    import docker

    container_id, log_path = argv[0], argv[1]
    owner = int(argv[2]) if len(argv) > 2 and argv[2] != "0" else None
    container = docker.from_env().containers.get(container_id)
    if owner is not None:
        threading.Thread(target=_watch_owner, args=(container, owner), daemon=True).start()
    with open(log_path, "ab") as log:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            log.write(chunk)
            log.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # the container vanished or the daemon went away: nothing more to copy
        print(f"docker_follow: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
