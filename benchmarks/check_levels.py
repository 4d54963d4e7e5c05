"""How long `servectl check --level quick|full|soak` and `servectl bench` take on the tiny CPU model.

    .venv/bin/python benchmarks/check_levels.py [--port 8245] [--soak 30s] [--kv 64M] [--max-num-seqs 8]

Starts one real vLLM CPU server of the scripted tiny model (--max-model-len 2048), times each level
through the same functions the CLI calls (servectl.verify.levels.run_level, servectl.bench.runner
.run_bench), prints the wall times and each check's status, and stops the server. Figures depend
on the host's load: run it on a quiet machine for the table in docs/measurements.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from conftest import VllmServer  # noqa: E402  (the tests' real-server helper)

from servectl.bench.protocol import Protocol  # noqa: E402
from servectl.bench.runner import Target, run_bench  # noqa: E402
from servectl.verify.levels import run_level  # noqa: E402
from servectl.verify.soak import parse_duration  # noqa: E402
from servectl.vllmenv.tinymodel import ensure_tiny_model  # noqa: E402


def timed(label: str, fn):
    start = time.monotonic()
    result = fn()
    print(f"{label:<28} {time.monotonic() - start:7.1f} s", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8245)
    ap.add_argument("--soak", default="30s")
    ap.add_argument("--kv", default="64M", help="--kv-cache-memory-bytes of the server")
    ap.add_argument("--max-num-seqs", default="8")
    args = ap.parse_args()
    server = VllmServer(
        ensure_tiny_model("scripted"),
        port=args.port,
        extra=("--kv-cache-memory-bytes", args.kv, "--max-num-seqs", args.max_num_seqs),
    )
    try:
        timed("server start (to /health)", server.wait_ready)
        for level, extra in (("quick", {}), ("full", {}), ("soak", {"duration_s": parse_duration(args.soak)})):
            report = timed(f"check --level {level}", lambda: run_level(server.url, level, **extra))
            print("   " + ", ".join(f"{c.name} {c.status}" for c in report.checks if c.status != "skipped"))
            for c in report.checks:
                if c.name in ("concurrency", "soak"):
                    print(f"   {c.name}: {c.detail}")
        protocol = Protocol(concurrency=[1, 2], num_prompts=8, input_len=64, output_len=16)
        doc, _ = timed("bench 1,2 (8 prompts 64+16)", lambda: run_bench(Target(url=server.url, local=True), protocol))
        for r in doc["results"]:
            print(
                f"   c={r['concurrency']}: {r['request_throughput']:.2f} req/s, {r['output_throughput']:.1f} tok/s, "
                f"TTFT p50 {r['ttft_ms']['p50']:.1f} ms, TPOT p50 {r['tpot_ms']['p50']:.2f} ms"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
