"""The rendered `ray-nodes` layout, run for real on one host: a Ray head and a second Ray node
(separate `ray start` process trees with their own ports), the tiny model, vLLM's CPU build.

What the CPU build can and cannot do here (vLLM 0.32.0, found by running it):
- vLLM's Ray executor refuses the CPU platform: `ValueError: current platform cpu does not support
  ray.` (vllm/v1/executor/ray_utils.py initialize_ray_cluster; the CPU platform leaves
  `ray_device_key` empty, vllm/platforms/interface.py, where cuda.py / rocm.py / xpu.py say "GPU").
  The rendered head is run anyway: its nodes join, its wait passes, and its `vllm serve` must end
  with exactly that refusal, the proof kept in the suite.
- The closest real runs: vLLM's own Ray placement (initialize_ray_cluster, with the CUDA platform's
  device key set in that one driver process) on the two nodes the rendered script started; and the
  rendered `vllm serve` with pipeline parallel 2 over vLLM's multiprocessing executor on one host,
  which `servectl check` must pass. That run needs `VLLM_CPU_OMP_THREADS_BIND=nobind` (automatic
  binding wants one NUMA node per local rank, vllm/utils/ompmultiprocessing.py), no
  `--enforce-eager` (the CPU runner allocates the tensors a later pipeline stage receives only in its
  compile warm-up, vllm/v1/worker/cpu_model_runner.py warming_up_model; without it the first
  request fails an assertion in gpu_model_runner.py sync_and_gather_intermediate_tensors) and the
  scripted-pp tiny model (each stage holds a full-attention layer, see _tinymodel_gen.py).
Everything started is stopped by its setsid id (SID), and nothing may be left: Ray's daemons and workers too.

Ray comes from the vLLM environment when it has it (`servectl bootstrap --cpu --with-ray`); when it
does not, this setup installs the same ray release for that interpreter into servectl's cache
(`pip install --target`, on PYTHONPATH), leaving the environment itself untouched.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import free_port
from waits import START_S, STOP_S, wait_for
from servectl.catalog import versions
from servectl.catalog.load import load_catalog
from servectl.paths import cache_dir
from servectl.render import outputs as render_outputs
from servectl.spec.models import LaunchOptions
from servectl.spec.resolve import Request, resolve
from servectl.vllmenv.tinymodel import ensure_tiny_model


def port_is_free(port: int) -> bool:
    """Nothing listens there (TIME_WAIT leftovers of closed connections do not count: servers reuse those)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


pytestmark = [pytest.mark.server, pytest.mark.slow]


def free_range(size: int, low: int = 10000, high: int = 32000) -> int:
    """The first port of `size` consecutive free ports below the kernel's ephemeral range (32768 and up by default,
    where an outgoing connection could take one before Ray binds it), at a random place: two suites apart."""
    import random

    for _ in range(1000):
        base = random.randrange(low, high - size)
        if all(port_is_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports in {low}..{high}")


# Every port of both Ray nodes (they share one host) is fixed before they start, since the rendered script passes
# RAY_PORT to both; taken from one free block chosen here, so that two suites on one host never share one.
HTTP_PORT = free_port()
_HEAD_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--runtime-env-agent-port",
    "--dashboard-agent-grpc-port",
    "--dashboard-agent-listen-port",
    "--metrics-export-port",
    "--ray-client-server-port",
    "--dashboard-port",
)
_WORKER_FLAGS = _HEAD_FLAGS[:6]
_HEAD_WORKERS, _WORKER_WORKERS = 400, 500  # each node's worker port range
_base = free_range(1 + len(_HEAD_FLAGS) + len(_WORKER_FLAGS) + _HEAD_WORKERS + _WORKER_WORKERS)
RAY_PORT = _base
HEAD_PORTS = {flag: _base + 1 + i for i, flag in enumerate(_HEAD_FLAGS)}
WORKER_PORTS = {flag: _base + 1 + len(_HEAD_FLAGS) + i for i, flag in enumerate(_WORKER_FLAGS)}
_workers = _base + 1 + len(_HEAD_FLAGS) + len(_WORKER_FLAGS)
HEAD_ARGS = " ".join(
    [
        *(f"{flag} {port}" for flag, port in HEAD_PORTS.items()),
        f"--min-worker-port {_workers} --max-worker-port {_workers + _HEAD_WORKERS - 1}",
        "--include-dashboard=false",
    ]
)
_workers += _HEAD_WORKERS
WORKER_ARGS = " ".join(
    [
        *(f"{flag} {port}" for flag, port in WORKER_PORTS.items()),
        f"--min-worker-port {_workers} --max-worker-port {_workers + _WORKER_WORKERS - 1}",
    ]
)
# small nodes: one CPU each, a small object store, no dashboard
COMMON_ARGS = "--object-store-memory 80000000 --num-cpus 1 --disable-usage-stats"
PORTS = [HTTP_PORT, RAY_PORT, *HEAD_PORTS.values(), *WORKER_PORTS.values()]

PLACEMENT = """
import json, sys
from vllm.platforms.cpu import CpuPlatform
CpuPlatform.ray_device_key = "GPU"  # the CUDA platform's key (vllm/platforms/cuda.py), in this process only
from vllm.config import ParallelConfig
from vllm.v1.executor import ray_utils
pc = ParallelConfig(pipeline_parallel_size=2, tensor_parallel_size=1, distributed_executor_backend="ray")
ray_utils.initialize_ray_cluster(pc, require_gpu_on_driver=False)
names = {n["NodeID"]: n["NodeName"] for n in ray_utils.ray.nodes()}
bundles = ray_utils.get_bundles_sorted_by_node(pc.placement_group)
print(json.dumps({"specs": pc.placement_group.bundle_specs, "nodes": sorted(names[node] for _, node, _ in bundles)}))
"""


# --------------------------------------------------------------------------- environment with Ray


def _ray_target(python: Path) -> dict[str, str]:
    """PATH/PYTHONPATH additions giving `python` Ray: none when its environment has it, else a cached
    `pip install --target` of the release the CPU build was tried with."""
    if subprocess.run([str(python), "-c", "import ray"], capture_output=True).returncode == 0:
        return {}
    ray = versions.CPU_BUILD_RAY[versions.CPU_BUILD_VLLM]
    tag = subprocess.run(
        [str(python), "-c", "import sys; print('py%d%d' % sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    target = cache_dir() / "ray" / f"ray-{ray}-{tag}"
    if not (target / "bin" / "ray").is_file():
        work = target.with_name(f".{target.name}.{os.getpid()}")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "--disable-pip-version-check",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(work),
                f"ray=={ray}",
                "msgpack",
            ],
            check=True,
            timeout=900,
        )
        try:
            os.rename(work, target)
        except OSError:  # another run put it there first: theirs is the same
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return {"PYTHONPATH": str(target), "bin": str(target / "bin")}


@pytest.fixture(scope="module")
def env(vllm_python) -> dict[str, str]:
    python = vllm_python
    extra = _ray_target(python)
    path = [p for p in (extra.get("bin"), str(python.parent)) if p]
    out = {
        **os.environ,
        "PATH": os.pathsep.join([*path, os.environ["PATH"]]),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_PORT": str(RAY_PORT),
    }
    if extra.get("PYTHONPATH"):
        out["PYTHONPATH"] = os.pathsep.join(filter(None, [extra["PYTHONPATH"], os.environ.get("PYTHONPATH")]))
    return out


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    """The ray-nodes rendering of the tiny model, as `servectl render --format ray-nodes --nodes 2` writes it."""
    cat = load_catalog()
    model = ensure_tiny_model("scripted-pp")
    spec = resolve(
        Request(cat.model("tiny-cpu"), cat.gpu("cpu"), [], options=LaunchOptions(port=HTTP_PORT, model_path=str(model)))
    )
    path = tmp_path_factory.mktemp("nodes") / "nodes.sh"
    path.write_text(render_outputs.text("ray-nodes", spec, nodes=2))
    return path


@pytest.fixture(autouse=True)
def ports_free():
    """Every port the nodes take is free: the previous test's Ray processes and their sockets may take a moment
    to go after its nodes stopped (polled up to a deadline, never a fixed pause)."""
    wait_for(lambda: all(port_is_free(p) for p in PORTS), STOP_S, every=0.5)
    taken = [p for p in PORTS if not port_is_free(p)]
    assert not taken, f"ports {taken} are in use on 127.0.0.1 (a leftover Ray or vLLM?)"


# --------------------------------------------------------------------------- process trees


class Tree:
    """A command started with setsid; stop() ends every process with its SID (Ray's daemons and the
    workers its raylet forks keep the SID even in process groups of their own)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, extra_env: dict[str, str] | None = None):
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            argv, env={**env, **(extra_env or {})}, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.sid = self.proc.pid

    def members(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.sid and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except (ProcessLookupError, psutil.Error):
                pass
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, needle: str, timeout_s: float, running: tuple["Tree", ...] = ()) -> None:
        """Until `needle` is in the log; the trees in `running` must stay up meanwhile."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.text():
            for other in running:
                assert other.proc.poll() is None, f"{other.log_path.name} ended:\n{other.text()[-3000:]}"
            assert time.monotonic() < deadline, f"{needle!r} not seen in {timeout_s} s:\n{self.text()[-3000:]}"
            time.sleep(0.5)

    def stop(self, grace_s: float = 10) -> list[str]:
        """SIGTERM the tree, SIGKILL what is left after grace_s; returns what survived both (should be [])."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, STOP_S)):
            for p in self.members():
                try:
                    p.send_signal(sig)
                except psutil.Error:
                    pass
            deadline = time.monotonic() + wait_s
            while self.members() and time.monotonic() < deadline:
                time.sleep(0.5)
        if self.proc.poll() is None:
            self.proc.wait(timeout=STOP_S)
        self._log.close()
        return [" ".join(p.cmdline()[:3]) for p in self.members()]


@pytest.fixture()
def ray_tmp():
    """Ray's temp dir: short, as its socket paths must fit AF_UNIX's 107 bytes."""
    path = tempfile.mkdtemp(prefix="ray-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _node(script: Path, env, log: Path, role: list[str], extra: str, ray_tmp: str, **more: str) -> Tree:
    return Tree(["sh", str(script), *role], env, log, {"RAY_START_ARGS": f"{extra} {COMMON_ARGS} --temp-dir {ray_tmp}", **more})


# --------------------------------------------------------------------------- tests


def test_head_alone_fails_naming_the_missing_node(script, env, tmp_path, ray_tmp):
    head = _node(script, env, tmp_path / "head.log", ["head"], HEAD_ARGS, ray_tmp, SERVECTL_NODES_WAIT_S="3")
    try:
        rc = head.proc.wait(timeout=START_S)
        out = head.text()
        assert rc == 1, out[-3000:]
        assert "servectl: 1 of 2 Ray nodes joined after 3 s (joined: node-0); missing: node-1" in out
        assert "vllm serve" not in out and "APIServer" not in out  # never reached
    finally:
        assert head.stop() == []


def test_two_ray_nodes_run_the_rendered_layout(script, env, tmp_path, ray_tmp, vllm_python):
    head = _node(script, env, tmp_path / "head.log", ["head"], HEAD_ARGS, ray_tmp, SERVECTL_NODES_WAIT_S="600")
    worker = None
    try:
        head.wait_for("servectl: waiting up to 600 s for 2 Ray nodes", timeout_s=START_S)
        worker = _node(script, env, tmp_path / "worker.log", ["worker", "127.0.0.1", "1"], WORKER_ARGS, ray_tmp)
        head.wait_for("servectl: all 2 Ray nodes joined: node-0, node-1", timeout_s=START_S, running=(worker,))
        # the head went on to the rendered `vllm serve ... --pipeline-parallel-size 2 --distributed-executor-backend ray`
        rc = head.proc.wait(timeout=START_S)
        out = head.text()
        assert rc != 0
        assert "ValueError: current platform cpu does not support ray." in out, out[-4000:]
        assert "ray_utils.py" in out and "initialize_ray_cluster" in out
        # vLLM's own placement for that layout (TP 1 x PP 2, one device per bundle) on the same two nodes
        placed = subprocess.run(
            [str(vllm_python), "-c", PLACEMENT],
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{RAY_PORT}", "VLLM_TARGET_DEVICE": "cpu"},
            capture_output=True,
            text=True,
            timeout=START_S,
        )
        assert placed.returncode == 0, placed.stderr[-3000:]
        result = json.loads(placed.stdout.strip().splitlines()[-1])
        assert result == {"specs": [{"GPU": 1.0}, {"GPU": 1.0}], "nodes": ["node-0", "node-1"]}
    finally:
        left = (worker.stop() if worker else []) + head.stop()
    assert left == []
    assert wait_for(lambda: all(port_is_free(p) for p in PORTS), STOP_S, every=0.5)


def _serve_argv(script: Path) -> list[str]:
    """The head's `exec env ... vllm serve ...` line of the rendered script, as argv."""
    line = next(ln.strip() for ln in script.read_text().splitlines() if ln.strip().startswith("exec env "))
    return shlex.split(line)[1:]


def test_pipeline_parallel_2_of_the_rendered_serve_passes_check(script, env, tmp_path, cli):
    argv = _serve_argv(script)
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    backend = argv.index("--distributed-executor-backend") + 1
    assert argv[backend] == "ray"
    argv[backend] = "mp"  # the one change: vLLM's multiprocessing executor, one host
    argv.remove("--enforce-eager")  # see the module docstring
    server = Tree(argv, env, tmp_path / "vllm.log", {"VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    url = f"http://127.0.0.1:{HTTP_PORT}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert server.proc.poll() is None, f"vLLM exited with {server.proc.returncode}:\n{server.text()[-4000:]}"
            assert time.monotonic() < deadline, f"not healthy in {START_S:.0f} s:\n{server.text()[-4000:]}"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        log = server.text()
        assert "(Worker_PP0 " in log and "(Worker_PP1 " in log  # two pipeline stages really started
        r = cli("check", url, "--json", "--timeout", "600")
        report = json.loads(r.stdout)
        assert r.exit_code == 0, r.stdout
        statuses = {c["name"]: c["status"] for c in report["checks"]}
        assert report["passed"] is True and "fail" not in statuses.values(), statuses
        assert all(statuses[name] == "pass" for name in ("chat", "reasoning", "tools", "streaming")), statuses
    finally:
        left = server.stop()
    assert left == []
    assert port_is_free(HTTP_PORT)


# --------------------------------------------------------------------------- servectl up --runtime ray


@pytest.fixture()
def ray_cluster(env, tmp_path, ray_tmp):
    """Two Ray nodes started by hand (`ray start`), the existing cluster `up --runtime ray` drives."""
    ray = ["ray", "start", "--block", "--num-gpus", "1"]
    head = Tree(
        [*ray, "--head", "--port", str(RAY_PORT), *HEAD_ARGS.split(), *COMMON_ARGS.split(), "--temp-dir", ray_tmp],
        env,
        tmp_path / "ray-head.log",
    )
    worker = None
    try:
        head.wait_for("Ray runtime started", timeout_s=START_S)
        worker = Tree(
            [*ray, "--address", f"127.0.0.1:{RAY_PORT}", *WORKER_ARGS.split(), *COMMON_ARGS.split()],
            env,
            tmp_path / "ray-worker.log",
        )
        worker.wait_for("Ray runtime started", timeout_s=START_S, running=(head,))
        yield f"127.0.0.1:{RAY_PORT}"
        assert head.proc.poll() is None and worker.proc.poll() is None  # `up` leaves the user's cluster alone
    finally:
        left = (worker.stop() if worker else []) + head.stop()
    assert left == []


def _servectl(env, tmp_path, *args, **more):
    import sys

    run_env = {**env, "XDG_STATE_HOME": str(tmp_path / "state"), **more}
    return subprocess.run([sys.executable, "-m", "servectl", *args], env=run_env, capture_output=True, text=True, timeout=START_S)


def _deployments(env, tmp_path) -> list:
    r = _servectl(env, tmp_path, "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["deployments"]


def test_up_on_a_ray_cluster_waits_for_its_nodes(ray_cluster, env, tmp_path):
    r = _servectl(
        env,
        tmp_path,
        "up",
        "tiny-cpu",
        "--runtime",
        "ray",
        "--nodes",
        "3",
        "--head",
        ray_cluster,
        "--port",
        str(HTTP_PORT),
        SERVECTL_NODES_WAIT_S="3",
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "2 of 3 Ray nodes joined after 3 s" in r.stderr and "missing: 1 more node(s)" in r.stderr
    assert f"ray start --address {ray_cluster}" in r.stderr
    assert _deployments(env, tmp_path) == []


def test_up_on_a_ray_cluster_drives_vllm_until_its_cpu_refusal(ray_cluster, env, tmp_path):
    r = _servectl(
        env,
        tmp_path,
        "up",
        "tiny-cpu",
        "--runtime",
        "ray",
        "--nodes",
        "2",
        "--head",
        ray_cluster,
        "--port",
        str(HTTP_PORT),
        "--timeout",
        "600",
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "vLLM exited during start-up" in r.stderr
    assert "current platform cpu does not support ray" in r.stderr, r.stderr[-3000:]
    log = next((tmp_path / "state").rglob("*.log")).read_text()
    assert "--pipeline-parallel-size 2 --distributed-executor-backend ray" in log.splitlines()[0]
    assert "# env:" in log and "RAY_ADDRESS" in log.splitlines()[1]
    # nothing of the failed start is left: no record, the port free
    assert _deployments(env, tmp_path) == []
    assert port_is_free(HTTP_PORT)
