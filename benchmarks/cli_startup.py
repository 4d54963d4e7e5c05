"""Cold-start wall time of the command line: `servectl --help`, `servectl render ... --format argv`,
`servectl plan ...` and `python -c pass`, each as a fresh process, median of N rounds in which the
four commands alternate (so a busy moment of the machine hits all of them alike). Prints the medians
and each command's ratio to `python -c pass`. Target: render and plan at most 8x `python -c pass`.

servectl is byte-compiled first, as installing a wheel does (and scripts/demo and scripts/test do):
an editable checkout run with PYTHONDONTWRITEBYTECODE=1 never writes .pyc files, and every start
would compile servectl's sources again. `--no-compile` measures the checkout as it is.

    .venv/bin/python benchmarks/cli_startup.py [--runs 10] [--json] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERVECTL = [sys.executable, "-m", "servectl"]
PACKAGE = Path(__file__).resolve().parents[1] / "servectl"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "servectl --help": [*SERVECTL, "--help"],
    "servectl render": [*SERVECTL, "render", "qwen3.5-35b-a3b-mxfp4", "--gpu", "rtx-5090", "--format", "argv"],
    "servectl plan": [*SERVECTL, "plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--max-model-len", "32768"],
    # a checkpoint directory (made in main(): a public config.json and a header-only safetensors file)
    "servectl plan DIR": [
        *SERVECTL,
        "plan",
        "DIR",
        "--gpu",
        "rtx-pro-6000-blackwell",
        "--vllm-version",
        "0.32.0",
        "--max-model-len",
        "32768",
    ],
}
CONFIG = PACKAGE.parent / "tests" / "data" / "configs" / "gemma-3-27b-text" / "config.json"


def checkpoint_dir(root: Path) -> Path:
    """config.json + one safetensors file whose header declares 54 GB of BF16 weights (no tensor data: servectl reads
    headers only)."""
    import struct

    out = root / "gemma-3-27b-text"
    out.mkdir()
    (out / "config.json").write_bytes(CONFIG.read_bytes())
    n = 27 * 10**9
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [n], "data_offsets": [0, 2 * n]}}).encode()
    (out / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return out


TARGET_RATIO = 8.0


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parent)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[2:])} failed: {proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="Do not byte-compile servectl first.")
    args = ap.parse_args()
    import tempfile

    tmp = tempfile.TemporaryDirectory(prefix="servectl-startup-")
    directory = str(checkpoint_dir(Path(tmp.name)))
    for argv in COMMANDS.values():
        argv[:] = [directory if a == "DIR" else a for a in argv]
    if not args.no_compile:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(PACKAGE)], check=True, stdout=subprocess.DEVNULL)
    for argv in COMMANDS.values():  # warm the file cache (and .pyc files) once
        wall(argv)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            samples[name].append(wall(argv))
    base = statistics.median(samples["python -c pass"])
    rows = {name: {"median_ms": statistics.median(s) * 1000, "ratio": statistics.median(s) / base} for name, s in samples.items()}
    if args.json:
        print(
            json.dumps(
                {"runs": args.runs, "compiled": not args.no_compile, "target_ratio": TARGET_RATIO, "commands": rows}, indent=2
            )
        )
        return
    print(f"{'command':<18} {'median ms':>10} {'x python -c pass':>17}   ({args.runs} alternating runs)")
    for name, r in rows.items():
        flag = (
            ""
            if name in ("python -c pass", "servectl --help")
            else ("  ok" if r["ratio"] <= TARGET_RATIO else f"  above {TARGET_RATIO:g}x")
        )
        print(f"{name:<18} {r['median_ms']:>10.1f} {r['ratio']:>17.1f}{flag}")


if __name__ == "__main__":
    main()
