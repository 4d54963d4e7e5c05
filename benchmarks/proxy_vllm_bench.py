"""The proxy under vLLM's own benchmark client: `vllm bench serve` direct and through the proxy, alternating.

Run as `python benchmarks/proxy_overhead.py --client vllm-bench [--pin] [--rounds 3] [--requests 80]
[--concurrency 8] [--preset NAME] [--json]` (this module holds that mode).

The real vLLM CPU server with the scripted tiny model, and the proxy in its own process; the
client is `vllm bench serve --backend openai-chat` from the vLLM environment (random dataset,
64 input / 64 output tokens with ignore_eos, streamed, the tiny model's tokenizer, offline).
Each round runs it direct and through the proxy (the order flips every round, so load from other
work on the machine falls on both alike) and reads its saved result: median TPOT, ITL and TTFT,
requests/s and output tokens/s. The proxy's CPU time (psutil, user + system) is read when the
client prints "Starting main benchmark run..." and again at its result banner, so its start-up
and warm-up requests are not counted; the proxy's idle CPU over the same span of a direct run is
taken off. Per chunk = that CPU / the SSE events relayed (from the detailed result: one per
event with choices, plus the usage event and [DONE]); per request = that CPU / requests.

With `--floor` a third path goes through a bare TCP relay (asyncio protocols on uvloop, bytes in,
bytes out, no HTTP), measured the same way in the same rounds: the least any relaying process
costs per chunk on this host (system calls, loopback TCP, the event loop), to read the proxy's
figure against. With `--preset` the relay path sends the preset's values like the direct one.

With `--preset NAME` the proxied runs ask for `tiny-cpu-NAME` and the direct ones send the
preset's values themselves (--extra-body), so both ask the engine for the same sampling.
Every round is checked for plausibility from its own figures (servectl.bench.plausibility: all requests
completed with the asked length, figures consistent, tokens streamed rather than read as one burst); a
broken round is printed with its reason and left out of the medians.

Targets (issue 20): proxy CPU per chunk <= 20 us; with --pin (the proxy on a CPU of its own),
median TPOT within 3 % of direct and throughput >= 97 % of direct.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

INPUT_LEN = OUTPUT_LEN = 64
TARGET_CHUNK_US = 20.0
TARGET_TPOT_PCT = 3.0
TARGET_THROUGHPUT_PCT = 97.0
SERVED = "tiny-cpu"


def serve_tcp_relay(port: int, backend_port: int) -> None:
    """A bare TCP relay on 127.0.0.1:PORT to BACKEND_PORT, in the foreground (the --floor reference)."""
    import asyncio

    import uvloop

    class Upstream(asyncio.Protocol):
        def __init__(self, client: asyncio.Transport):
            self.client = client

        def data_received(self, data: bytes) -> None:
            self.client.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self.client.close()

    class Client(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport, self.upstream, self.early = transport, None, []
            asyncio.ensure_future(self.connect())

        async def connect(self) -> None:
            loop = asyncio.get_running_loop()
            self.upstream, _ = await loop.create_connection(lambda: Upstream(self.transport), "127.0.0.1", backend_port)
            for data in self.early:
                self.upstream.write(data)

        def data_received(self, data: bytes) -> None:
            if self.upstream is None:
                self.early.append(data)
            else:
                self.upstream.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.upstream is not None:
                self.upstream.close()

    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.install()
    asyncio.run(run())


def bench_command(url: str, model_name: str, extra_body: dict | None, out_dir: str, prompts: int, concurrency: int) -> list[str]:
    from launch_overhead import model_dir

    from servectl.launch.runners import vllm_executable
    from servectl.vllmenv.location import find_vllm_python

    vllm = vllm_executable(find_vllm_python())[:-1]  # the `vllm` command, without its "serve"
    cmd = [
        *vllm,
        "bench",
        "serve",
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        url,
        "--model",
        SERVED,
        "--served-model-name",
        model_name,
        "--tokenizer",
        model_dir(None),
        "--dataset-name",
        "random",
        "--random-input-len",
        str(INPUT_LEN),
        "--random-output-len",
        str(OUTPUT_LEN),
        "--ignore-eos",
        "--num-prompts",
        str(prompts),
        "--max-concurrency",
        str(concurrency),
        "--num-warmups",
        str(concurrency),
        "--seed",
        "0",
        "--disable-tqdm",
        "--percentile-metrics",
        "ttft,tpot,itl",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        out_dir,
        "--result-filename",
        "result.json",
    ]
    if extra_body:
        cmd += ["--extra-body", json.dumps(extra_body)]
    return cmd


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def run_once(cmd: list[str], relays: dict[str, psutil.Process], concurrency: int) -> dict:
    """One `vllm bench serve`; its saved figures, each relay's CPU seconds over the main run, and `broken`: why the
    round's figures cannot be believed (servectl.bench.plausibility; empty when they can)."""
    from servectl.bench.plausibility import from_vllm_result, problems

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    out_dir = cmd[cmd.index("--result-dir") + 1]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    marks: list[dict[str, float]] = []
    for line in proc.stdout:
        tail = [*tail[-40:], line]
        if (not marks and line.startswith("Starting main benchmark run")) or (
            len(marks) == 1 and "Serving Benchmark Result" in line
        ):
            marks.append({name: cpu_seconds(p) for name, p in relays.items()})
    if proc.wait() != 0 or len(marks) != 2:
        raise SystemExit(f"vllm bench serve failed (exit {proc.returncode}):\n{''.join(tail)}")
    r = json.loads((Path(out_dir) / "result.json").read_text())
    events = sum(len(itl) + 1 for itl in r["itls"]) + 2 * r["completed"]  # + usage event + [DONE] each
    return {
        "tpot_ms": r["median_tpot_ms"],
        "itl_ms": r["median_itl_ms"],
        "ttft_ms": r["median_ttft_ms"],
        "req_s": r["request_throughput"],
        "tok_s": r["output_throughput"],
        "duration_s": r["duration"],
        "requests": max(r["completed"], 1),
        "events": events,
        "cpu_s": {name: marks[1][name] - marks[0][name] for name in relays},
        "broken": problems(from_vllm_result(r, asked_output_len=OUTPUT_LEN, concurrency=concurrency)),
    }


def measure(
    urls: dict[str, str], relays: dict[str, psutil.Process], rounds: int, prompts: int, concurrency: int, preset: str | None
) -> dict[str, list[dict]]:
    """Every path (direct, proxy, and relay with --floor) once per round, the order rotating round by round."""
    extra = None
    model = SERVED
    if preset:
        from servectl.catalog.presets import select_presets
        from servectl.proxy.app import apply_preset

        extra = apply_preset({}, select_presets(preset)[preset], SERVED, chat=True, policy="preset-wins")
        extra.pop("model")
        model = f"{SERVED}-{preset}"
    labels = list(urls)
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory(prefix="servectl-vllm-bench-") as tmp:
        for i in range(rounds):
            for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
                proxied = label == "proxy"
                cmd = bench_command(
                    urls[label],
                    model if proxied else SERVED,
                    None if proxied else extra,
                    os.path.join(tmp, f"{label}-{i}"),
                    prompts,
                    concurrency,
                )
                run = run_once(cmd, relays, concurrency)
                runs[label].append(run)
                verdict = f" BROKEN: {'; '.join(run['broken'])}" if run["broken"] else ""
                print(
                    f"round {i + 1}/{rounds} {label:<6} TPOT {run['tpot_ms']:.2f} ms, {run['req_s']:.2f} req/s{verdict}",
                    file=sys.stderr,
                    flush=True,
                )
    for name in relays:
        # its idle CPU (uvicorn's housekeeping tick) per second while the others' runs ran
        others = [r for label in labels if label != name for r in runs[label]]
        idle = sum(r["cpu_s"][name] for r in others) / sum(r["duration_s"] for r in others)
        for r in runs[name]:
            own = max(0.0, r["cpu_s"][name] - idle * r["duration_s"])
            r["cpu_us_per_chunk"] = own / r["events"] * 1e6
            r["cpu_ms_per_request"] = own / r["requests"] * 1e3
    return runs


FIGURES = ("tpot_ms", "itl_ms", "ttft_ms", "req_s", "tok_s")


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Medians over each path's plausible rounds only; a path without one has no figures (None), never the
    figures of a broken round."""
    good = {label: [r for r in rs if not r["broken"]] for label, rs in runs.items()}
    med = {label: ({k: statistics.median(r[k] for r in rs) for k in FIGURES} if rs else None) for label, rs in good.items()}
    out: dict = {
        "median": med,
        "rounds_used": {label: len(rs) for label, rs in good.items()},
        "rounds_broken": {label: len(runs[label]) - len(rs) for label, rs in good.items()},
    }
    d = med["direct"]
    for label in runs:
        if label == "direct":
            continue
        m, rs = med[label], good[label]
        out[label] = {
            "tpot_pct_over_direct": (m["tpot_ms"] / d["tpot_ms"] - 1) * 100 if m and d else None,
            "throughput_pct_of_direct": m["req_s"] / d["req_s"] * 100 if m and d else None,
            "cpu_us_per_chunk": statistics.median(r["cpu_us_per_chunk"] for r in rs) if rs else None,
            "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in rs) if rs else None,
        }
    return out


def _pct(value: float | None, fmt: str) -> str:
    return "n/a (no plausible round)" if value is None else format(value, fmt)


def report(runs: dict[str, list[dict]], summary: dict, setup: dict) -> None:
    print(
        f"vllm bench serve --backend openai-chat, random {INPUT_LEN} in / {OUTPUT_LEN} out (ignore_eos), "
        f"{setup['requests']} prompts, concurrency {setup['concurrency']}, {setup['rounds']} rounds of "
        f"{' / '.join(runs)} in rotating order; model {setup['model']}; cpus={setup['cpus']} ({setup['placement']}), "
        f"load average {setup['loadavg_1m']:.1f}"
    )
    print(
        f"{'round':<6} {'path':<7} {'TPOT ms':>8} {'ITL ms':>7} {'TTFT ms':>8} {'req/s':>7} {'tok/s':>7} "
        f"{'events':>7} {'its CPU us/chunk':>17} {'ms/request':>11}"
    )
    for i in range(setup["rounds"]):
        for label, rs in runs.items():
            r = rs[i]
            cpu = (
                f"{r['cpu_us_per_chunk']:17.1f} {r['cpu_ms_per_request']:11.3f}" if label != "direct" else f"{'-':>17} {'-':>11}"
            )
            print(
                f"{i + 1:<6} {label:<7} {r['tpot_ms']:8.2f} {r['itl_ms']:7.2f} {r['ttft_ms']:8.1f} {r['req_s']:7.2f} "
                f"{r['tok_s']:7.0f} {r['events']:7d} {cpu}" + ("  BROKEN (not in the medians)" if r["broken"] else "")
            )
    for label, m in summary["median"].items():
        used = f"  ({summary['rounds_used'][label]} of {setup['rounds']} rounds)"
        if m is None:
            print(f"{'median':<6} {label:<7} no plausible round")
        else:
            print(
                f"{'median':<6} {label:<7} {m['tpot_ms']:8.2f} {m['itl_ms']:7.2f} {m['ttft_ms']:8.1f} {m['req_s']:7.2f} "
                f"{m['tok_s']:7.0f}{used}"
            )
    for label, rs in runs.items():
        for i, r in enumerate(rs):
            for reason in r["broken"]:
                print(f"broken: round {i + 1} {label}: {reason}")
    print()
    pinned = setup["placement"].startswith("pinned")
    for label in runs:
        if label == "direct":
            continue
        sm = summary[label]
        chunk, tpot, thr = sm["cpu_us_per_chunk"], sm["tpot_pct_over_direct"], sm["throughput_pct_of_direct"]
        what = "proxy" if label == "proxy" else "bare TCP relay (the floor)"
        if chunk is None:
            print(f"{what}: no plausible round, no figure")
            continue
        target = (
            f" (target <= {TARGET_CHUNK_US:.0f}: {'met' if chunk <= TARGET_CHUNK_US else 'NOT met'})" if label == "proxy" else ""
        )
        print(
            f"{what}: CPU {chunk:.1f} us per chunk{target}, {sm['cpu_ms_per_request']:.3f} ms per request; "
            f"median TPOT {_pct(tpot, '+.1f')} % vs direct, throughput {_pct(thr, '.1f')} % of direct"
            + (
                f" (targets with --pin: TPOT within {TARGET_TPOT_PCT:.0f} %: {'met' if abs(tpot) <= TARGET_TPOT_PCT else 'NOT met'}, "
                f"throughput >= {TARGET_THROUGHPUT_PCT:.0f} %: {'met' if thr >= TARGET_THROUGHPUT_PCT else 'NOT met'})"
                if pinned and label == "proxy" and tpot is not None and thr is not None
                else ""
            )
        )
    if not pinned:
        print("shared cores: a relay's CPU competes with vLLM and the client; --pin gives it a CPU of its own")


def main(args, start_backend, start_relay, pin, stop) -> None:
    """The --client vllm-bench mode of proxy_overhead.py (its process helpers passed in)."""
    if args.backend == "canned":
        raise SystemExit("--client vllm-bench runs against the real vLLM server: use --backend vllm")
    prompts = max(8, min(args.requests or 80, 2000))
    procs = [start_backend("vllm", args.port, args.pin)]
    try:
        procs.append(start_relay("proxy", args.port + 1, args.port))
        if args.floor:
            procs.append(start_relay("tcp-relay", args.port + 2, args.port))
        if args.pin:
            pin(procs)
        urls = {"direct": f"http://127.0.0.1:{args.port}", "proxy": f"http://127.0.0.1:{args.port + 1}"}
        relays = {"proxy": psutil.Process(procs[1].pid)}
        if args.floor:
            urls["relay"] = f"http://127.0.0.1:{args.port + 2}"
            relays["relay"] = psutil.Process(procs[2].pid)
        runs = measure(urls, relays, args.rounds, prompts, args.concurrency, args.preset)
    finally:
        for proc in procs:
            stop(proc)
    summary = summarize(runs)
    setup = {
        "requests": prompts,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "model": f"{SERVED}-{args.preset} (direct and relay: {SERVED} with its values)" if args.preset else SERVED,
        "placement": "pinned: vLLM + client on CPU 0, proxy (and relay) on CPU 1" if args.pin else "not pinned",
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps({"setup": setup, "runs": runs, "summary": summary}, indent=2))
    else:
        report(runs, summary, setup)
