"""Overhead of the sampling-preset proxy: latency and throughput through the proxy vs direct.

Backend: a small starlette/uvicorn app returning canned OpenAI-shaped responses (a chat
completion, or an SSE stream of 8 chunks), so the figures are the proxy's cost, not a model's.
Backend and proxy each run in their own process on loopback; the load generator (httpx, async,
one pooled client) runs here. Request counts are bounded.

    python benchmarks/proxy_overhead.py [--requests 1000] [--concurrency 8] [--port 8165]

Latency: sequential requests (p50/p99 of the full response; for streams, time to the first chunk).
Throughput: `--concurrency` requests in flight, requests/s over `--requests` requests.
Targets: p50 overhead <= 1 ms, throughput through the proxy >= 95 % of direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import httpx

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


async def measure(url: str, model: str, stream: bool, n: int, concurrency: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=64)) as client:
        for _ in range(50):  # warm-up: connections, caches
            await one(client, url, model, stream)
        lat = [await one(client, url, model, stream) for _ in range(n)]
        sem = asyncio.Semaphore(concurrency)

        async def bounded():
            async with sem:
                await one(client, url, model, stream)

        t0 = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(n)))
        rps = n / (time.perf_counter() - t0)
    return {"p50_ms": statistics.median(lat) * 1000, "p99_ms": pct(lat, 0.99) * 1000, "rps": rps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000, help="requests per measurement (latency and throughput each)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--port", type=int, default=8165, help="backend port; the proxy uses the next one")
    ap.add_argument("--serve", choices=["backend", "proxy"], help=argparse.SUPPRESS)
    ap.add_argument("--backend-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.backend_port)
        return
    n = min(args.requests, 20000)
    procs = [start("backend", args.port, 0), start("proxy", args.port + 1, args.port)]
    direct, proxied = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.port + 1}"
    try:
        print(f"backend: starlette/uvicorn app with canned OpenAI responses (chat completion; SSE of {STREAM_CHUNKS} chunks), "
              f"loopback; {n} requests per figure, throughput at concurrency {args.concurrency}; cpus={os.cpu_count()}")
        print(f"{'mode':<10} {'path':<7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        results = {}
        for stream in (False, True):
            mode = "stream" if stream else "complete"
            d = asyncio.run(measure(direct, "tiny-cpu", stream, n, args.concurrency))
            p = asyncio.run(measure(proxied, "tiny-cpu-thinking-coding", stream, n, args.concurrency))
            results[mode] = (d, p)
            for label, r in (("direct", d), ("proxy", p)):
                print(f"{mode:<10} {label:<7} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['rps']:8.0f}")
        print()
        for mode, (d, p) in results.items():
            what = "time to first chunk" if mode == "stream" else "full response"
            over = p["p50_ms"] - d["p50_ms"]
            ratio = p["rps"] / d["rps"] * 100
            print(f"{mode}: p50 overhead {over:+.3f} ms ({what}; target <= 1 ms: {'met' if over <= 1 else 'NOT met'}), "
                  f"throughput {ratio:.0f} % of direct (target >= 95 %: {'met' if ratio >= 95 else 'NOT met'})")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
