"""Time and peak memory of `servectl diagnose` on logs far larger than a start-up log.

    python benchmarks/diagnose_large_log.py [--mib 200] [--line-mib 100] [--runs 1] [--keep DIR]

Two inputs, written to a temporary directory:
- a log of --mib MiB: a real failed vLLM CPU start (tests/data/logs/diagnose/cpu-max-model-len-too-large.log)
  with --mib MiB of ordinary INFO lines inserted after its configuration lines, so the root error is at the
  end and the command line at the start, as in a server that ran for days before it failed;
- one line of --line-mib MiB (no newline at all).
Each runs `python -m servectl diagnose FILE --json` in a fresh process; the figures are its wall time and
its peak resident memory (ru_maxrss of the child), plus the rule the diagnosis found.
Goal: under 10 s and 200 MB for each. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "logs" / "diagnose" / "cpu-max-model-len-too-large.log"
FILLER = (
    b"(APIServer pid=4242) INFO 05-09 07:35:25 [loggers.py:259] Engine 000: Avg prompt throughput: 0.0 tokens/s, "
    b"Avg generation throughput: 12.5 tokens/s, Running: 1 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.4%\n"
)


def big_log(path: Path, mib: int) -> None:
    lines = SOURCE.read_bytes().splitlines(keepends=True)
    split = next((i for i, ln in enumerate(lines) if b"Traceback" in ln or b"Error" in ln), len(lines) // 2)
    block = FILLER * (2**20 // len(FILLER) + 1)
    with open(path, "wb") as out:
        out.writelines(lines[:split])
        for _ in range(mib):
            out.write(block[: 2**20])
        out.writelines(lines[split:])


def one_line(path: Path, mib: int) -> None:
    piece = b"x" * 2**20
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(piece)


# each measurement in a fresh parent, so ru_maxrss of its children is this run's own peak
_WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run([sys.executable, "-m", "servectl", "diagnose", sys.argv[1], "--json"], capture_output=True, text=True)
wall = time.perf_counter() - t
print(json.dumps({"exit": p.returncode, "wall_s": wall, "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "stdout": p.stdout, "stderr": p.stderr[-300:]}))
"""


def measure(path: Path) -> dict:
    out = json.loads(subprocess.run([sys.executable, "-c", _WRAPPER, str(path)], capture_output=True, text=True, cwd=ROOT).stdout)
    try:
        rule = json.loads(out["stdout"]).get("rule")
    except ValueError:
        rule = None
    return {
        "exit": out["exit"],
        "wall_s": round(out["wall_s"], 2),
        "peak_rss_mib": round(out["peak_kib"] / 1024, 1),
        "rule": rule,
        "stderr": out["stderr"].strip()[-160:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=200)
    ap.add_argument("--line-mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="write the inputs here and keep them")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="servectl-diagnose-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # a small run first: the baseline of a fresh `servectl diagnose` process (imports, catalog)
    print("input, exit, wall s, peak RSS MiB, rule")
    print("start-up log as captured (%d KiB): %s" % (SOURCE.stat().st_size // 1024, measure(SOURCE)))
    log = work / "big.log"
    big_log(log, args.mib)
    line = work / "one-line.log"
    one_line(line, args.line_mib)
    for _ in range(args.runs):
        print(f"{log.stat().st_size / 2**20:.0f} MiB log: {measure(log)}")
        print(f"{line.stat().st_size / 2**20:.0f} MiB single line: {measure(line)}")
    if args.keep is None:
        log.unlink()
        line.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
