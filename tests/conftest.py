"""Shared fixtures. Tests run servectl's real code; the vLLM server tests use the real CPU build."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from servectl.catalog.load import load_catalog
from waits import START_S, STOP_S


def pytest_configure(config):
    """Ctrl-C reaches the processes the tests start, as it does a user's. A job started in the background by a shell
    without job control (CI runners, `... &` in a script) runs with SIGINT ignored, and every process it starts
    inherits that: Python then installs no KeyboardInterrupt handler, and a test that interrupts `servectl up` waits
    for an exit that never comes. A handler here is reset to the default in each child at exec."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture(scope="session", autouse=True)
def own_calibration_store(tmp_path_factory):
    """Every `up` calibrates later plans: the suite keeps its starts to itself (set in os.environ, so the
    servectl processes the tests start see it too), never reading or adding to the user's store."""
    import os

    old = os.environ.get("SERVECTL_CALIBRATION_DIR")
    os.environ["SERVECTL_CALIBRATION_DIR"] = str(tmp_path_factory.mktemp("calibration"))
    yield
    if old is None:
        os.environ.pop("SERVECTL_CALIBRATION_DIR", None)
    else:
        os.environ["SERVECTL_CALIBRATION_DIR"] = old


@pytest.fixture()
def cli():
    """Invoke `servectl ...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    from servectl.cli import main

    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run


# --------------------------------------------------------------------------- a real vLLM CPU server


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, chosen by the OS: two suites on one machine never collide on a fixed number,
    and no port is handed out twice in one run."""
    import socket

    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("the OS handed out no unused port")


class VllmServer:
    """A real `vllm serve` of a tiny model, in the style of vLLM's tests/utils.py RemoteOpenAIServer:
    its own process group, /health polled while checking the process is alive (a dead server fails
    at once with its log tail), stopped by PID at teardown."""

    def __init__(self, model_dir, port, served_name="tiny-cpu", extra=(), log_path=None):
        import os
        import subprocess
        import tempfile

        from servectl.vllmenv.location import find_vllm_python

        python = find_vllm_python()
        self.url = f"http://127.0.0.1:{port}"
        self.model = served_name
        self.model_dir = str(model_dir)
        self.log_path = log_path or tempfile.mktemp(prefix="vllm-", suffix=".log")
        env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        argv = [
            str(python.parent / "vllm"),
            "serve",
            self.model_dir,
            "--served-model-name",
            served_name,
            "--enforce-eager",
            "--dtype",
            "bfloat16",
            "--kv-cache-memory-bytes",
            "64M",
            "--max-model-len",
            "2048",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reasoning-parser",
            "qwen3",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
            *extra,
        ]
        # a leftover server on the port would answer /health for us: refuse before starting
        if not port_is_free(port):
            raise RuntimeError(f"port {port} is already in use on 127.0.0.1 (a leftover server?)")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout_s=START_S):
        import time

        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    # and it is ours: the model path it serves is the one we started it with
                    roots = [m.get("root") for m in httpx.get(self.url + "/v1/models", timeout=60).json()["data"]]
                    if self.model_dir not in roots:
                        self.stop()
                        raise RuntimeError(f"{self.url} serves {roots}, not {self.model_dir}")
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"vLLM not healthy after {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines=30):
        from pathlib import Path

        return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        import os
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_S)
            except Exception:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_S)
        self._log.close()


@pytest.fixture(scope="session")
def tiny_server(tiny_model, tmp_path_factory):
    """The scripted tiny-cpu model on a real vLLM CPU server, shared by the whole test run. Sized for
    what it promises: 64M of KV cache hold 73 requests of 2048 tokens and it takes at most 8 at once
    (vLLM's CPU default, 128, promises more than the cache holds: `check --level full` fails that). It logs every
    request with its SamplingParams (--enable-log-requests): the proxy tests read what reached the engine there."""
    server = VllmServer(
        tiny_model,
        port=free_port(),
        extra=("--max-num-seqs", "8", "--enable-log-requests"),
        log_path=str(tmp_path_factory.mktemp("tiny-server") / "vllm.log"),
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


# --------------------------------------------------------------------------- the two tiers

# A test that needs the real vLLM CPU environment (its interpreter, its parser, a tiny model it generates), a
# vLLM server, Docker, Ray or Prometheus is in the `server` tier; `pytest -m "not server"` (the fast tier) runs
# the rest. A test that uses one of these fixtures, directly or through another fixture, is marked for it.
SERVER_FIXTURES = frozenset({"vllm_python", "tiny_model", "tiny_server"})


@pytest.fixture(scope="session")
def vllm_python():
    """The interpreter of the real vLLM CPU environment (`servectl bootstrap --cpu`, which scripts/test runs)."""
    from servectl.vllmenv.location import find_vllm_python

    try:
        return find_vllm_python()
    except Exception as exc:  # noqa: BLE001 - fail with what to do, never skip
        pytest.fail(f"the vLLM CPU environment is missing ({exc}); scripts/test bootstraps it")


@pytest.fixture(scope="session")
def tiny_model(vllm_python):
    """The scripted tiny-cpu checkpoint, generated by the vLLM environment's interpreter on first use."""
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    return ensure_tiny_model("scripted")


def pytest_collection_modifyitems(config, items):
    """A test that uses a server fixture is in the `server` tier even when its module forgot the marker: the fast
    tier must never start vLLM."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def _no_vllm_environment(tmp_path_factory):
    return str(tmp_path_factory.mktemp("no-vllm-environments"))


@pytest.fixture(autouse=True)
def _fast_tier_has_no_vllm_environment(request, monkeypatch, _no_vllm_environment):
    """A fast-tier test sees no vLLM environment (an empty data folder, for it and the processes it starts): one
    that needs the environment without the `server` marker fails here as on a machine that never bootstrapped."""
    if request.node.get_closest_marker("server") is None:
        monkeypatch.setenv("XDG_DATA_HOME", _no_vllm_environment)
