"""`servectl up/status/logs/down` against the real vLLM CPU server (each start costs ~35 s: few starts)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from conftest import free_port
from waits import START_S, STOP_S, wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]
SERVECTL = [sys.executable, "-m", "servectl"]


@pytest.fixture(scope="module")
def model_dir(tiny_model) -> str:
    return str(tiny_model)


@pytest.fixture()
def env(tmp_path):
    # Isolated state (records, logs); the tiny model and the vLLM venv stay in the shared user dirs.
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


def sc(env, *args, timeout=START_S) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVECTL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def status(env) -> dict:
    res = sc(env, "status", "--json", timeout=STOP_S)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def group_alive(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                out.append(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return out


def foreground_up(env, model_dir: str, port: int) -> subprocess.Popen:
    """`servectl up` in the foreground, as a user runs it; the test stops or kills it."""
    return subprocess.Popen(
        [*SERVECTL, "up", "tiny-cpu", "--model-path", model_dir, "--port", str(port), "--no-check"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready_deployment(env) -> dict:
    dep = wait_for(lambda: next((d for d in status(env)["deployments"] if d["ready"]), None), timeout=START_S, every=1)
    assert dep, "server never became ready"
    return dep


def still_running(pids) -> list[int]:
    """The pids that are still processes (zombies nobody reaped count as gone)."""
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_up_detached_check_status_logs_down(env, model_dir):
    port = free_port()
    res = sc(env, "up", "tiny-cpu", "--model-path", model_dir, "--port", str(port), "--detach", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    up = json.loads(res.stdout)
    assert up["endpoint"] == f"http://127.0.0.1:{port}/v1" and up["served_model_name"] == "tiny-cpu"
    assert up["kv_cache_tokens_reported"] and up["kv_cache_tokens_reported"] > 0
    assert list(up["phases"])[-1] == "ready" and "kv_cache" in up["phases"]
    pgid = up["pid"]
    pids = [pgid, *(c.pid for c in psutil.Process(pgid).children(recursive=True))]
    try:
        from openai import OpenAI

        client = OpenAI(base_url=up["endpoint"], api_key="none")
        models = client.models.list().data
        assert [m.id for m in models] == ["tiny-cpu"] and models[0].root == model_dir
        chat = client.chat.completions.create(model="tiny-cpu", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        assert chat.choices[0].finish_reason in ("stop", "length")

        (dep,) = status(env)["deployments"]
        assert dep["name"] == "tiny-cpu" and dep["state"] == "running" and dep["pid"] == pgid
        assert dep["rss_bytes"] > 100 * 2**20  # API server + EngineCore + worker
        logs = sc(env, "logs", "tiny-cpu", timeout=STOP_S)
        assert "Application startup complete" in logs.stdout

        again = sc(env, "up", "tiny-cpu", "--model-path", model_dir, "--port", str(free_port()), "--detach")
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        down = sc(env, "down", "tiny-cpu", timeout=STOP_S)
    assert down.returncode == 0, down.stderr
    assert not still_running(pids)
    assert status(env)["deployments"] == []


def test_kill9_of_a_foreground_server_is_reported(env, model_dir):
    proc = foreground_up(env, model_dir, free_port())
    try:
        pgid = ready_deployment(env)["pid"]
        os.kill(pgid, signal.SIGKILL)
        # `up` notices at once (it polls the process) and exits 1 with the log tail.
        out, err = proc.communicate(timeout=STOP_S)
        assert proc.returncode == 1 and "exited while serving" in err
        data = status(env)
        assert data["deployments"] == []
        assert wait_for(lambda: not group_alive(pgid))  # EngineCore / worker did not linger
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigkill_of_a_foreground_up_leaves_no_vllm_process(env, model_dir):
    proc = foreground_up(env, model_dir, free_port())
    try:
        pgid = ready_deployment(env)["pid"]
        pids = set(group_alive(pgid)) | {c.pid for c in psutil.Process(pgid).children(recursive=True)}
        assert len(pids) >= 2  # API server and EngineCore
        proc.kill()  # no handler runs in servectl: its watchdog alone stops the group
        proc.wait(timeout=STOP_S)
        assert wait_for(lambda: not still_running(pids)), "vLLM outlived a SIGKILLed `servectl up`"
        assert status(env)["deployments"] == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigint_to_foreground_up_leaves_no_process(env, model_dir):
    proc = foreground_up(env, model_dir, free_port())
    try:
        # Interrupt mid start-up, once vLLM has spawned its engine process.
        # The record exists before the server: wait until it names the process.
        dep = wait_for(lambda: next((d for d in status(env)["deployments"] if d["pid"]), None), timeout=START_S, every=0.5)
        assert dep
        pgid = dep["pid"]
        assert wait_for(lambda: len(group_alive(pgid)) >= 2, timeout=START_S, every=0.5)
        pids = set(group_alive(pgid)) | {c.pid for c in psutil.Process(pgid).children(recursive=True)}
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=STOP_S)
        assert proc.returncode == 130
        left = still_running(pids)
        assert left == [] and group_alive(pgid) == []
        assert status(env) == {"deployments": [], "cleaned": []}
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_start_that_fails_shows_the_log_tail(env, model_dir):
    # argparse accepts any parser name; vLLM fails at start-up
    res = sc(env, "up", "tiny-cpu", "--model-path", model_dir, "--port", str(free_port()), "--", "--tool-call-parser", "nosuch")
    assert res.returncode == 1
    assert "vLLM exited during start-up" in res.stderr
    assert "nosuch" in res.stderr.split("log tail", 1)[1]
    assert status(env)["deployments"] == []


def test_a_flag_vllm_does_not_know_is_refused_before_anything_starts(env, model_dir, tmp_path):
    res = sc(
        env, "up", "tiny-cpu", "--model-path", model_dir, "--port", str(free_port()), "--", "--no-such-flag", "3", timeout=STOP_S
    )
    assert res.returncode == 2
    assert "has no option --no-such-flag" in res.stderr
    assert not (tmp_path / "state" / "servectl" / "logs").exists() and status(env)["deployments"] == []


def test_port_in_use_refused_before_launch(env, model_dir, tmp_path):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        res = sc(env, "up", "tiny-cpu", "--model-path", model_dir, "--port", str(port), timeout=STOP_S)
    assert res.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in res.stderr
    assert not (tmp_path / "state" / "servectl" / "logs").exists()  # nothing was started


def test_failed_start_shows_root_error_and_fix(env, model_dir):
    """`up` prints what `servectl diagnose` prints: the root error and the fix, the recipe's parser for a bad one."""
    from servectl.catalog.load import load_catalog

    res = sc(
        env,
        "up",
        "tiny-cpu",
        "--model-path",
        model_dir,
        "--port",
        str(free_port()),
        "--",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "nosuch",
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "root error (log line" in res.stderr and "KeyError: 'invalid tool call parser: nosuch" in res.stderr
    assert f"fix: --tool-call-parser {load_catalog().model('tiny-cpu').parsers.tool_call}" in res.stderr
    assert status(env)["deployments"] == []


def test_up_with_servectls_own_settings_passes_its_own_full_check(env, model_dir):
    """No --max-num-seqs: servectl chooses what the plan says the KV cache holds (vLLM's CPU default of 128 would
    be preempted: 64M of KV cache hold 73 requests of 2048 tokens on an AVX-512 BF16 host, 107 on others), and
    its own `check --level full` passes, every gate included."""
    port = free_port()
    up = sc(env, "up", "tiny-cpu", "--gpu", "cpu", "--port", str(port), "--detach", "--no-check", "--json")
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        log = open(json.loads(up.stdout)["log"]).readline()
        assert "--max-num-seqs" in log and "note: --max-num-seqs" in up.stderr
        chosen = int(log.split("--max-num-seqs ")[1].split()[0])
        check = sc(env, "check", f"http://127.0.0.1:{port}", "--level", "full", "--json", "--timeout", "600", timeout=1800)
        report = json.loads(check.stdout)
        failed = [(c["name"], c["detail"]) for c in report["checks"] if c["status"] == "fail"]
        assert check.returncode == 0 and not failed, failed
        conc = next(c for c in report["checks"] if c["name"] == "concurrency")["figures"]
        assert conc["max_num_seqs"] == chosen and conc["max_num_seqs_source"] == "the server's --max-num-seqs"
        assert chosen <= conc["max_concurrency"] < chosen + 1  # the whole requests the cache holds, no fewer
        assert conc["requests"] == chosen and conc["preemptions"] == 0 and conc["errors"] == 0
    finally:
        down = sc(env, "down", "tiny-cpu")
    assert down.returncode == 0, down.stderr
