"""`servectl serve FLEET.yaml` on the real vLLM CPU build: three tiny models behind one front door, run as a
real process and driven over HTTP (httpx and the openai client).

One fleet is shared by the tests below, in order (each vLLM CPU start takes 30-90 s): a checkpoint that cannot
start is answered 503 with the diagnosis of its log; the first requests for `chat` start it once; `noise`
(a small KV cache) starts beside it because the plan says both fit; `coder` needs chat's room: chat, least
recently used, is stopped for it; a killed server is restarted on the next request and its death diagnosed;
`noise` unloads after its TTL; SIGTERM stops everything the fleet started. A second, tiny fleet checks the
bounded queue and the deadline during a start, and that Ctrl-C (SIGINT) in the middle of a start leaves nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import free_port
from waits import START_S, STOP_S, wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]
MIB = 2**20


class Fleet:
    """`servectl serve FILE` as its own process, with its own state directory."""

    def __init__(self, tmp: Path, text: str):
        self.dir = tmp
        self.path = tmp / "fleet.yaml"
        self.path.write_text(textwrap.dedent(text).lstrip())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state"), "PYTHONUNBUFFERED": "1"}
        self.err = open(tmp / "serve.err", "w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servectl", "serve", str(self.path), "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=self.err,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the front door did not answer /health: " + self.stderr())

    def stderr(self) -> str:
        return (self.dir / "serve.err").read_text(errors="replace")

    def chat(self, model: str, timeout: float = START_S + STOP_S, **extra) -> httpx.Response:
        return httpx.post(
            self.url + "/v1/chat/completions",
            timeout=timeout,
            json={"model": model, "messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 24, **extra},
        )

    def models(self) -> dict[str, dict]:
        return {m["id"]: m for m in httpx.get(self.url + "/v1/models", timeout=STOP_S).json()["data"] if m["parent"] is None}

    def metric(self, name: str, **labels) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        for fam in text_string_to_metric_families(httpx.get(self.url + "/metrics", timeout=STOP_S).text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    def records(self) -> dict[str, dict]:
        out = subprocess.run(
            [sys.executable, "-m", "servectl", "status", "--json"], capture_output=True, text=True, env=self.env, timeout=STOP_S
        )
        return {d["name"]: d for d in json.loads(out.stdout)["deployments"]}

    def stop(self, timeout: float = STOP_S, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_S)
                raise
        return self.proc.returncode


def group_left(pgid: int) -> list[int]:
    """Live processes of a server's process group (its API server, EngineCore and workers); zombies count as gone."""
    import os

    import psutil

    left = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return left


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, tiny_model):
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    tmp = tmp_path_factory.mktemp("fleet")
    scripted, rnd = tiny_model, ensure_tiny_model("random")
    broken = tmp / "broken-checkpoint"  # the tiny model's config naming an architecture vLLM does not have
    broken.mkdir()
    config = json.loads((scripted / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchModelForCausalLM"]}))
    f = Fleet(
        tmp,
        f"""
        name: live
        memory_limit: 100M
        queue: {{timeout: {START_S:.0f}s}}
        models:
          broken:
            model: {broken}
            recipe: tiny-cpu
          chat:
            model: {scripted}
            recipe: tiny-cpu
            aliases: [assistant]
          noise:
            model: {rnd}
            recipe: tiny-cpu
            args: [--kv-cache-memory-bytes, 16M]
            ttl: 45s
          coder:
            model: {scripted}
            recipe: tiny-cpu
        """,
    )
    yield f
    if f.proc.poll() is None:
        f.stop()


def test_plan_of_the_live_fleet(fleet, cli):
    data = json.loads(cli("serve", str(fleet.path), "--plan", "--json").stdout)
    awake = {m["name"]: m["awake_mib"] for m in data["models"]}
    assert awake["chat"] + awake["noise"] <= 100 < awake["chat"] + awake["coder"]


def test_a_checkpoint_that_cannot_start_is_refused_with_its_diagnosis(fleet):
    r = fleet.chat("broken")
    assert r.status_code == 503, r.text
    message = r.json()["error"]["message"]
    assert "could not be started" in message and "vLLM exited during start-up" in message and "root error" in message
    assert fleet.models()["broken"]["state"] == "stopped" and "root error" in fleet.models()["broken"]["error"]
    assert fleet.metric("servectl_fleet_start_failures_total", model="broken") == 1
    assert "live-broken" not in fleet.records()


def test_the_first_requests_start_the_model_once_and_are_all_answered(fleet):
    names = ["chat", "assistant", "chat-instruct-general", "chat", "assistant"]
    replies: list[httpx.Response | None] = [None] * len(names)

    def ask(i: int) -> None:
        replies[i] = fleet.chat(names[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()

    def started() -> str | None:  # the state once it is no longer "stopped"
        state = fleet.models()["chat"]["state"]
        return None if state == "stopped" else state

    assert wait_for(started, every=0.1) == "starting"
    for t in threads:
        t.join()
    assert [r.status_code for r in replies] == [200] * len(names), [r.text for r in replies]
    assert all(r.json()["model"] == "chat" for r in replies)
    assert "Every reply follows one short script" in replies[0].json()["choices"][0]["message"]["content"]
    assert "preset=instruct-general" in replies[2].headers["x-servectl-proxy"]
    assert fleet.metric("servectl_fleet_starts_total", model="chat") == 1
    assert fleet.metric("servectl_fleet_requests_total", model="chat") == len(names)
    rec = fleet.records()["live-chat"]
    assert rec["fleet"] == f"live {fleet.url}" and rec["state"] == "running" and rec["served_model_name"] == "chat"


def test_streaming_passes_through_with_the_openai_client(fleet):
    from openai import OpenAI

    client = OpenAI(base_url=fleet.url + "/v1", api_key="unused", timeout=STOP_S)
    chunks = list(
        client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "Who are you?"}], max_tokens=24, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and "tiny test model" in text
    listed = {m.id for m in client.models.list().data}
    assert {"chat", "assistant", "noise", "coder", "chat-thinking-coding"} <= listed


def test_a_second_model_starts_beside_the_first_when_both_fit(fleet):
    r = fleet.chat("noise")
    assert r.status_code == 200, r.text
    models = fleet.models()
    assert models["chat"]["state"] == "ready" and models["noise"]["state"] == "ready"
    assert fleet.metric("servectl_fleet_swaps_total", model="noise") == 0
    records = fleet.records()
    assert {"live-chat", "live-noise"} <= set(records)
    assert fleet.metric("servectl_fleet_memory_mib", pool="cpu", kind="used") <= 100


def _query(api: str, promql: str) -> list[dict]:
    try:
        return httpx.get(api + "/query", params={"query": promql}, timeout=60).json().get("data", {}).get("result", [])
    except (httpx.TransportError, ValueError):
        return []


def test_prometheus_reads_the_fleet_through_its_front_door_with_the_rendered_configuration(fleet, tmp_path):
    """`render --fleet F --format compose --with-monitoring` (front-door layout), its Prometheus configuration as
    Docker Compose resolves it, run by Debian's Prometheus against this live front door (only the target address
    `fleet:8080` rewritten): vLLM's own counters of both running models arrive through the relay, labelled by model
    beside vLLM's model_name, and the front door's own counters beside them."""
    import shutil

    from servectl.verify.validate import compose_binary

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is missing: scripts/test installs it (apt-get install prometheus)")
    relayed = httpx.get(fleet.url + "/metrics/models", timeout=STOP_S).text
    assert 'model="chat"' in relayed and 'model="noise"' in relayed and 'model_name="chat"' in relayed
    out = tmp_path / "stack"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "servectl",
            "render",
            "--fleet",
            str(fleet.path),
            "--format",
            "compose",
            "--with-monitoring",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=fleet.env,
        timeout=STOP_S,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = subprocess.run(
        [compose_binary(), "-f", str(out / "docker-compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=STOP_S,
        cwd=out,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert resolved.returncode == 0, resolved.stderr
    text = json.loads(resolved.stdout)["configs"]["prometheus"]["content"]
    assert text.count("fleet:8080") == 2
    (tmp_path / "prometheus.yml").write_text(text.replace("fleet:8080", f"127.0.0.1:{fleet.port}"))  # the only change
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    assert fleet.chat("noise").status_code == 200  # used again: its 45 s TTL starts over while Prometheus reads it
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        fleet.chat("chat")
        deadline = time.monotonic() + STOP_S
        tokens: list[dict] = []
        own: list[dict] = []
        while time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            tokens = _query(api, 'vllm:generation_tokens_total{job="vllm"}')
            own = _query(api, 'servectl_fleet_requests_total{job="servectl-fleet",model="chat"}')
            if {t["metric"].get("model") for t in tokens} >= {"chat", "noise"} and own:  # both jobs scraped
                break
            if fleet.models()["noise"]["state"] != "ready":  # its TTL ran out before the first scrape (a busy host)
                assert fleet.chat("noise").status_code == 200
            time.sleep(1)
        by_model = {t["metric"]["model"]: t["metric"] for t in tokens}
        assert set(by_model) >= {"chat", "noise"}, tokens
        assert by_model["chat"]["model_name"] == "chat" and by_model["chat"]["fleet"] == "live"
        assert float(next(t for t in tokens if t["metric"]["model"] == "chat")["value"][1]) > 0
        assert own and float(own[0]["value"][1]) >= 1 and own[0]["metric"]["fleet"] == "live"
        targets = httpx.get(api + "/targets", timeout=60).json()["data"]["activeTargets"]
        assert sorted((t["labels"]["job"], t["health"]) for t in targets) == [("servectl-fleet", "up"), ("vllm", "up")]
    finally:
        os.killpg(prom.pid, signal.SIGTERM)
        prom.wait(timeout=STOP_S)
        log.close()


def test_a_model_that_does_not_fit_swaps_out_the_least_recently_used(fleet):
    chat_pid = fleet.records()["live-chat"]["pid"]
    fleet.chat("noise")  # noise is now more recently used than chat
    r = fleet.chat("coder")
    assert r.status_code == 200, r.text
    models = fleet.models()
    assert models["coder"]["state"] == "ready" and models["chat"]["state"] == "stopped"
    assert fleet.metric("servectl_fleet_evictions_total", model="chat", action="stop") == 1
    assert fleet.metric("servectl_fleet_evictions_total", model="noise", action="stop") == 0
    assert fleet.metric("servectl_fleet_swaps_total", model="coder") == 1
    assert not psutil.pid_exists(chat_pid) or psutil.Process(chat_pid).status() == psutil.STATUS_ZOMBIE
    assert "live-chat" not in fleet.records()


def test_a_killed_server_is_restarted_on_the_next_request_and_its_death_diagnosed(fleet):
    pid = fleet.records()["live-coder"]["pid"]
    os.killpg(pid, signal.SIGKILL)  # the test kills what its own fleet started
    assert wait_for(lambda: fleet.metric("servectl_fleet_stops_total", model="coder", reason="died") == 1)  # it noticed
    r = fleet.chat("coder")
    assert r.status_code == 200, r.text
    assert fleet.metric("servectl_fleet_starts_total", model="coder") == 2
    assert fleet.metric("servectl_fleet_stops_total", model="coder", reason="died") == 1
    assert "coder: died while serving" in fleet.stderr()
    assert fleet.records()["live-coder"]["pid"] != pid


def test_an_idle_model_unloads_after_its_ttl(fleet):
    deadline = time.monotonic() + START_S
    while fleet.models()["noise"]["state"] != "stopped" and time.monotonic() < deadline:
        time.sleep(1)
    assert fleet.models()["noise"]["state"] == "stopped"
    while "live-noise" in fleet.records() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert fleet.metric("servectl_fleet_stops_total", model="noise", reason="ttl") == 1
    assert "live-noise" not in fleet.records()


def test_sigterm_stops_every_model_and_leaves_nothing(fleet):
    pids = [rec["pid"] for rec in fleet.records().values()]
    assert pids and all(group_left(pid) for pid in pids)
    assert fleet.stop() == 0
    assert "fleet stopped" in fleet.stderr()
    assert [group_left(pid) for pid in pids] == [[]] * len(pids)
    assert fleet.records() == {}


def test_bounded_queue_deadline_and_ctrl_c_during_a_start(tmp_path, tiny_model):
    f = Fleet(
        tmp_path,
        f"""
        name: quick
        queue: {{max_waiting: 2, timeout: 3s}}
        models:
          slow:
            model: {tiny_model}
            recipe: tiny-cpu
        """,
    )
    try:
        replies: list[httpx.Response | None] = [None] * 3

        def ask(i: int) -> None:
            replies[i] = f.chat("slow", timeout=STOP_S)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors = sorted(r.json()["error"]["message"] for r in replies)
        assert [r.status_code for r in replies] == [503] * 3
        assert sum("queue.max_waiting 2" in e for e in errors) == 1
        assert sum("was not ready within" in e and "starting" in e for e in errors) == 2, errors
        assert f.models()["slow"]["state"] == "starting"
        assert wait_for(lambda: (f.records().get("quick-slow") or {}).get("pid"))
        pid = f.records()["quick-slow"]["pid"]
        assert group_left(pid)
        assert f.stop(sig=signal.SIGINT) == 0  # Ctrl-C in the middle of vLLM's start-up
        assert group_left(pid) == [] and f.records() == {}
    finally:
        if f.proc.poll() is None:
            f.stop()
