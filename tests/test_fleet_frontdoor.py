"""The front door's own logic (servectl.fleet.manager, router) with small local HTTP backends in place of vLLM
servers: queueing and deadlines, one start for many cold requests, failed starts answered with the diagnosis of a
real vLLM log, vLLM's sleep mode (a GPU-only feature: the backends answer /sleep and /wake_up exactly as vLLM
0.32's dev router does, vllm/entrypoints/serve/dev/sleep/api_router.py), TTLs, and many concurrent clients on
random fleets with the memory held by the running backends checked at every change.

The real vLLM CPU build behind `servectl serve` is tested in tests/test_fleet_live.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from servectl.fleet import backend, sizing
from servectl.fleet.manager import Manager
from servectl.fleet.metrics import FleetMetrics
from servectl.fleet.router import FrontDoor

LOGS = Path(__file__).parent / "data" / "logs" / "diagnose"
# vLLM 0.32's own /metrics, captured from the CPU server after three requests (tests/test_observe.py reads it too)
VLLM_METRICS = (Path(__file__).parent / "data" / "metrics" / "vllm-0.32.0-cpu-after-3-requests.txt").read_text()


# --------------------------------------------------------------------------- backends standing in for vLLM


def canned_app(server: "Canned") -> Starlette:
    async def chat(request: Request):
        data = await request.json()
        server.requests.append(data)
        if data.get("model") != server.name:
            return JSONResponse({"error": {"message": f"The model `{data.get('model')}` does not exist."}}, status_code=404)
        await asyncio.sleep(float(data.get("hold", 0)))
        if data.get("stream"):

            async def gen():
                for i in range(3):
                    yield f"data: {json.dumps({'model': server.name, 'i': i})}\n\n".encode()
                    await asyncio.sleep(0.01)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(gen(), media_type="text/event-stream")
        return JSONResponse({"object": "chat.completion", "model": server.name, "received": data})

    async def sleep(request: Request):  # vLLM 0.32: {"status": "sleeping", "level": level}
        server.calls.append(("sleep", request.url.query))
        server.ops.held(server.name, "asleep")
        return JSONResponse({"status": "sleeping", "level": int(request.query_params.get("level", 1))})

    async def wake_up(request: Request):  # vLLM 0.32: {"status": "awake" | "sleeping", "tags": tags}
        server.calls.append(("wake_up", request.url.query))
        server.ops.held(server.name, "awake")
        return JSONResponse({"status": "awake", "tags": None})

    async def health(request: Request):
        return Response(status_code=200)

    async def metrics(request: Request):  # the captured exposition, as this server's served model name says it
        if server.metrics_status != 200:
            return Response(status_code=server.metrics_status)
        return Response(
            VLLM_METRICS.replace('model_name="tiny-cpu"', f'model_name="{server.name}"'),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/sleep", sleep, methods=["POST"]),
            Route("/wake_up", wake_up, methods=["POST"]),
            Route("/health", health),
            Route("/metrics", metrics),
        ]
    )


class Canned:
    """One backend: a uvicorn server on a thread."""

    def __init__(self, ops: "CannedOps", name: str):
        self.ops, self.name = ops, name
        self.requests: list[dict] = []
        self.calls: list[tuple[str, str]] = []
        self.metrics_status = 200
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(canned_app(self), log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class CannedRunning:
    spec: object
    launched: object
    canned: Canned
    startup_s: float
    dead: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.canned.port}"

    def alive(self) -> bool:
        return not self.dead and self.canned.thread.is_alive()


class CannedOps:
    """servectl.fleet.backend's start / stop / diagnosis / log_tail, with canned backends. Tracks the memory the
    backends hold (awake from the moment a start begins, asleep after /sleep) and every moment it exceeded a budget."""

    def __init__(self, fleet: sizing.Fleet, delay: dict[str, float] | None = None, fail: dict[str, str] | None = None):
        self.fleet = fleet
        self.delay = delay or {}
        self.fail = fail or {}
        self.gate: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.holding: dict[str, str] = {}  # model -> awake | asleep
        self.peak_over: list[str] = []
        self.starts: dict[str, int] = {}
        self.running: dict[str, CannedRunning] = {}

    def held(self, name: str, how: str | None) -> None:
        with self.lock:
            if how is None:
                self.holding.pop(name, None)
            else:
                self.holding[name] = how
            for pool, budget in self.fleet.budgets.items():
                total = sum(
                    m.share.awake_mib if self.holding.get(m.name) == "awake" else m.share.asleep_mib
                    for m in self.fleet.members.values()
                    if m.pool == pool and m.name in self.holding
                )
                if total > budget.budget_mib + 1e-6:
                    self.peak_over.append(f"{pool}: {total:.0f} > {budget.budget_mib:.0f} ({dict(self.holding)})")

    def start(self, spec, executable, label, timeout_s, cancelled, on_started=None):
        name = spec.served_model_name
        self.held(name, "awake")
        self.starts[name] = self.starts.get(name, 0) + 1
        t0 = time.monotonic()
        end = t0 + self.delay.get(name, 0.0)
        while time.monotonic() < end or (name in self.gate and not self.gate[name].is_set()):
            if cancelled.is_set():
                self.held(name, None)
                return backend.Failed("cancelled (the fleet is stopping)", "", Path("/dev/null"), 0.0)
            time.sleep(0.01)
        if name in self.fail:
            self.held(name, None)
            text = (LOGS / self.fail[name]).read_text()
            return backend.Failed("vLLM exited during start-up (after 1 s)", text, Path(self.fail[name]), 1.0)
        canned = Canned(self, name)
        run = CannedRunning(
            replace(spec, port=canned.port), SimpleNamespace(pid=None, log_path=Path("/dev/null")), canned, time.monotonic() - t0
        )
        self.running[name] = run
        return run

    def stop(self, run: CannedRunning, grace_s: float = 15.0) -> None:
        run.canned.stop()
        self.running.pop(run.canned.name, None)
        self.held(run.canned.name, None)

    diagnosis = staticmethod(backend.diagnosis)
    log_tail = staticmethod(backend.log_tail)


class FrontDoorThread:
    """The real front door (router + manager) on uvicorn in a thread, with CannedOps."""

    def __init__(self, fleet: sizing.Fleet, ops: CannedOps):
        self.metrics = FleetMetrics()
        self.manager = Manager(fleet, ["unused"], self.metrics, "test", ops=ops)
        self.app = FrontDoor(fleet, self.manager, self.metrics)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="error", lifespan="on", timeout_graceful_shutdown=3))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> "FrontDoorThread":
        self.thread.start()
        while not self.server.started:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)

    def metric(self, name: str, **labels) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(self.url + "/metrics", timeout=10).text
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0


def make_fleet(tmp_path, models: dict[str, dict], budget_mib: float, **fleet_kw) -> sizing.Fleet:
    """A fleet of tiny-cpu entries (sized by the real planner), then given the footprints, sleep and TTLs a test wants."""
    lines = ["models:"] + [f"  {n}:\n    model: tiny-cpu" for n in models]
    path = tmp_path / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n")
    fleet = sizing.load(path)
    members = {}
    for name, kw in models.items():
        m = fleet.members[name]
        share = replace(m.share, awake_mib=kw.get("awake", 60.0), asleep_mib=kw.get("asleep", 10.0))
        members[name] = replace(
            m, share=share, sleep=kw.get("sleep", False), ttl_s=kw.get("ttl"), preload=kw.get("preload", False)
        )
    budgets = {p: replace(b, budget_mib=budget_mib) for p, b in fleet.budgets.items()}
    return replace(fleet, members=members, budgets=budgets, **fleet_kw)


def chat(url: str, model: str, timeout: float = 30, **extra) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
        timeout=timeout,
    )


def concurrently(n: int, fn):
    out = [None] * n

    def run(i):
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


# --------------------------------------------------------------------------- tests


def test_many_requests_for_a_cold_model_cause_one_start_and_are_all_answered(tmp_path):
    fleet = make_fleet(tmp_path, {"a": {}, "b": {}}, 200)
    ops = CannedOps(fleet, delay={"a": 0.5})
    with FrontDoorThread(fleet, ops) as fd:
        replies = concurrently(20, lambda i: chat(fd.url, "a"))
        assert [r.status_code for r in replies] == [200] * 20
        assert ops.starts == {"a": 1}
        assert fd.metric("servectl_fleet_starts_total", model="a") == 1
        assert fd.metric("servectl_fleet_requests_total", model="a") == 20
        assert fd.metric("servectl_fleet_queue_seconds_count", model="a") == 20
        states = {m["id"]: m["state"] for m in httpx.get(fd.url + "/v1/models").json()["data"] if m["parent"] is None}
        assert states == {"a": "ready", "b": "stopped"}
    assert ops.running == {} and ops.holding == {}  # shutdown stopped every backend


def test_a_full_queue_and_a_missed_deadline_are_503_saying_why(tmp_path):
    fleet = make_fleet(tmp_path, {"a": {}}, 200, queue_max=3, queue_timeout_s=0.6)
    ops = CannedOps(fleet)
    ops.gate["a"] = threading.Event()  # the start takes until the test lets it finish
    with FrontDoorThread(fleet, ops) as fd:
        replies = concurrently(5, lambda i: chat(fd.url, "a"))
        assert sorted(r.status_code for r in replies) == [503] * 5
        bodies = [r.json()["error"] for r in replies]
        full = [b for b in bodies if "queue.max_waiting 3" in b["message"]]
        late = [b for b in bodies if "was not ready within" in b["message"]]
        assert len(full) == 2 and len(late) == 3, bodies
        assert all("starting" in b["message"] for b in late) and all(b["code"] == 503 for b in bodies)
        assert all(r.headers["retry-after"].isdigit() for r in replies)
        assert fd.metric("servectl_fleet_rejected_total", model="a", reason="queue_full") == 2
        assert fd.metric("servectl_fleet_rejected_total", model="a", reason="deadline") == 3
        ops.gate["a"].set()  # the start went on without waiters; the next request finds it ready
        deadline = time.monotonic() + 10
        while httpx.get(fd.url + "/health").json()["models"]["a"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chat(fd.url, "a").status_code == 200 and ops.starts == {"a": 1}


def test_a_failed_start_answers_every_waiting_request_with_the_diagnosis(tmp_path):
    fleet = make_fleet(tmp_path, {"a": {}}, 200)
    ops = CannedOps(fleet, delay={"a": 0.3}, fail={"a": "cpu-max-model-len-too-large.log"})
    with FrontDoorThread(fleet, ops) as fd:
        replies = concurrently(4, lambda i: chat(fd.url, "a"))
        assert [r.status_code for r in replies] == [503] * 4
        message = replies[0].json()["error"]["message"]
        assert "could not be started" in message and "vLLM exited during start-up" in message
        assert "root error" in message and "max_model_len" in message  # servectl diagnose on the log
        assert ops.starts == {"a": 1}
        assert chat(fd.url, "a").status_code == 503 and ops.starts == {"a": 2}  # the next request tries again
        model = next(m for m in httpx.get(fd.url + "/v1/models").json()["data"] if m["id"] == "a")
        assert model["state"] == "stopped" and "max_model_len" in model["error"]


def test_idle_models_sleep_to_make_room_and_wake_instead_of_restarting(tmp_path):
    # a and b fit together only while one of them sleeps (60 + 10 <= 100 < 60 + 60)
    fleet = make_fleet(tmp_path, {"a": {"sleep": True}, "b": {"sleep": True}}, 100)
    ops = CannedOps(fleet)
    with FrontDoorThread(fleet, ops) as fd:
        assert chat(fd.url, "a").status_code == 200
        assert chat(fd.url, "b").status_code == 200
        a = ops.running["a"].canned
        assert a.calls == [("sleep", "level=1")]
        assert chat(fd.url, "a").status_code == 200  # woken, not restarted; b sleeps for it
        assert a.calls[-1] == ("wake_up", "") and ops.starts == {"a": 1, "b": 1}
        assert ops.running["b"].canned.calls == [("sleep", "level=1")]
        states = {m["id"]: m["state"] for m in httpx.get(fd.url + "/v1/models").json()["data"] if m["parent"] is None}
        assert states == {"a": "ready", "b": "sleeping"}
        assert fd.metric("servectl_fleet_wakeups_total", model="a") == 1
        assert fd.metric("servectl_fleet_evictions_total", model="a", action="sleep") == 1
        assert fd.metric("servectl_fleet_swaps_total", model="b") == 1
        assert ops.peak_over == []
    assert ops.running == {}


def test_ttl_puts_an_idle_model_to_sleep_or_stops_it(tmp_path):
    fleet = make_fleet(tmp_path, {"s": {"sleep": True, "ttl": 0.5}, "t": {"ttl": 0.5}}, 500)
    ops = CannedOps(fleet)
    with FrontDoorThread(fleet, ops) as fd:
        assert chat(fd.url, "s").status_code == 200 and chat(fd.url, "t").status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            models = httpx.get(fd.url + "/health").json()["models"]
            if models == {"s": "sleeping", "t": "stopped"} and "t" not in ops.running:  # "stopped" also shows a stop under way
                break
            time.sleep(0.1)
        assert models == {"s": "sleeping", "t": "stopped"}
        assert "t" not in ops.running and ops.running["s"].canned.calls == [("sleep", "level=1")]
        assert fd.metric("servectl_fleet_stops_total", model="t", reason="ttl") == 1


def test_a_busy_model_is_never_evicted_the_new_one_waits_for_it(tmp_path):
    fleet = make_fleet(tmp_path, {"a": {}, "b": {}}, 100)
    ops = CannedOps(fleet)
    with FrontDoorThread(fleet, ops) as fd:
        assert chat(fd.url, "a").status_code == 200
        slow = threading.Thread(target=lambda: chat(fd.url, "a", hold=1.5))
        slow.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        r = chat(fd.url, "b")  # waits until a's request is done, then a is stopped for it
        slow.join()
        assert r.status_code == 200 and time.monotonic() - t0 >= 1.0
        assert ops.running.keys() == {"b"} and ops.peak_over == []


def test_routing_aliases_presets_streams_and_refusals(tmp_path):
    fleet = make_fleet(tmp_path, {"a": {}}, 200)
    fleet = replace(fleet, routes={**fleet.routes, "alias": ("a", None)})
    ops = CannedOps(fleet)
    with FrontDoorThread(fleet, ops) as fd:
        assert chat(fd.url, "alias").json()["received"]["model"] == "a"
        r = chat(fd.url, "a-thinking-coding")
        assert r.status_code == 200 and "preset=thinking-coding" in r.headers["x-servectl-proxy"]
        assert r.json()["received"]["top_k"] == 20 and r.json()["received"]["model"] == "a"
        with httpx.stream("POST", fd.url + "/v1/chat/completions", json={"model": "a", "stream": True, "messages": []}) as s:
            events = [line for line in s.iter_lines() if line.startswith("data:")]
        assert events[-1] == "data: [DONE]" and len(events) == 4
        assert chat(fd.url, "nope").status_code == 404
        assert httpx.post(fd.url + "/v1/chat/completions", content=b"{not json").status_code == 400
        assert httpx.post(fd.url + "/v1/chat/completions", content=b"[" * 200_000).status_code == 400
        long = chat(fd.url, "x" * 100_000)
        assert long.status_code == 404 and len(long.content) < 2000
        assert httpx.post(fd.url + "/sleep", json={"model": "a"}).status_code == 404  # vLLM's admin paths stay inside
        big = httpx.post(fd.url + "/v1/chat/completions", content=b"x" * (fleet.max_body + 1))
        assert big.status_code == 413
        listed = {m["id"]: m for m in httpx.get(fd.url + "/v1/models").json()["data"]}
        assert listed["a"]["state"] == "ready" and listed["a-thinking-coding"]["parent"] == "a"
        assert httpx.get(fd.url + "/v1/models/a-thinking-coding").json()["preset"] == "thinking-coding"


def test_the_front_door_relays_each_running_servers_own_metrics_by_model(tmp_path):
    """GET /metrics/models: vLLM's metrics of every server that is up, one exposition (one HELP/TYPE per family,
    as Prometheus' parser wants), each sample labelled with the fleet's model name beside vLLM's model_name; a
    stopped model is absent; a server whose /metrics fails is servectl_fleet_relay_up 0, the others still come."""
    from prometheus_client.parser import text_string_to_metric_families

    fleet = make_fleet(tmp_path, {"a": {}, "b": {}, "c": {}}, 500)
    ops = CannedOps(fleet)
    with FrontDoorThread(fleet, ops) as fd:
        assert [chat(fd.url, m).status_code for m in ("a", "b")] == [200, 200]
        r = httpx.get(fd.url + "/metrics/models", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        types = [ln.split()[2] for ln in r.text.splitlines() if ln.startswith("# TYPE ")]
        assert len(types) == len(set(types)), "a family's TYPE twice"
        fams = {f.name: f for f in text_string_to_metric_families(r.text)}
        tokens = {
            (s.labels["model"], s.labels["model_name"]): s.value
            for s in fams["vllm:generation_tokens"].samples
            if s.name == "vllm:generation_tokens_total"
        }
        assert set(tokens) == {("a", "a"), ("b", "b")} and all(v > 0 for v in tokens.values())
        assert {s.labels["model"] for s in fams["vllm:kv_cache_usage_perc"].samples} == {"a", "b"}
        assert {s.labels["model"]: s.value for s in fams["servectl_fleet_relay_up"].samples} == {"a": 1.0, "b": 1.0}
        ops.running["b"].canned.metrics_status = 500
        fams = {f.name: f for f in text_string_to_metric_families(httpx.get(fd.url + "/metrics/models", timeout=10).text)}
        assert {s.labels["model"]: s.value for s in fams["servectl_fleet_relay_up"].samples} == {"a": 1.0, "b": 0.0}
        assert {s.labels["model"] for s in fams["vllm:num_requests_running"].samples} == {"a"}
        assert httpx.get(fd.url + "/metrics/other").status_code == 404
        own = httpx.get(fd.url + "/metrics").text  # the front door's own counters stay apart
        assert "servectl_fleet_requests_total" in own and "vllm:" not in own


def test_relay_merges_families_and_refuses_what_is_not_prometheus_text():
    from prometheus_client.parser import text_string_to_metric_families

    from servectl.fleet.metrics import relay

    clash = "# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running counter\nvllm:num_requests_running_total 3\n"
    own = '# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{model="set-by-server",block_size="16"} 1\n'
    text = relay({"a": VLLM_METRICS, "b": clash, "c": "<html>not metrics</html>{", "d": own}).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    running = fams["vllm:num_requests_running"]
    assert running.type == "gauge" and {s.labels["model"] for s in running.samples} == {"a"}  # b's counter left out
    assert {s.labels["model"]: s.value for s in fams["servectl_fleet_relay_up"].samples} == {"a": 1, "b": 1, "c": 0, "d": 1}
    # a label the server set itself is kept
    assert {s.labels["model"] for s in fams["vllm:cache_config_info"].samples} >= {"set-by-server"}
    assert relay({}).decode().count("servectl_fleet_relay_up") == 2  # HELP and TYPE, no samples


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_random_fleets_under_many_clients_never_overcommit_and_answer_everyone(tmp_path, seed):
    rnd = random.Random(seed)
    n = rnd.randint(2, 5)
    budget = rnd.choice([100.0, 150.0, 250.0])
    models = {
        f"m{i}": {
            "awake": rnd.choice([40.0, 60.0, 90.0]),
            "asleep": rnd.choice([5.0, 20.0]),
            "sleep": rnd.random() < 0.5,
            "ttl": rnd.choice([None, 0.3, 1.0]),
        }
        for i in range(n)
    }
    fleet = make_fleet(tmp_path, models, budget, queue_max=rnd.choice([4, 50]), queue_timeout_s=rnd.choice([1.0, 8.0]))
    ops = CannedOps(fleet, delay={name: rnd.uniform(0, 0.3) for name in models})
    with FrontDoorThread(fleet, ops) as fd:

        def client(i: int) -> list[tuple[int, str]]:
            r = random.Random(seed * 1000 + i)
            out = []
            for _ in range(5):
                model = r.choice(list(models))
                resp = chat(fd.url, model, timeout=60, hold=r.choice([0, 0, 0.05, 0.2]), stream=r.random() < 0.3)
                body = resp.text
                out.append((resp.status_code, body))
                if resp.status_code == 200 and not resp.headers["content-type"].startswith("text/event-stream"):
                    assert resp.json()["model"] == model
                elif resp.status_code == 503:
                    assert resp.json()["error"]["message"]
            return out

        results = concurrently(16, client)
    answers = [code for res in results for code, _ in res]
    assert set(answers) <= {200, 503} and answers.count(200) > 0, answers
    assert ops.peak_over == [], ops.peak_over[:3]
    assert ops.running == {} and ops.holding == {}  # nothing left after shutdown


def test_the_display_prints_each_change_once_with_outside_text_escaped(capsys):
    from servectl.fleet.display import Display

    snap = [
        {
            "name": "chat",
            "state": "stopped",
            "error": None,
            "port": None,
            "pid": None,
            "note": None,
            "busy": 0,
            "waiting": 0,
            "since_s": 1.0,
            "memory_mib": 66.0,
        }
    ]
    display = Display(lambda: snap, lambda: {"cpu": (66.0, 100.0)}, live=False)
    display.changed()
    display.changed()  # nothing changed: nothing printed
    snap[0].update(state="ready", port=4000, pid=42)
    display.changed()
    snap[0].update(state="stopped", error="died while serving: \x1b[2Jroot error\nx")
    display.changed()
    err = capsys.readouterr().err
    assert err.count("chat: stopped") == 2 and "chat: ready (port 4000, pid 42)" in err
    assert "\x1b" not in err and "\\x1b[2Jroot error\\nx" in err
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(display._table())
    assert "66 MiB of 100 MiB held" in console.export_text() and "\x1b" not in console.export_text()


def test_a_client_that_leaves_while_waiting_no_longer_waits(tmp_path):
    fleet = make_fleet(tmp_path, {"a": {}}, 200, queue_max=1)
    ops = CannedOps(fleet)
    ops.gate["a"] = threading.Event()
    with FrontDoorThread(fleet, ops) as fd:
        with pytest.raises(httpx.TimeoutException):
            chat(fd.url, "a", timeout=0.5)
        deadline = time.monotonic() + 10
        while fd.manager.snapshot()[0]["waiting"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fd.manager.snapshot()[0]["waiting"] == 0
        ops.gate["a"].set()  # the one place in the queue is free again: the next request is served
        assert chat(fd.url, "a").status_code == 200
