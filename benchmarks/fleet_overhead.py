"""The fleet's front door (`servectl serve`): time to first token for a cold model through it against a bare
`vllm serve` cold start, and the latency it adds per request to a warm model.

    .venv/bin/python benchmarks/fleet_overhead.py [--cold-runs 2] [--requests 200] [--json]

Cold: bare = from spawning `vllm serve` (the argv and env servectl renders for the tiny model) to the first
streamed content chunk of a chat request sent as soon as /health answers (polled every 0.1 s); front door =
from sending the same streamed request to a `servectl serve` whose model is stopped, to its first content
chunk (the front door places the model, starts it under its watchdog, follows its start-up, relays). Runs
alternate, each on fresh servers.

Warm: one fleet with the model ready; the same request (chat, 1 output token, and streamed: time to the first
chunk) direct to the vLLM server's port and through the front door, alternating, N of each. Printed: medians
and p90 of both, and the median of the per-pair differences with a 95 % bootstrap interval.
Figures depend on the host's load: run it on a quiet machine and compare only runs of the same host.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from launch_overhead import launch_bare, model_dir, wait_ready  # noqa: E402

from servectl.launch.ports import free_port  # noqa: E402
from servectl.launch.runners import stop_group  # noqa: E402

BODY = {"messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 8, "stream": True}


def first_token(url: str, model: str, timeout: float = 900) -> float:
    """Seconds from sending a streamed chat request to its first chunk carrying content or reasoning."""
    t0 = time.monotonic()
    with httpx.stream("POST", url + "/v1/chat/completions", json={**BODY, "model": model}, timeout=timeout) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content"):
                    return time.monotonic() - t0
    raise RuntimeError("the stream ended without a token")


def cold_bare(path: str) -> float:
    port = free_port()
    t0 = time.monotonic()
    proc = launch_bare(path, port)
    try:
        wait_ready(proc, port, timeout=900)
        first_token(f"http://127.0.0.1:{port}", "tiny-cpu")
        return time.monotonic() - t0
    finally:
        stop_group(proc.pid, popen=proc)


class Front:
    def __init__(self, path: str, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fleet = tmp / f"fleet-{self.port}.yaml"
        fleet.write_text(
            textwrap.dedent(f"""
            name: bench{self.port}
            models:
              tiny:
                model: {path}
                recipe: tiny-cpu
            """)
        )
        self.env = env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servectl", "serve", str(fleet), "--listen", f"127.0.0.1:{self.port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(self.proc, self.port, what="servectl serve", timeout=300)

    def backend_port(self) -> int:
        """The model's own server, from its deployment record (`servectl status`)."""
        out = subprocess.run(
            [sys.executable, "-m", "servectl", "status", "--json"], env=self.env, capture_output=True, text=True, timeout=60
        )
        return next(d["port"] for d in json.loads(out.stdout)["deployments"] if d["served_model_name"] == "tiny")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def cold_front(path: str, tmp: Path) -> float:
    front = Front(path, tmp)
    try:
        return first_token(front.url, "tiny")
    finally:
        front.stop()


def one_request(client: httpx.Client, url: str, model: str) -> float:
    t0 = time.perf_counter()
    r = client.post(
        url + "/v1/chat/completions",
        json={"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Who are you?"}]},
    )
    r.raise_for_status()
    return time.perf_counter() - t0


def stream_first(client: httpx.Client, url: str, model: str) -> float:
    t0 = time.perf_counter()
    with client.stream("POST", url + "/v1/chat/completions", json={**BODY, "model": model}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"delta":{"role"' not in line.replace(" ", ""):
                return time.perf_counter() - t0
    raise RuntimeError("no chunk")


def bootstrap(diffs: list[float], rounds: int = 2000) -> tuple[float, float]:
    rnd = random.Random(0)
    meds = sorted(statistics.median(rnd.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return meds[int(0.025 * rounds)], meds[int(0.975 * rounds)]


def warm(path: str, tmp: Path, n: int) -> dict:
    front = Front(path, tmp)
    try:
        first_token(front.url, "tiny")  # starts it
        direct = f"http://127.0.0.1:{front.backend_port()}"
        out = {}
        with httpx.Client(timeout=60) as client:
            for label, fn in (("full reply", one_request), ("first streamed chunk", stream_first)):
                for _ in range(5):  # warm both paths' connections
                    fn(client, direct, "tiny"), fn(client, front.url, "tiny")
                d, f = [], []
                for i in range(n):
                    pair = [(direct, d), (front.url, f)]
                    for url, sink in pair if i % 2 == 0 else pair[::-1]:
                        sink.append(fn(client, url, "tiny"))
                diffs = [b - a for a, b in zip(d, f)]
                lo, hi = bootstrap(diffs)
                out[label] = {
                    "direct_p50_ms": statistics.median(d) * 1e3,
                    "front_p50_ms": statistics.median(f) * 1e3,
                    "direct_p90_ms": statistics.quantiles(d, n=10)[-1] * 1e3,
                    "front_p90_ms": statistics.quantiles(f, n=10)[-1] * 1e3,
                    "added_p50_ms": statistics.median(diffs) * 1e3,
                    "added_ci95_ms": [lo * 1e3, hi * 1e3],
                }
        return out
    finally:
        front.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold-runs", type=int, default=2)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--model-path")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    path = model_dir(args.model_path)
    with tempfile.TemporaryDirectory(prefix="servectl-fleet-bench-") as tmp:
        tmp = Path(tmp)
        bare_s, front_s = [], []
        for i in range(args.cold_runs):
            for label, fn in (("bare", lambda: cold_bare(path)), ("front", lambda: cold_front(path, tmp)))[
                :: 1 if i % 2 == 0 else -1
            ]:
                (bare_s if label == "bare" else front_s).append(fn())
        result = {
            "cold": {
                "bare_vllm_serve_s": bare_s,
                "front_door_s": front_s,
                "bare_median_s": statistics.median(bare_s),
                "front_median_s": statistics.median(front_s),
                "ratio": statistics.median(front_s) / statistics.median(bare_s),
            },
            "warm": warm(path, tmp, args.requests),
            "host": {"cpus": os.cpu_count(), "load": os.getloadavg()[0]},
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    c = result["cold"]
    print(f"cold start to first token (tiny model, vLLM CPU build; {args.cold_runs} runs each, alternating)")
    print(f"  bare vllm serve: {', '.join(f'{s:.1f}' for s in c['bare_vllm_serve_s'])} s (median {c['bare_median_s']:.1f})")
    print(
        f"  front door     : {', '.join(f'{s:.1f}' for s in c['front_door_s'])} s (median {c['front_median_s']:.1f}); "
        f"ratio {c['ratio']:.3f}"
    )
    print(f"warm model, {args.requests} requests per path, alternating")
    for label, w in result["warm"].items():
        print(
            f"  {label:<21} direct p50 {w['direct_p50_ms']:.2f} ms (p90 {w['direct_p90_ms']:.2f}), front door p50 "
            f"{w['front_p50_ms']:.2f} ms (p90 {w['front_p90_ms']:.2f}); added p50 {w['added_p50_ms']:+.2f} ms "
            f"(95 % interval {w['added_ci95_ms'][0]:+.2f} .. {w['added_ci95_ms'][1]:+.2f})"
        )
    print(f"host: {result['host']['cpus']} CPUs, load average {result['host']['load']:.1f}")


if __name__ == "__main__":
    main()
