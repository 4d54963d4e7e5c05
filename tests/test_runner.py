"""Runners and the start-up follower, with real processes (no vLLM needed) and the captured real vLLM log."""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil

from servectl.launch import runners as runner

from servectl.launch import startup
from servectl.launch.ports import free_port, port_in_use
from servectl.render.container import container_run, sdk_kwargs
from servectl.spec.resolve import Request, resolve
from servectl.spec.models import LaunchOptions
from servectl.verify.proctree import tree_pids

DATA = Path(__file__).parent / "data"

# A stand-in "server" (the executable replaces `vllm serve`): prints, spawns a grandchild that
# ignores SIGTERM, then sleeps. Its argv tail is the spec's model and flags.
FAKE_SERVER = r"""
import os, signal, subprocess, sys, time
print("secret seen:", os.environ.get("SERVECTL_TEST_SECRET", "")[::-1] == "eulav-t3rc3s", flush=True)
print("argv:", sys.argv[1:], flush=True)
subprocess.Popen([sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
time.sleep(600)
"""


def _spec(catalog, gpu="cpu", **opts):
    options = LaunchOptions(model_path="/models/tiny", secrets=["HF_TOKEN", "SERVECTL_TEST_SECRET"], **opts)
    return resolve(Request(catalog.model("tiny-cpu"), catalog.gpu(gpu), options=options))


def test_subprocess_runner_logs_inherits_secrets_and_stops_whole_group(catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVECTL_TEST_SECRET", "s3cr3t-value")
    spec = _spec(catalog, port=8130)
    run = runner.SubprocessRunner([sys.executable, "-c", FAKE_SERVER])
    launched = run.start(spec, tmp_path / "logs" / "x.log")
    try:
        deadline = time.monotonic() + 20
        while len(tree_pids(launched.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = tree_pids(launched.pid)
        assert len(pids) == 2
        assert os.getpgid(launched.pid) == launched.pid != os.getpgid(0)  # its own process group
        assert run.alive(launched)
    finally:
        run.stop(launched, grace_s=1.0)  # the grandchild ignores SIGTERM: needs the SIGKILL step
    assert not run.alive(launched)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    log = launched.log_path.read_text()
    assert "secret seen: True" in log
    assert "s3cr3t-value" not in log
    assert "inherited: HF_TOKEN SERVECTL_TEST_SECRET" in log
    assert "'/models/tiny'" in log and "'--port', '8130'" in log and "'--host', '127.0.0.1'" in log


def test_process_alive_tells_a_reused_pid_apart():
    me = psutil.Process()
    assert runner.process_alive(me.pid, me.create_time())
    assert not runner.process_alive(me.pid, me.create_time() - 100)
    assert not runner.process_alive(None, None)


def test_vllm_executable_prefers_console_script(tmp_path):
    py = tmp_path / "bin" / "python"
    py.parent.mkdir()
    py.write_text("")
    assert runner.vllm_executable(py) == [str(py), "-m", "vllm.entrypoints.cli.main", "serve"]
    script = tmp_path / "bin" / "vllm"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert runner.vllm_executable(py) == [str(script), "serve"]


def test_docker_kwargs_nvidia(catalog):
    spec = _spec(catalog, gpu="cpu", port=8131)
    spec = replace(spec, container=catalog.gpu("rtx-5090").container, image="vllm/vllm-openai:v0.32.0")
    kw = sdk_kwargs(container_run(spec), {"SERVECTL_TEST_SECRET": "v", "PATH": "/bin"})
    assert kw["image"] == "vllm/vllm-openai:v0.32.0"
    assert kw["command"][0] == "/models/tiny" and "--port" not in kw["command"]
    assert kw["ports"] == {"8000/tcp": ("127.0.0.1", 8131)}
    assert kw["environment"]["SERVECTL_TEST_SECRET"] == "v"  # set secret copied at launch
    assert "HF_TOKEN" not in kw["environment"] and "PATH" not in kw["environment"]  # unset secret / non-secret left out
    assert kw["environment"]["VLLM_TARGET_DEVICE"] == "cpu"
    req = kw["device_requests"][0]
    assert req["Count"] == -1 and req["Capabilities"] == [["gpu"]]
    assert kw["ipc_mode"] == "host" and kw["detach"] is True and kw["auto_remove"] is True
    # the cache, and the local checkpoint read-only at the same path (the model argument is an absolute path)
    assert kw["volumes"] == {
        spec.cache_host_path: {"bind": "/root/.cache", "mode": "rw"},
        "/models/tiny": {"bind": "/models/tiny", "mode": "ro"},
    }


def test_docker_kwargs_rocm(catalog):
    spec = replace(_spec(catalog), container=catalog.gpu("rocm-4gpu").container)
    kw = sdk_kwargs(container_run(spec), {})
    c = catalog.gpu("rocm-4gpu").container
    assert kw["devices"] == [f"{d}:{d}:rwm" for d in c.devices] and c.devices
    assert kw["group_add"] == c.group_add
    assert kw.get("security_opt", []) == c.security_opt
    assert "device_requests" not in kw


def test_port_in_use_by_binding():
    port = free_port()
    assert not port_in_use("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert port_in_use("127.0.0.1", port)


def test_phases_of_a_real_vllm_cpu_start():
    text = (DATA / "vllm-0.32.0-cpu-startup.log").read_text()
    order = []
    for line in text.splitlines():
        p = startup.match_phase(line)
        if p and p not in order:
            order.append(p)
    assert order == ["config", "engine", "weights", "profiling", "kv_cache", "api"]
    assert startup.kv_cache_tokens(text) == 190650


def test_phase_of_gpu_spellings():
    assert startup.match_phase("INFO [kv_cache_utils.py:1087] GPU KV cache size: 1,234,560 tokens") == "kv_cache"
    assert startup.match_phase("INFO [gpu_model_runner.py:2010] Model loading took 18.5 GiB and 20.1 seconds") == "weights"
    assert startup.match_phase("INFO [gpu_model_runner.py:2500] Graph capturing finished in 12 secs, took 0.50 GiB") == "compile"
    assert startup.match_phase("INFO: Uvicorn running") is None


def test_wait_ready_fails_at_once_when_the_process_dies(tmp_path):
    log = tmp_path / "dead.log"
    with open(log, "wb") as fh:
        proc = __import__("subprocess").Popen(
            [
                sys.executable,
                "-c",
                "print('Resolved architecture: X'); print('ValueError: boom', flush=True); raise SystemExit(1)",
            ],
            stdout=fh,
            stderr=fh,
        )
    res = startup.wait_ready(log, lambda: proc.poll() is None, f"http://127.0.0.1:{free_port()}/health", timeout_s=120)
    assert not res.ready and res.failure == "exited"
    assert "ValueError: boom" in startup.tail(res.log_text) and "config" in res.phases
    assert res.elapsed_s < 120  # it did not wait for the deadline


def test_wait_ready_deadline(tmp_path):
    log = tmp_path / "slow.log"
    log.write_text("")
    res = startup.wait_ready(log, lambda: True, f"http://127.0.0.1:{free_port()}/health", timeout_s=0.3)
    assert not res.ready and res.failure == "deadline"


def test_log_follower_keeps_partial_lines(tmp_path):
    p = tmp_path / "l.log"
    p.write_text("a\nb")
    f = startup.LogFollower(p)
    assert f.read_lines() == ["a"]
    with open(p, "a") as fh:
        fh.write("c\n")
    assert f.read_lines() == ["bc"]


def test_plan_prediction_next_to_what_vllm_reported(catalog):
    from servectl.hardware.cpu_features import CpuFeatures
    from servectl.launch.planning import predicted_kv_tokens
    from servectl.plan.service import Target

    spec = _spec(catalog)
    reported = startup.kv_cache_tokens((DATA / "vllm-0.32.0-cpu-startup.log").read_text())
    # captured on an AVX2 host (GDN state kept in bf16: "Padding mamba page size by 75.34%"): plan for that host
    capture_host = Target("0.32.0", "the log's engine line", CpuFeatures(source="the capture host: AVX2"))
    assert predicted_kv_tokens(catalog.model("tiny-cpu"), catalog.gpu("cpu"), spec, capture_host) == reported


def test_wait_ready_trusts_health_only_from_the_process_on_the_port(tmp_path):
    """Another process took the port (after the pre-flight) and answers /health while ours still imports:
    that is not readiness; the same answer from our own process tree is."""
    import http.server
    import subprocess
    import threading

    from servectl.launch.ports import held_by_another

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)  # held by this test's process
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    log = tmp_path / "start.log"
    log.write_text("")
    try:
        url = f"http://127.0.0.1:{port}/health"
        assert held_by_another(port, ours.pid) and not held_by_another(port, os.getpid())
        other = startup.wait_ready(
            log, lambda: ours.poll() is None, url, timeout_s=1.0, listening=lambda: not held_by_another(port, ours.pid)
        )
        assert not other.ready and other.failure == "deadline"
        mine = startup.wait_ready(log, lambda: True, url, timeout_s=30, listening=lambda: not held_by_another(port, os.getpid()))
        assert mine.ready
    finally:
        ours.kill()
        ours.wait()
        server.shutdown()
