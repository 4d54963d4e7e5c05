"""Overhead of the sampling-preset proxy: latency and throughput through the proxy vs direct.

Two local backends (`--backend`):
- canned (default): a small starlette/uvicorn app returning canned OpenAI-shaped responses (a
  chat completion, or an SSE stream of 8 chunks), so the figures are the proxy's own cost;
- vllm: the real vLLM CPU server with the scripted tiny model (`servectl bootstrap --cpu`),
  4 generated tokens per request (ignore_eos), the backend the proxy is made for.
Backend and proxy each run in their own process on loopback; the load generator runs here
(`--client aiohttp`, the default: a lean async client, so the figures are not the client's;
`--client httpx`: the openai client's transport, which spends 1.5-3 ms of CPU per request itself).
Direct requests carry the body the proxy would send (the preset already applied), so both paths
ask the backend for the same work.

    python benchmarks/proxy_overhead.py [--backend canned|vllm] [--client aiohttp|httpx] [--pin]
                                        [--requests N] [--concurrency 8] [--json]
    python benchmarks/proxy_overhead.py --client vllm-bench [--pin] [--rounds 3] [--requests 80] [--preset NAME]
                                        (vLLM's own client against the real server: proxy_vllm_bench.py)

Latency: sequential requests (p50/p99 of the full response; for streams, time to the first chunk).
Throughput: `--concurrency` requests in flight, requests/s over `--requests` requests.
Direct and proxied requests alternate (latency) or run in alternating rounds (throughput), so
load from other work on the machine affects both alike. The proxy's own CPU time per request
(psutil, independent of such load) is printed too: on a machine with fewer cores than the
load generator + proxy + backend need, the proxy's CPU competes with the other two, and
throughput is the machine's CPU divided among three processes instead of two. `--pin` gives
the proxy a CPU of its own (backend and load generator on CPU 0, the proxy on CPU 1), as on a
GPU server, where the proxy never shares a core with vLLM's API server.
Targets: p50 overhead <= 1 ms, throughput through the proxy >= 95 % of direct.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time

import httpx
import psutil

CANNED = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "tiny-cpu",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "I am a tiny test model."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
}
STREAM_CHUNKS = 8
PRESET = "thinking-coding"
VLLM_TOKENS = 4  # few tokens: the request overhead weighs more, and full-response latency varies less


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
                    yield (
                        b"data: "
                        + json.dumps(
                            {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}
                        ).encode()
                        + b"\n\n"
                    )
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
    elif role == "tcp-relay":
        from proxy_vllm_bench import serve_tcp_relay

        serve_tcp_relay(port, backend_port)
    else:
        from servectl.catalog.presets import select_presets
        from servectl.proxy.app import serve_proxy

        serve_proxy(f"http://127.0.0.1:{backend_port}", "127.0.0.1", port, "tiny-cpu", select_presets("qwen3.5"))


def start(role: str, port: int, backend_port: int) -> subprocess.Popen:
    if not port_free(port):
        raise SystemExit(f"port {port} is already in use; pick another with --port")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", role, "--port", str(port), "--backend-port", str(backend_port)],
        start_new_session=True,
    )
    return ready(proc, port, "/v1/models", role, timeout=20)


def ready(proc: subprocess.Popen, port: int, path: str, what: str, timeout: float | None = None) -> subprocess.Popen:
    """`proc` once it answers on PATH; stopped (its whole group) when it does not."""
    from launch_overhead import wait_ready

    try:
        wait_ready(proc, port, path=path, what=what, timeout=timeout)
    except BaseException:
        stop(proc)
        raise
    return proc


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def p50_difference_ci(proxied: list[float], direct: list[float], resamples: int = 1000) -> tuple[float, float]:
    """95 % bootstrap interval of median(proxied) - median(direct): how far noise alone moves the figure."""
    rng = random.Random(0)
    diffs = sorted(
        statistics.median(rng.choices(proxied, k=len(proxied))) - statistics.median(rng.choices(direct, k=len(direct)))
        for _ in range(resamples)
    )
    return diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples) - 1]


def request_body(preset_applied: bool, stream: bool, backend: str) -> dict:
    """The chat request; with preset_applied, the body the proxy sends the backend for the virtual name."""
    from servectl.catalog.presets import select_presets
    from servectl.proxy.app import apply_preset

    body = {"model": f"tiny-cpu-{PRESET}", "messages": [{"role": "user", "content": "Who are you?"}], "stream": stream}
    if backend == "vllm":
        body.update(max_tokens=VLLM_TOKENS, ignore_eos=True)
    if preset_applied:
        body = apply_preset(body, select_presets("qwen3.5")[PRESET], "tiny-cpu", chat=True, policy="preset-wins")
    return body


class AiohttpLoad:
    """The default load generator: aiohttp's pooled client (C HTTP parser)."""

    async def __aenter__(self):
        import aiohttp

        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120), connector=aiohttp.TCPConnector(limit=64))
        return self

    async def __aexit__(self, *exc):
        await self.session.close()

    async def one(self, url: str, body: bytes, stream: bool) -> float:
        """Seconds to the full response, or for a stream to its first chunk (the stream is read to the end)."""
        t0 = time.perf_counter()
        async with self.session.post(url + "/v1/chat/completions", data=body, headers=JSON_HEADERS) as r:
            if stream:
                first = None
                async for _ in r.content.iter_any():
                    if first is None:
                        first = time.perf_counter() - t0
            else:
                await r.read()
            assert r.status == 200, r.status
        return first if stream else time.perf_counter() - t0


class HttpxLoad:
    """httpx's async client, the transport of the openai client."""

    async def __aenter__(self):
        self.client = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_keepalive_connections=64))
        return self

    async def __aexit__(self, *exc):
        await self.client.aclose()

    async def one(self, url: str, body: bytes, stream: bool) -> float:
        t0 = time.perf_counter()
        if stream:
            async with self.client.stream("POST", url + "/v1/chat/completions", content=body, headers=JSON_HEADERS) as r:
                first = None
                async for _ in r.aiter_raw():
                    if first is None:
                        first = time.perf_counter() - t0
                assert r.status_code == 200
                return first
        r = await self.client.post(url + "/v1/chat/completions", content=body, headers=JSON_HEADERS)
        assert r.status_code == 200, r.text
        return time.perf_counter() - t0


LOAD_GENERATORS = {"aiohttp": AiohttpLoad, "httpx": HttpxLoad}
JSON_HEADERS = {"content-type": "application/json"}


def cpu_seconds(procs: list[psutil.Process]) -> list[float]:
    return [sum(p.cpu_times()[:2]) for p in procs]


async def measure(
    urls: dict[str, str],
    backend: str,
    client: str,
    stream: bool,
    n: int,
    concurrency: int,
    procs: dict[str, psutil.Process],
    warmup: int,
) -> dict[str, dict[str, float]]:
    """Direct and proxied measured in alternation, so a busy machine slows both alike."""
    targets = {label: (url, json.dumps(request_body(label == "direct", stream, backend)).encode()) for label, url in urls.items()}
    watched = [*procs.values(), psutil.Process()]  # backend, proxy, this load generator
    async with LOAD_GENERATORS[client]() as load:
        for url, body in targets.values():  # warm-up: connections, caches
            for _ in range(warmup):
                await load.one(url, body, stream)
        lat: dict[str, list[float]] = {k: [] for k in targets}
        for i in range(n):  # sequential latency, one request at a time, alternating
            for label, (url, body) in targets.items() if i % 2 else reversed(targets.items()):
                lat[label].append(await load.one(url, body, stream))
        elapsed = dict.fromkeys(targets, 0.0)
        cpu = {k: [0.0] * len(watched) for k in targets}  # CPU seconds spent during the throughput runs
        rounds = 10
        for _ in range(rounds):  # throughput at `concurrency`, in alternating rounds
            for label, (url, body) in targets.items():
                sem = asyncio.Semaphore(concurrency)

                async def bounded():
                    async with sem:
                        await load.one(url, body, stream)

                c0 = cpu_seconds(watched)
                t0 = time.perf_counter()
                await asyncio.gather(*(bounded() for _ in range(n // rounds)))
                elapsed[label] += time.perf_counter() - t0
                c1 = cpu_seconds(watched)
                cpu[label] = [a + (y - x) for a, x, y in zip(cpu[label], c0, c1)]
    done = (n // rounds) * rounds
    return {
        label: {
            "p50_ms": statistics.median(v) * 1000,
            "p99_ms": pct(v, 0.99) * 1000,
            "rps": done / elapsed[label],
            "backend_cpu_ms_per_req": cpu[label][0] / done * 1000,
            "proxy_cpu_ms_per_req": cpu[label][1] / done * 1000,
            "client_cpu_ms_per_req": cpu[label][2] / done * 1000,
            "latencies_ms": [x * 1000 for x in v],
        }
        for label, v in lat.items()
    }


def pin(procs: list[subprocess.Popen]) -> None:
    """Backend (every thread of it and its children) and this load generator on CPU 0, the proxy (and any
    further relay, --floor) on CPU 1."""
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")

    def place(pid: int, cpu: int) -> None:
        root = psutil.Process(pid)
        for proc in (root, *root.children(recursive=True)):
            for thread in proc.threads():  # sched_setaffinity on a pid moves only its main thread
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(thread.id, {cpu})

    place(procs[0].pid, 0)
    place(os.getpid(), 0)
    for proc in procs[1:]:
        place(proc.pid, 1)


def start_backend(kind: str, port: int, pinned: bool) -> subprocess.Popen:
    if kind == "canned":
        return start("backend", port, 0)
    from launch_overhead import launch_bare, model_dir

    if not port_free(port):
        raise SystemExit(f"port {port} is already in use; pick another with --port")
    print(f"starting the vLLM CPU server with the tiny model on port {port} (about a minute)...", file=sys.stderr, flush=True)
    if pinned:  # vLLM binds its OpenMP threads itself: one thread, on CPU 0
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0"
    return ready(launch_bare(model_dir(None), port), port, "/health", "vllm serve")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def stop(proc: subprocess.Popen) -> None:
    from _procgroup import stop_child_group  # benchmarks/_procgroup.py

    stop_child_group(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--backend",
        choices=["canned", "vllm"],
        help="canned responses (the proxy's own cost; the default) or the real vLLM CPU server with the tiny model "
        "(the default with --client vllm-bench)",
    )
    ap.add_argument(
        "--client",
        choices=[*sorted(LOAD_GENERATORS), "vllm-bench"],
        default="aiohttp",
        help="the load generator's HTTP client, or vLLM's own benchmark client (`vllm bench serve`, "
        "see benchmarks/proxy_vllm_bench.py)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="vllm-bench: direct/proxy rounds")
    ap.add_argument("--preset", help="vllm-bench: proxied runs ask for tiny-cpu-PRESET, direct ones send its values")
    ap.add_argument("--pin", action="store_true", help="backend and load generator on CPU 0, the proxy on CPU 1")
    ap.add_argument(
        "--requests",
        type=int,
        help="requests per measurement (latency and throughput each); "
        "default 1000 (canned), 200 (vllm), 80 (vllm-bench: prompts per run)",
    )
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--port", type=int, default=8165, help="backend port; the proxy uses the next one")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument(
        "--floor",
        action="store_true",
        help="vllm-bench: also a path through a bare TCP relay (no HTTP), the least a relaying process costs on this host",
    )
    ap.add_argument("--serve", choices=["backend", "proxy", "tcp-relay"], help=argparse.SUPPRESS)
    ap.add_argument("--backend-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.backend_port)
        return
    if args.client == "vllm-bench":
        import proxy_vllm_bench

        args.backend = args.backend or "vllm"
        proxy_vllm_bench.main(args, start_backend, start, pin, stop)
        return
    args.backend = args.backend or "canned"
    n = max(10, min(args.requests or (1000 if args.backend == "canned" else 200), 20000))
    procs = [start_backend(args.backend, args.port, args.pin)]
    try:
        procs.append(start("proxy", args.port + 1, args.port))
        if args.pin:
            pin(procs)
        watched = {"backend": psutil.Process(procs[0].pid), "proxy": psutil.Process(procs[1].pid)}
        urls = {"direct": f"http://127.0.0.1:{args.port}", "proxy": f"http://127.0.0.1:{args.port + 1}"}
        warmup = 50 if args.backend == "canned" else 5
        results = {
            mode: asyncio.run(measure(urls, args.backend, args.client, mode == "stream", n, args.concurrency, watched, warmup))
            for mode in ("complete", "stream")
        }
    finally:
        for proc in procs:
            stop(proc)
    summary = {}
    for mode, r in results.items():
        d, p = r["direct"], r["proxy"]
        low, high = p50_difference_ci(p.pop("latencies_ms"), d.pop("latencies_ms"))
        summary[mode] = {
            "p50_overhead_ms": p["p50_ms"] - d["p50_ms"],
            "p50_overhead_ci95_ms": [low, high],
            "p99_overhead_ms": p["p99_ms"] - d["p99_ms"],
            "throughput_pct_of_direct": p["rps"] / d["rps"] * 100,
            "proxy_cpu_ms_per_req": p["proxy_cpu_ms_per_req"],
        }
    described = {
        "canned": f"starlette/uvicorn app with canned OpenAI responses (chat completion; SSE of {STREAM_CHUNKS} chunks)",
        "vllm": f"vLLM CPU server, scripted tiny model, {VLLM_TOKENS} tokens per request",
    }
    setup = {
        "backend": described[args.backend] + ", loopback, separate processes",
        "client": args.client,
        "pinned": args.pin,
        "requests": n,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps({"setup": setup, "results": results, "summary": summary}, indent=2))
        return
    placement = "pinned: backend + load generator on CPU 0, proxy on CPU 1" if args.pin else "not pinned"
    print(
        f"backend: {setup['backend']}; load generator: {args.client}; {n} requests per figure (direct and proxy "
        f"alternating), throughput at concurrency {args.concurrency}; cpus={setup['cpus']} ({placement}), "
        f"load average {setup['loadavg_1m']:.1f}"
    )
    print(
        f"{'mode':<10} {'path':<7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'CPU ms/req: backend':>20} {'proxy':>7} {'client':>7}"
    )
    for mode, r in results.items():
        for label, x in r.items():
            proxy_cpu = f"{x['proxy_cpu_ms_per_req']:7.3f}" if label == "proxy" else f"{'-':>7}"
            print(
                f"{mode:<10} {label:<7} {x['p50_ms']:8.3f} {x['p99_ms']:8.3f} {x['rps']:8.0f} "
                f"{x['backend_cpu_ms_per_req']:20.3f} {proxy_cpu} {x['client_cpu_ms_per_req']:7.3f}"
            )
    print()
    for mode, sm in summary.items():
        what = "time to first chunk" if mode == "stream" else "full response"
        over, ratio = sm["p50_overhead_ms"], sm["throughput_pct_of_direct"]
        low, high = sm["p50_overhead_ci95_ms"]
        print(
            f"{mode}: p50 overhead {over:+.3f} ms ({what}; 95 % interval {low:+.3f} .. {high:+.3f}; "
            f"target <= 1 ms: {'met' if over <= 1 else 'NOT met'}), "
            f"throughput {ratio:.1f} % of direct (target >= 95 %: {'met' if ratio >= 95 else 'NOT met'}), "
            f"proxy CPU {sm['proxy_cpu_ms_per_req']:.3f} ms per request"
        )
    if not args.pin and (os.cpu_count() or 1) < 4 and min(sm["throughput_pct_of_direct"] for sm in summary.values()) < 95:
        print(
            f"note: on {os.cpu_count()} CPUs the proxied runs share the cores among three processes, the direct ones "
            "among two; --pin gives the proxy a CPU of its own, as on a GPU server"
        )


if __name__ == "__main__":
    main()
