"""Deployment state under crashes and races, through the real `servectl up` / `status` / `down` processes.

The server is a stand-in (no vLLM needed to prove these points): a `vllm` executable beside a
`python` that runs the real vLLM environment's interpreter, so `up` takes its normal path
(environment probe, pre-flight, patch check, watchdog, start, /health) and then starts the
stand-in, which answers /health and forks a child standing in for vLLM's EngineCore in its group.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import free_port
from waits import START_S, STOP_S, wait_for

from servectl.launch import ownership, state
from servectl.launch.record import DeploymentRecord

pytestmark = pytest.mark.slow  # each `servectl up` probes the real vLLM environment (a few seconds)
SERVECTL = [sys.executable, "-m", "servectl"]

FAKE_VLLM = r"""
import http.server, os, subprocess, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
record = os.path.join(os.environ["XDG_STATE_HOME"], "servectl", "deployments", "tiny-cpu.json")
print("record present at start:", os.path.exists(record), flush=True)
if os.environ.get("FAKE_VLLM_EXIT"):
    sys.exit(int(os.environ["FAKE_VLLM_EXIT"]))
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stands in for EngineCore
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
print("stand-in server on", port, flush=True)
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.fixture()
def fake_env(tmp_path, vllm_python) -> Path:
    """VENV/bin/python (the real vLLM environment's interpreter) and VENV/bin/vllm (the stand-in)."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{vllm_python}" "$@"\n')
    vllm = bin_dir / "vllm"
    vllm.write_text(f"#!{sys.executable}\n{FAKE_VLLM}")
    for exe in (python, vllm):
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "model").mkdir()
    return python


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # this process reads the same records
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


def up_argv(fake_env: Path, port: int, *extra: str) -> list[str]:
    return [
        *SERVECTL,
        "up",
        "tiny-cpu",
        "--gpu",
        "cpu",
        "--python",
        str(fake_env),
        "--model-path",
        str(fake_env.parent.parent.parent / "model"),
        "--port",
        str(port),
        "--no-check",
        *extra,
    ]


def sc(env, *args, timeout=STOP_S) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVECTL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def status(env) -> dict:
    res = sc(env, "status", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def live(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def group_and_tree(pgid: int) -> set[int]:
    members = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid}
    try:
        members |= {c.pid for c in psutil.Process(pgid).children(recursive=True)}
    except psutil.NoSuchProcess:
        pass
    return members


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def kill_leftovers() -> None:
    """After a failed assertion: SIGKILL the stand-in groups this test's deployments started."""
    for rec in state.list_records():
        if rec.pid:
            for pid in live(group_and_tree(rec.pid)):
                os.kill(pid, signal.SIGKILL)


def ready_deployment(env, name="tiny-cpu"):
    return next((d for d in status(env)["deployments"] if d["name"] == name and d["ready"]), None)


def test_sigkill_of_a_foreground_up_leaves_no_process(env, fake_env):
    proc = subprocess.Popen(up_argv(fake_env, free_port()), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        dep = wait_for(lambda: ready_deployment(env), timeout=START_S, every=0.5)
        assert dep, proc.stderr.read() if proc.poll() is not None else "never ready"
        pgid = dep["pid"]
        assert wait_for(lambda: len(group_and_tree(pgid)) >= 2)  # server + its "EngineCore"
        pids = group_and_tree(pgid)
        proc.kill()  # SIGKILL: no handler, no finally in servectl runs
        proc.wait(timeout=STOP_S)
        # Nobody else touches the group: the watchdog alone must stop it.
        assert wait_for(lambda: not live(pids)), f"left running: {live(pids)}"
        data = status(env)
        assert data["deployments"] == [] and [d["name"] for d in data["cleaned"]] == ["tiny-cpu"]
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_leftovers()


def test_record_exists_before_the_server_and_goes_with_a_failed_start(env, fake_env):
    res = subprocess.run(
        up_argv(fake_env, free_port()), env={**env, "FAKE_VLLM_EXIT": "3"}, capture_output=True, text=True, timeout=START_S
    )
    assert res.returncode == 1 and "vLLM exited during start-up" in res.stderr, res.stderr
    (log,) = state.logs_dir().glob("tiny-cpu-*.log")
    assert "record present at start: True" in log.read_text()
    assert not list(state.deployments_dir().glob("tiny-cpu.*"))  # record and pgid side file removed
    assert status(env) == {"deployments": [], "cleaned": []}


def test_two_ups_of_one_name_at_once_start_one_server(env, fake_env):
    ports = (free_port(), free_port())
    argv = [up_argv(fake_env, port, "--name", "twin") for port in ports]
    procs = [subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in argv]
    try:
        loser = wait_for(lambda: next((p for p in procs if p.poll() is not None), None), timeout=START_S)
        assert loser is not None, "neither up refused the name"
        err = loser.stderr.read()
        assert loser.returncode == 2 and "deployment 'twin' is already running" in err, err
        assert "Traceback" not in err
        winner = next(p for p in procs if p is not loser)
        dep = wait_for(lambda: ready_deployment(env, "twin"), timeout=START_S, every=0.5)
        assert dep and winner.poll() is None
        assert dep["port"] == (ports[0] if winner is procs[0] else ports[1])
        assert [d["name"] for d in status(env)["deployments"]] == ["twin"]
        pids = group_and_tree(dep["pid"])
        winner.send_signal(signal.SIGINT)
        assert winner.wait(timeout=STOP_S) == 130
        assert wait_for(lambda: not live(pids)) and status(env) == {"deployments": [], "cleaned": []}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        kill_leftovers()


def _claim_at_once(barrier, results, state_home: str, i: int) -> None:
    os.environ["XDG_STATE_HOME"] = state_home
    me = psutil.Process()
    rec = DeploymentRecord(
        name="same",
        runtime="local",
        recipe="tiny-cpu",
        profile="cpu",
        model="m",
        host="127.0.0.1",
        port=8344 + i,
        log_path="x.log",
        argv=[],
        started_at=time.time(),
        owner_pid=me.pid,
        owner_create_time=me.create_time(),
        marker=ownership.new_marker("same"),
    )
    barrier.wait()
    try:
        state.claim(rec)
        results.put((i, "claimed"))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put((i, f"{type(exc).__name__}: {exc}"))
    barrier.wait()  # every claimer stays alive (owner of its record) until all have tried


def test_claim_is_exclusive_among_processes_released_together(tmp_path, env):
    ctx = multiprocessing.get_context("spawn")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claim_at_once, args=(barrier, results, str(tmp_path / "state"), i)) for i in range(n)]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=STOP_S) for _ in range(n))
    for p in procs:
        p.join(timeout=STOP_S)
    winners = [i for i, out in outcomes.items() if out == "claimed"]
    assert len(winners) == 1, outcomes
    assert all("UserError: deployment 'same' is already running" in out for i, out in outcomes.items() if i != winners[0])
    assert state.load("same").port == 8344 + winners[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated-no-side-file"])
def test_damaged_record_down_stops_only_what_it_can_prove(env, fake_env, damage):
    res = subprocess.run(
        up_argv(fake_env, free_port(), "--detach", "--json"), env=env, capture_output=True, text=True, timeout=START_S
    )
    assert res.returncode == 0, res.stderr
    pgid = json.loads(res.stdout)["pid"]
    try:
        assert wait_for(lambda: len(group_and_tree(pgid)) >= 2)  # outlived the detached up
        pids = group_and_tree(pgid)
        record = state.deployments_dir() / "tiny-cpu.json"
        if damage == "garbage":  # the side file (pid, create time, marker) still proves the processes
            record.write_bytes(b"\x00\xff{not a record")
        else:  # cut mid-file, after the pid; the side file is gone too: nothing proves what the pid is
            text = record.read_text()
            record.write_text(text[: text.index('"create_time"')])
            (state.deployments_dir() / "tiny-cpu.pgid").unlink()
        (dep,) = status(env)["deployments"]
        want = "corrupt" if damage == "garbage" else "unverified"
        assert dep["name"] == "tiny-cpu" and dep["state"] == want and dep["process_alive"] is (damage == "garbage")
        table = sc(env, "status")
        assert table.returncode == 0 and want in table.stdout + table.stderr
        down = sc(env, "down", "tiny-cpu")
        if damage == "garbage":
            assert down.returncode == 0, down.stderr
            assert wait_for(lambda: not live(pids)), f"left running: {live(pids)}"
        else:
            assert down.returncode == 1 and "signalled nothing" in down.stderr, down.stderr
            time.sleep(1)
            assert set(live(pids)) == pids  # nothing was signalled
        assert not record.exists() and status(env) == {"deployments": [], "cleaned": []}
    finally:
        for pid in live(group_and_tree(pgid)):
            os.kill(pid, signal.SIGKILL)
