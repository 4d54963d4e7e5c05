"""Live: a real Prometheus (Debian's package) scraping the real vLLM CPU server with the scrape configuration
`render --with-monitoring` produced (only the target address rewritten to the test server), queried through
its HTTP API; and `servectl top` in a real terminal (tmux) watching a live server and one that is stopped
mid-way and started again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

import conftest
from conftest import VllmServer, free_port
from waits import STOP_S, wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
SERVECTL = str(Path(sys.executable).parent / "servectl")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: scripts/test installs it (apt-get install prometheus tmux)")
    return path


def _chat(url: str, n: int = 2) -> None:
    for _ in range(n):
        r = httpx.post(
            url + "/v1/chat/completions",
            timeout=STOP_S,
            json={"model": "tiny-cpu", "messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 24},
        )
        assert r.status_code == 200, r.text


def _rendered_scrape_config(tmp_path: Path) -> dict:
    """The Prometheus configuration inside the rendered Compose file, as Docker Compose hands it to the container."""
    from servectl.verify.validate import compose_binary

    stack = tmp_path / "docker-compose.yaml"
    proc = subprocess.run(
        [SERVECTL, "render", "tiny-cpu", "--gpu", "cpu", "--format", "compose", "--with-monitoring", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=STOP_S,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = subprocess.run(
        [compose_binary(), "-f", str(stack), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=STOP_S,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert resolved.returncode == 0, resolved.stderr
    return yaml.safe_load(json.loads(resolved.stdout)["configs"]["prometheus"]["content"])


def test_prometheus_scrapes_vllm_with_the_rendered_configuration(tiny_server, tmp_path):
    prometheus = _tool("prometheus")
    config = _rendered_scrape_config(tmp_path)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "vllm")
    assert job["static_configs"][0]["targets"] == ["vllm:8000"]
    job["static_configs"][0]["targets"] = [tiny_server.url.removeprefix("http://")]  # the only change
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
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
    try:
        api = f"http://127.0.0.1:{port}/api/v1"
        _chat(tiny_server.url)
        before = None
        deadline = time.monotonic() + STOP_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                got = httpx.get(api + "/query", params={"query": "vllm:generation_tokens_total"}, timeout=5).json()
            except httpx.TransportError:
                got = {}
            result = got.get("data", {}).get("result", [])
            if result:
                before = result[0]
                break
            time.sleep(1)
        assert before is not None, "Prometheus never stored vllm:generation_tokens_total"
        labels = before["metric"]
        assert labels["job"] == "vllm" and labels["deployment"] == "tiny-cpu" and labels["model_name"] == "tiny-cpu"
        # a request later, the next scrape shows it
        first = float(before["value"][1])
        _chat(tiny_server.url)
        deadline = time.monotonic() + STOP_S
        while time.monotonic() < deadline:
            now = httpx.get(api + "/query", params={"query": "vllm:generation_tokens_total"}, timeout=60).json()["data"]["result"]
            if now and float(now[0]["value"][1]) > first:
                break
            time.sleep(1)
        else:
            pytest.fail("the counter never grew in Prometheus")
        targets = httpx.get(api + "/targets", timeout=60).json()["data"]["activeTargets"]
        assert [t["health"] for t in targets if t["labels"]["job"] == "vllm"] == ["up"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_S)
        log.close()


class Tmux:
    """A private tmux server (own socket) running one command in a fixed-size pane."""

    def __init__(self, tmp_path: Path, command: list[str], env: dict[str, str]):
        self.tmux = _tool("tmux")
        self.socket = str(tmp_path / "tmux.sock")
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self.run("new-session", "-d", "-s", "top", "-x", "230", "-y", "40", f"env {exports} " + " ".join(command))
        self.run("set-option", "-t", "top", "remain-on-exit", "on")

    def run(self, *args: str) -> str:
        proc = subprocess.run([self.tmux, "-S", self.socket, *args], capture_output=True, text=True, timeout=STOP_S)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "top")

    def wait_for(self, predicate, timeout: float = STOP_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.5)
        raise AssertionError("screen never showed it:\n" + self.screen())

    def pane(self, fmt: str) -> str:
        return self.run("display-message", "-p", "-t", "top", fmt).strip()

    def kill(self) -> None:
        subprocess.run([self.tmux, "-S", self.socket, "kill-server"], capture_output=True, timeout=STOP_S)


def _exited(pid: int) -> bool:
    """The process has ended (gone, or a zombie not reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _row(screen: str, needle: str) -> str:
    return next((ln for ln in screen.splitlines() if needle in ln), "")


def _listen_free(port: int) -> bool:
    """Nothing listens on the port (connections of the stopped server in TIME_WAIT do not count: uvicorn binds
    with SO_REUSEADDR, as this check does)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_top_in_a_terminal_follows_a_live_server_and_one_stopped_midway(tiny_server, tmp_path, monkeypatch):
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    monkeypatch.setattr(conftest, "port_is_free", _listen_free)  # the restart reuses the stopped server's port

    port = free_port()
    other = VllmServer(ensure_tiny_model("scripted"), port=port, extra=("--max-num-seqs", "4"), log_path=str(tmp_path / "b.log"))
    other.wait_ready()
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm-256color", "COLUMNS": "230"}
    term = Tmux(tmp_path, [SERVECTL, "top", tiny_server.url, other.url, "--interval", "1", "--window", "30"], env)
    try:
        a_name, b_name = tiny_server.url.removeprefix("http://"), other.url.removeprefix("http://")
        term.wait_for(lambda s: " up " in _row(s, a_name) and " up " in _row(s, b_name))
        _chat(tiny_server.url, 3)
        # generated tokens show up as a rate, and the TTFT percentiles fill in (a number, not "-")
        term.wait_for(lambda s: "tiny-cpu" in s and any(ch.isdigit() for ch in _row(s, a_name).split(" up ")[-1]))
        other.stop()  # stopped mid-way: top must keep running and say so
        screen = term.wait_for(lambda s: " down " in _row(s, b_name) and "retrying" in s)
        assert " up " in _row(screen, a_name)
        assert term.pane("#{pane_dead}") == "0"
        # started again on the same port: its counters start from zero, top shows the new life
        other = VllmServer(
            ensure_tiny_model("scripted"), port=port, extra=("--max-num-seqs", "4"), log_path=str(tmp_path / "b2.log")
        )
        other.wait_ready()
        term.wait_for(lambda s: " restarted " in _row(s, b_name) or " up " in _row(s, b_name))
        term.run("send-keys", "-t", "top", "q")
        # tmux marks the pane dead when its terminal closes and learns the exit status when it reaps the process;
        # on some runs it never shows the status (an empty field), so: the process is gone, no signal ended it,
        # and the status, when tmux has it, is 0
        pid = int(term.pane("#{pane_pid}"))
        ended = "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}"
        wait_for(lambda: term.pane(ended).startswith("1:") and _exited(pid), STOP_S)
        dead, status, sig = term.pane(ended).split(":")
        assert (dead, sig) == ("1", "") and status in ("0", ""), term.pane(ended)
        assert "Traceback" not in term.screen()
    finally:
        term.kill()
        other.stop()


def test_top_once_json_against_the_live_server(tiny_server, tmp_path):
    _chat(tiny_server.url, 1)
    proc = subprocess.run(
        [SERVECTL, "top", tiny_server.url, "--once", "--json", "--interval", "1"],
        capture_output=True,
        text=True,
        timeout=STOP_S,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    (row,) = snap["servers"]
    assert row["state"] == "up" and row["model"] == "tiny-cpu" and row["generation_tokens_total"] > 0
    assert row["metric_names"]["kv_cache_usage"] == "vllm:kv_cache_usage_perc" and row["ttft_s"]["count"] >= 0
    gone = subprocess.run(
        [SERVECTL, "top", f"http://127.0.0.1:{free_port()}", "--once", "--json", "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=STOP_S,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert gone.returncode == 1 and json.loads(gone.stdout)["servers"][0]["state"] == "down"
