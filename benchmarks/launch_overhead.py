"""Launch overhead of `servectl up` over a bare `vllm serve`, and crash-detection latency.

    .venv/bin/python benchmarks/launch_overhead.py --runs 3 [--model-path DIR] [--port 8128]

Time to healthy: bare `vllm serve` (same argv and env servectl renders, /health polled every
0.1 s) vs the wall time of `servectl up --detach --no-check` (servectl start, plan, start-up
following, /health). Target ratio <= 1.05. Crash detection: kill -9 of the server under a
foreground `servectl up`; time until servectl reports it (its exit). Target <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from servectl.catalog.load import load_catalog
from servectl.spec.resolve import Request, resolve
from servectl.render.argv import argv
from servectl.launch.runners import child_env, vllm_executable

from _procgroup import stop_child_group  # benchmarks/_procgroup.py (scripts run from benchmarks/)
from servectl.spec.models import LaunchOptions
from servectl.vllmenv.location import find_vllm_python

SERVECTL = [sys.executable, "-m", "servectl"]


def model_dir(explicit: str | None) -> str:
    if explicit:
        return explicit
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    return str(ensure_tiny_model(variant="scripted"))


def launch_bare(path: str, port: int) -> subprocess.Popen:
    """`vllm serve` of the tiny model with the argv and env servectl renders, in its own process group."""
    cat = load_catalog()
    spec = resolve(Request(cat.model("tiny-cpu"), cat.gpu("cpu"), options=LaunchOptions(model_path=path, port=port)))
    cmd = argv(spec, executable=vllm_executable(find_vllm_python()))
    return subprocess.Popen(
        cmd, env=child_env(spec), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def wait_ready(
    proc: subprocess.Popen, port: int, path: str = "/health", what: str = "bare vllm serve", timeout: float | None = None
) -> None:
    """Poll http://127.0.0.1:PORT/PATH every 0.1 s until it answers 200; exit if the process ends or time runs out."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with httpx.Client(timeout=1) as client:
        while deadline is None or time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{what} exited with {proc.returncode}")
            try:
                if client.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {timeout:.0f} s")


def bare(path: str, port: int) -> float:
    t0 = time.monotonic()
    proc = launch_bare(path, port)
    try:
        wait_ready(proc, port)
        return time.monotonic() - t0
    finally:
        stop_child_group(proc)


def servectl_up(path: str, port: int, env: dict) -> float:
    t0 = time.monotonic()
    res = subprocess.run(
        [*SERVECTL, "up", "tiny-cpu", "--model-path", path, "--port", str(port), "--detach", "--no-check", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - t0
    subprocess.run([*SERVECTL, "down", "bench"], env=env, capture_output=True)
    if res.returncode != 0:
        raise SystemExit(f"servectl up failed: {res.stderr[-2000:]}")
    return took


def crash_latency(path: str, port: int, env: dict) -> tuple[float, float]:
    proc = subprocess.Popen(
        [*SERVECTL, "up", "tiny-cpu", "--model-path", path, "--port", str(port), "--no-check", "--name", "crash"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while True:
            res = subprocess.run([*SERVECTL, "status", "--json"], env=env, capture_output=True, text=True)
            deps = [d for d in json.loads(res.stdout)["deployments"] if d["ready"]]
            if deps:
                break
            if proc.poll() is not None:
                raise SystemExit("servectl up exited before ready")
            time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(deps[0]["pid"], signal.SIGKILL)
        for line in proc.stderr:  # the moment servectl says so (cleanup of the group follows)
            if "exited while serving" in line:
                break
        up_latency = time.monotonic() - t0
        proc.wait(timeout=60)
        # A fresh `servectl status` after a kill (process start included).
        t1 = time.monotonic()
        res = subprocess.run([*SERVECTL, "status", "--json"], env=env, capture_output=True, text=True)
        status_s = time.monotonic() - t1
        assert json.loads(res.stdout)["deployments"] == []
        return up_latency, status_s
    finally:
        if proc.poll() is None:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model-path")
    ap.add_argument("--port", type=int, default=8128)
    args = ap.parse_args()
    path = model_dir(args.model_path)
    env = {**os.environ, "XDG_STATE_HOME": tempfile.mkdtemp(prefix="servectl-bench-")}
    bare_s, up_s = [], []
    for i in range(args.runs):  # interleaved so drift (caches, load) hits both alike
        bare_s.append(bare(path, args.port))
        up_s.append(servectl_up(path, args.port, env))
        print(f"run {i + 1}: bare vllm serve {bare_s[-1]:.2f} s, servectl up {up_s[-1]:.2f} s", flush=True)
    if args.runs:
        mb, mu = statistics.median(bare_s), statistics.median(up_s)
        print(
            f"time to healthy, median of {args.runs}: bare {mb:.2f} s, servectl up {mu:.2f} s, ratio {mu / mb:.3f} (target <= 1.05)"
        )
    up_lat, status_s = crash_latency(path, args.port, env)
    print(
        f"crash detection: foreground servectl up reported kill -9 after {up_lat:.2f} s (target <= 1 s); "
        f"a fresh `servectl status` reported it gone in {status_s:.2f} s"
    )


if __name__ == "__main__":
    main()
