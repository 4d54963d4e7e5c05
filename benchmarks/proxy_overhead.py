"""Overhead of the sampling-preset proxy: latency and throughput through the proxy vs direct.

Backend: a small starlette/uvicorn app returning canned OpenAI-shaped responses (a chat
completion, or an SSE stream of 8 chunks), so the figures are the proxy's cost, not a model's.
Backend and proxy each run in their own process on loopback; the load generator (httpx, async,
one pooled client) runs here. Request counts are bounded.

    python benchmarks/proxy_overhead.py [--requests 1000] [--concurrency 8] [--port 8165] [--json]

Latency: sequential requests (p50/p99 of the full response; for streams, time to the first chunk).
Throughput: `--concurrency` requests in flight, requests/s over `--requests` requests.
Direct and proxied requests alternate (latency) or run in alternating rounds (throughput), so
load from other work on the machine affects both alike. The proxy's own CPU time per request
(psutil, independent of such load) is printed too: on a machine with fewer cores than the
load generator + proxy + backend need, the proxy's CPU competes with the other two.
Targets: p50 overhead <= 1 ms, throughput through the proxy >= 95 % of direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx
import psutil

CANNED = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "tiny-cpu",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "I am a tiny test model."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
}
STREAM_CHUNKS = 8


def backend_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    body = json.dumps(CANNED).encode()

    async def chat(request: Request):
        data = await request.json()
        if data.get("stream"):
            async def gen():
                for i in range(STREAM_CHUNKS):
                    yield b"data: " + json.dumps({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"
            return StreamingResponse(gen(), media_type="text/event-stream")
        return Response(body, media_type="application/json")

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [{"id": "tiny-cpu", "object": "model"}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])


def serve(role: str, port: int, backend_port: int) -> None:
    import uvicorn

    if role == "backend":
        uvicorn.run(backend_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    else:
        from servectl.presets import select_presets
        from servectl.proxy import serve_proxy

        serve_proxy(f"http://127.0.0.1:{backend_port}", "127.0.0.1", port, "tiny-cpu", select_presets("qwen3.5"))


def start(role: str, port: int, backend_port: int) -> subprocess.Popen:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is already in use; pick another with --port")
    proc = subprocess.Popen([sys.executable, __file__, "--serve", role, "--port", str(port), "--backend-port", str(backend_port)],
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{role} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"{role} did not start")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def one(client: httpx.AsyncClient, url: str, model: str, stream: bool) -> float:
    """Seconds to the full response, or for a stream to its first chunk (the stream is read to the end)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Who are you?"}], "stream": stream}
    t0 = time.perf_counter()
    if stream:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            first = None
            async for _ in r.aiter_raw():
                if first is None:
                    first = time.perf_counter() - t0
            assert r.status_code == 200
            return first
    r = await client.post(url + "/v1/chat/completions", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    return time.perf_counter() - t0


def cpu_seconds(procs: list[psutil.Process]) -> list[float]:
    return [sum(p.cpu_times()[:2]) for p in procs]


async def measure(targets: dict[str, tuple[str, str]], stream: bool, n: int, concurrency: int,
                  procs: dict[str, psutil.Process]) -> dict[str, dict[str, float]]:
    """Direct and proxied measured in alternation, so a busy machine slows both alike."""
    limits = httpx.Limits(max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for url, model in targets.values():  # warm-up: connections, caches
            for _ in range(50):
                await one(client, url, model, stream)
        lat: dict[str, list[float]] = {k: [] for k in targets}
        for i in range(n):  # sequential latency, one request at a time, alternating
            for label, (url, model) in (targets.items() if i % 2 else reversed(targets.items())):
                lat[label].append(await one(client, url, model, stream))
        elapsed = dict.fromkeys(targets, 0.0)
        cpu = {k: [0.0, 0.0] for k in targets}  # backend, proxy CPU seconds spent during the throughput runs
        rounds = 10
        for _ in range(rounds):  # throughput at `concurrency`, in alternating rounds
            for label, (url, model) in targets.items():
                sem = asyncio.Semaphore(concurrency)

                async def bounded():
                    async with sem:
                        await one(client, url, model, stream)

                c0 = cpu_seconds(list(procs.values()))
                t0 = time.perf_counter()
                await asyncio.gather(*(bounded() for _ in range(n // rounds)))
                elapsed[label] += time.perf_counter() - t0
                c1 = cpu_seconds(list(procs.values()))
                cpu[label] = [a + (y - x) for a, x, y in zip(cpu[label], c0, c1)]
    done = (n // rounds) * rounds
    return {label: {"p50_ms": statistics.median(v) * 1000, "p99_ms": pct(v, 0.99) * 1000, "rps": done / elapsed[label],
                    "backend_cpu_ms_per_req": cpu[label][0] / done * 1000, "proxy_cpu_ms_per_req": cpu[label][1] / done * 1000}
            for label, v in lat.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000, help="requests per measurement (latency and throughput each)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--port", type=int, default=8165, help="backend port; the proxy uses the next one")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--serve", choices=["backend", "proxy"], help=argparse.SUPPRESS)
    ap.add_argument("--backend-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.backend_port)
        return
    n = max(10, min(args.requests, 20000))
    procs = [start("backend", args.port, 0), start("proxy", args.port + 1, args.port)]
    watched = {"backend": psutil.Process(procs[0].pid), "proxy": psutil.Process(procs[1].pid)}
    targets = {"direct": (f"http://127.0.0.1:{args.port}", "tiny-cpu"),
               "proxy": (f"http://127.0.0.1:{args.port + 1}", "tiny-cpu-thinking-coding")}
    try:
        results = {mode: asyncio.run(measure(targets, mode == "stream", n, args.concurrency, watched))
                   for mode in ("complete", "stream")}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    summary = {}
    for mode, r in results.items():
        d, p = r["direct"], r["proxy"]
        summary[mode] = {"p50_overhead_ms": p["p50_ms"] - d["p50_ms"], "p99_overhead_ms": p["p99_ms"] - d["p99_ms"],
                         "throughput_pct_of_direct": p["rps"] / d["rps"] * 100,
                         "proxy_cpu_ms_per_req": p["proxy_cpu_ms_per_req"]}
    setup = {"backend": "starlette/uvicorn app with canned OpenAI responses (chat completion; SSE of "
                        f"{STREAM_CHUNKS} chunks), loopback, separate processes",
             "requests": n, "concurrency": args.concurrency, "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]}
    if args.json:
        print(json.dumps({"setup": setup, "results": results, "summary": summary}, indent=2))
        return
    print(f"backend: {setup['backend']}; {n} requests per figure (direct and proxy alternating), "
          f"throughput at concurrency {args.concurrency}; cpus={setup['cpus']}, load average {setup['loadavg_1m']:.1f}")
    print(f"{'mode':<10} {'path':<7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'backend cpu ms/req':>19} {'proxy cpu ms/req':>17}")
    for mode, r in results.items():
        for label, x in r.items():
            proxy_cpu = f"{x['proxy_cpu_ms_per_req']:17.3f}" if label == "proxy" else f"{'-':>17}"
            print(f"{mode:<10} {label:<7} {x['p50_ms']:8.3f} {x['p99_ms']:8.3f} {x['rps']:8.0f} "
                  f"{x['backend_cpu_ms_per_req']:19.3f} {proxy_cpu}")
    print()
    for mode, sm in summary.items():
        what = "time to first chunk" if mode == "stream" else "full response"
        over, ratio = sm["p50_overhead_ms"], sm["throughput_pct_of_direct"]
        print(f"{mode}: p50 overhead {over:+.3f} ms ({what}; target <= 1 ms: {'met' if over <= 1 else 'NOT met'}), "
              f"throughput {ratio:.0f} % of direct (target >= 95 %: {'met' if ratio >= 95 else 'NOT met'}), "
              f"proxy CPU {sm['proxy_cpu_ms_per_req']:.3f} ms per request")


if __name__ == "__main__":
    main()
