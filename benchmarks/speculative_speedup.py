"""Decode throughput with and without MTP speculation, on the tiny model's two MTP heads (CPU).

For each head (scripted: drafts what the model will say; random: drafts noise) and each setting
(`--speculative off`, `mtp:N`), starts the server with `servectl up tiny-cpu --speculative ...`, runs
`servectl bench` (vLLM's own `vllm bench serve`: random prompts, EOS ignored, temperature 0) and stops
it. Prefix caching is off in every run (speculating on CPU needs that; the same for the baseline).
Prints figures only; what they say about GPUs is in docs/measurements.md. A level whose figures are
implausible (servectl.bench.plausibility) is printed as broken and left out of the table and the ratios.

    python benchmarks/speculative_speedup.py [--depths 1,2,3] [--concurrency 1,4] [--output-len 128]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from servectl.vllmenv.tinymodel import ensure_tiny_model

SERVECTL = [sys.executable, "-m", "servectl"]
NAME = "mtp-bench"


def run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SERVECTL, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"servectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc


def measure(variant: str, speculative: str, opts) -> list[dict]:
    """The result levels of one setting, each with `broken`: why its figures cannot be believed
    (servectl.bench.plausibility; empty when they can)."""
    from servectl.bench.plausibility import from_bench_level, problems

    model = ensure_tiny_model(variant)
    run(
        [
            "up",
            "tiny-cpu",
            "--gpu",
            "cpu",
            "--model-path",
            str(model),
            "--port",
            str(opts.port),
            "--name",
            NAME,
            "--detach",
            "--no-check",
            "--speculative",
            speculative,
            "--",
            "--no-enable-prefix-caching",
        ]
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            run(
                [
                    "bench",
                    NAME,
                    "--concurrency",
                    opts.concurrency,
                    "--num-prompts",
                    str(opts.num_prompts),
                    "--input-len",
                    str(opts.input_len),
                    "--output-len",
                    str(opts.output_len),
                    "-o",
                    str(out),
                ]
            )
            doc = json.loads(out.read_text())
            return [{**r, "broken": problems(from_bench_level(r, doc["protocol"]))} for r in doc["results"]]
    finally:
        run(["down", NAME], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="2", help="MTP depths to compare with off (comma separated)")
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--port", type=int, default=8262)
    ap.add_argument("--variants", default="scripted,random")
    opts = ap.parse_args()
    settings = ["off"] + [f"mtp:{d}" for d in opts.depths.split(",")]
    rows = []
    for variant in opts.variants.split(","):
        base: dict[int, float] = {}
        for setting in settings:
            for r in measure(variant, setting, opts):
                c, tput = r["concurrency"], r["output_throughput"]
                if r["broken"]:  # printed with its reason, never compared or tabled
                    print(f"{variant:8} {setting:6} c={c:<3} BROKEN: {'; '.join(r['broken'])}", flush=True)
                    continue
                if setting == "off":
                    base[c] = tput
                spec = r.get("spec_decode") or {}
                rows.append(
                    (
                        variant,
                        setting,
                        c,
                        tput,
                        r["tpot_ms"]["p50"],
                        tput / base[c] if base.get(c) else None,
                        spec.get("acceptance_rate"),
                        spec.get("acceptance_length"),
                    )
                )
                print(
                    f"{variant:8} {setting:6} c={c:<3} {tput:8.1f} tok/s  TPOT p50 {r['tpot_ms']['p50']:7.2f} ms"
                    + (f"  x{rows[-1][5]:.2f}" if rows[-1][5] else "")
                    + (f"  acceptance {spec['acceptance_rate']:.1f}% (length {spec['acceptance_length']:.2f})" if spec else ""),
                    flush=True,
                )
    print("\n| head | speculative | concurrency | output tok/s | TPOT p50 ms | vs off | acceptance % | acceptance length |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for v, s, c, t, tpot, x, acc, length in rows:
        print(
            f"| {v} | {s} | {c} | {t:.1f} | {tpot:.2f} | {f'x{x:.2f}' if x else '-'} | "
            f"{f'{acc:.1f}' if acc is not None else '-'} | {f'{length:.2f}' if length is not None else '-'} |"
        )


if __name__ == "__main__":
    main()
