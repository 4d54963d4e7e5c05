"""Runners: start a LaunchSpec as a local process or a docker container.

Both share one protocol: `start(spec, log_path) -> Launched`, `alive(launched)`, `stop(launched)`.
A local server runs in its own session / process group (start_new_session): Ctrl-C in the
terminal reaches servectl only, and servectl stops every process of the server (API server,
EngineCore, workers: all carry the deployment's marker, servectl.launch.ownership), SIGTERM first
and SIGKILL after a grace period, so nothing is left behind and nothing else is touched. The server
is started by a watchdog process (launch/watchdog.py) that stops them if servectl dies without
doing so (SIGKILL, OOM killer); a detached deployment releases it.
Secrets reach the process by inheritance (their names are in spec.secret_env); their values
are never written to argv, the log or the state file.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from servectl.errors import CheckFailed
from servectl.launch import ownership
from servectl.redact import redact_argv
from servectl.render.argv import argv as render_argv
from servectl.render.container import container_run, docker_argv, sdk_kwargs
from servectl.spec.models import LaunchSpec

# vLLM stops in 2-3 s on SIGTERM on the CPU build; a GPU server freeing memory can take longer.
DEFAULT_GRACE_S = 15.0
WATCHDOG = Path(__file__).with_name("watchdog.py")
CONTAINER_LABEL = "io.servectl.deployment"  # the container's marker label (servectl.launch.ownership)


@dataclass
class Launched:
    """What a runner started, enough to find it again from another servectl process."""

    runtime: str  # local | docker
    argv: list[str]
    log_path: Path
    pid: int | None = None
    create_time: float | None = None  # psutil create_time of pid, guards against PID reuse
    container_id: str | None = None
    marker: str | None = None  # the deployment's marker (servectl.launch.ownership): the proof before any signal
    watchdog: subprocess.Popen | None = field(default=None, repr=False, compare=False)


class Runner(Protocol):
    def start(self, spec: LaunchSpec, log_path: Path, marker: str | None = None) -> Launched: ...

    def alive(self, launched: Launched) -> bool: ...

    def stop(self, launched: Launched, grace_s: float = DEFAULT_GRACE_S) -> None: ...

    def release(self, launched: Launched) -> None:
        """Leave the server running after this servectl exits (a detached deployment)."""
        ...


# --------------------------------------------------------------------------- local processes


def process_alive(pid: int | None, create_time: float | None) -> bool:
    """True when `pid` is running and is the process recorded (same create time, not a zombie). Used to
    tell whether a deployment runs; never as leave to signal (servectl.launch.ownership decides that)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > ownership.CREATE_TIME_TOLERANCE_S:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, OverflowError):
        return False


def child_env(spec: LaunchSpec, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the caller's (secrets inherited by name) plus the spec's values. A marker
    a caller's own environment carries is not passed on: each deployment gets its own (the watchdog adds it)."""
    env = {**(os.environ if environ is None else environ), **spec.env}
    env.pop(ownership.MARKER_ENV, None)
    return env


class SubprocessRunner:
    """`vllm serve` from a vLLM environment, as a local process group, output to a log file."""

    def __init__(self, executable: list[str]):
        self.executable = executable

    def command(self, spec: LaunchSpec) -> list[str]:
        return render_argv(spec, executable=self.executable)

    def start(self, spec: LaunchSpec, log_path: Path, marker: str | None = None) -> Launched:
        cmd = self.command(spec)
        marker = marker or ownership.new_marker(spec.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            # Only names of the environment, never values: the log may be shared in a bug report.
            log.write(
                f"# servectl: {shlex.join(redact_argv(cmd))}\n# env: {' '.join(spec.env)} inherited: {' '.join(spec.secret_env)}\n".encode()
            )
            log.flush()
            # -I: the server's environment (PYTHONPATH, ...) must not change the watchdog's own interpreter.
            watchdog = subprocess.Popen(
                [sys.executable, "-I", str(WATCHDOG), str(DEFAULT_GRACE_S), str(log_path), marker, *cmd],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(spec),
                start_new_session=True,
                close_fds=True,
            )
        assert watchdog.stdin is not None and watchdog.stdout is not None  # both are pipes (above)
        word, _, rest = watchdog.stdout.readline().decode(errors="replace").strip().partition(" ")
        if word != "pid":
            watchdog.stdin.close()
            watchdog.wait()
            why = rest or f"the server's watchdog exited {watchdog.returncode}"
            raise CheckFailed(f"cannot start {cmd[0]}: {why}", "check --python / `servectl bootstrap --cpu`")
        pid = int(rest)
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            create_time = None
        return Launched("local", cmd, log_path, pid=pid, create_time=create_time, marker=marker, watchdog=watchdog)

    def alive(self, launched: Launched) -> bool:
        return process_alive(launched.pid, launched.create_time)

    def stop(self, launched: Launched, grace_s: float = DEFAULT_GRACE_S) -> None:
        """Stop the server's processes: those carrying its marker (servectl.launch.ownership), nothing else."""
        if launched.marker:
            ownership.stop(launched.marker, grace_s)
        self._end_watchdog(launched, b"")  # the server is gone: EOF lets the watchdog exit

    def release(self, launched: Launched) -> None:
        self._end_watchdog(launched, b"release\n")

    @staticmethod
    def _end_watchdog(launched: Launched, message: bytes) -> None:
        watchdog = launched.watchdog
        if watchdog is None or watchdog.stdin is None or watchdog.stdout is None:
            return
        try:
            if message:
                watchdog.stdin.write(message)
            watchdog.stdin.close()
        except BrokenPipeError:  # it has already exited (the server ended)
            pass
        try:
            watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return
        watchdog.stdout.close()
        launched.watchdog = None


# --------------------------------------------------------------------------- docker


class DockerRunner:
    """The spec as a container through the docker SDK. Its output is streamed into the log file by a
    follower process of its own session (launch/docker_follow.py), so start-up phases, the KV cache
    figure, the diagnosis and `servectl logs` work as for a local server; for a foreground `up`
    (`tied`) the follower also stops the container when servectl dies."""

    def __init__(self, client: Any = None, tied: bool = False):
        self._client = client
        self.tied = tied

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
                self._client.ping()
            except docker.errors.DockerException as exc:
                raise CheckFailed(f"cannot reach the docker daemon: {exc}", "start docker, or use --runtime local") from None
        return self._client

    def image_labels(self, image: str, pull: bool = True, on_progress: Any = None) -> dict[str, str]:
        """The image's labels, pulling it first when it is not on this machine (`on_progress(PullProgress)` after
        each event of the engine's pull stream); CheckFailed when it is missing and cannot be pulled."""
        import docker

        try:
            return dict(self.client.images.get(image).labels or {})
        except docker.errors.ImageNotFound:
            if not pull:
                raise CheckFailed(
                    f"image {image} is not on this machine", f"docker pull {image} (for the CPU build: scripts/docker-cpu-image)"
                ) from None
        self.pull(image, on_progress)
        return dict(self.client.images.get(image).labels or {})

    def pull(self, image: str, on_progress: Any = None) -> None:
        """Pull through the SDK's stream (per-layer progress events); CheckFailed naming the engine's error."""
        import docker
        from docker.utils import parse_repository_tag

        from servectl.launch.docker_images import PullProgress

        repo, tag = parse_repository_tag(image)
        progress = PullProgress()
        try:
            for event in self.client.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                progress.update(event)
                if on_progress is not None:
                    on_progress(progress)
                if progress.error:
                    break
        except docker.errors.APIError as exc:
            progress.error = str(exc.explanation or exc)
        if progress.error:
            raise CheckFailed(
                f"image {image} is not on this machine and pulling it failed: {progress.error.strip()}",
                f"check the registry and your login (`docker pull {image}`), or build it "
                "(the CPU build: scripts/docker-cpu-image)",
            )

    def gpu_problem(self, run: Any) -> tuple[str, str] | None:
        """Why the engine cannot give the container its accelerators (docker_images.gpu_access_problem), or None."""
        from servectl.launch.docker_images import gpu_access_problem

        return gpu_access_problem(self.client.info(), run)

    def start(self, spec: LaunchSpec, log_path: Path, marker: str | None = None) -> Launched:
        import docker

        run = container_run(spec)
        marker = marker or ownership.new_marker(spec.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = sdk_kwargs(run, os.environ)  # a local checkpoint is mounted read-only at the same path (container_run)
        kwargs["labels"] = {CONTAINER_LABEL: marker}  # the proof `stop` checks before it touches the container
        with open(log_path, "ab") as log:
            log.write(
                f"# servectl: {shlex.join(redact_argv(docker_argv(run)))}\n# env: {' '.join(run.env)} inherited: {' '.join(run.secret_env)}\n".encode()
            )
        try:
            container = self.client.containers.run(**kwargs)
        except docker.errors.APIError as exc:
            self._remove_created(run.name)  # a failed start can leave a container in "created"
            raise CheckFailed(f"docker could not start {run.image}: {exc.explanation or exc}", "see `docker info`") from None
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "servectl.launch.docker_follow",
                container.id,
                str(log_path),
                str(os.getpid() if self.tied else 0),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        return Launched("docker", docker_argv(run), log_path, container_id=container.id, marker=marker, watchdog=follower)

    def _remove_created(self, name: str) -> None:
        import docker

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.APIError:  # nothing was left in "created" (NotFound), or it is going already
            pass

    def logs(self, launched: Launched) -> str:
        return self.client.containers.get(launched.container_id).logs().decode(errors="replace")

    def alive(self, launched: Launched) -> bool:
        import docker

        try:
            return self.client.containers.get(launched.container_id).status in ("created", "running")
        except docker.errors.NotFound:
            return False

    def owned(self, launched: Launched) -> str | None:
        """None when the container carries this deployment's marker label; else why it is not ours to stop."""
        import docker

        if not launched.marker or not launched.container_id:
            return "the record carries no deployment marker or container id"
        try:
            labels = self.client.containers.get(launched.container_id).labels or {}
        except docker.errors.NotFound:
            return None  # gone: nothing to stop
        if labels.get(CONTAINER_LABEL) != launched.marker:
            return f"container {launched.container_id[:12]} does not carry this deployment's label"
        return None

    def stop(self, launched: Launched, grace_s: float = DEFAULT_GRACE_S) -> None:
        import docker

        if self.owned(launched) is not None:
            return  # never stop a container servectl cannot prove it started
        try:
            container = self.client.containers.get(launched.container_id)
            container.stop(timeout=int(grace_s))  # docker sends SIGTERM, then SIGKILL after timeout
            if not container.attrs.get("HostConfig", {}).get("AutoRemove"):
                container.remove(force=True)
        except docker.errors.NotFound:
            pass
        if launched.watchdog is not None:  # the log follower ends with the container: let it write its last lines
            try:
                launched.watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                launched.watchdog.kill()
                launched.watchdog.wait()

    def release(self, launched: Launched) -> None:
        return None


def vllm_executable(python: Path) -> list[str]:
    """`vllm serve` of an environment: its console script when present, else the module entry point."""
    script = python.parent / "vllm"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "serve"]
    return [str(python), "-m", "vllm.entrypoints.cli.main", "serve"]
