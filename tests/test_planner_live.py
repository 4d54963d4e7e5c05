"""The plan against the real vLLM CPU server on whatever machine runs the tests: KV tokens, block size and
maximum concurrency must equal what vLLM logs, exactly. A host whose CPU features change vLLM's layout in a way
the planner does not know fails here instead of hiding the gap; `up` then stores the start for later plans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from waits import START_S, STOP_S
from servectl.vllmenv.location import find_vllm_python
from servectl.plan.vllm_log import parse_text

pytestmark = [pytest.mark.server, pytest.mark.slow]
SERVECTL = [sys.executable, "-m", "servectl"]


def sc(env, *args, timeout=START_S) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVECTL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_plan_equals_the_real_start_on_this_host(tmp_path):
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    find_vllm_python()  # fails (not skips) without the vLLM CPU environment: scripts/test bootstraps it
    model_dir = str(ensure_tiny_model(variant="scripted"))
    # isolated records and calibration: the prediction below comes from the rules alone
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "SERVECTL_CALIBRATION_DIR": str(tmp_path / "calibration"),
    }
    plan_res = sc(env, "plan", "tiny-cpu", "--gpu", "cpu", "--json", timeout=STOP_S)
    assert plan_res.returncode == 0, plan_res.stderr
    plan = json.loads(plan_res.stdout)
    assert not any(n.startswith("calibrated") for n in plan["notes"])

    up = sc(env, "up", "tiny-cpu", "--model-path", model_dir, "--port", str(free_port()), "--detach", "--no-check", "--json")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        summary = json.loads(up.stdout)
        log = parse_text(Path(summary["log"]).read_text(errors="replace"))
    finally:
        sc(env, "down", "tiny-cpu", timeout=STOP_S)
    host = next(n for n in plan["notes"] if n.startswith("host CPU"))
    assert plan["kv_cache_tokens_logged"] == log.kv_cache_tokens, host
    assert plan["block_size"] == (log.block_size or 128), host  # no alignment line: the CPU default, 128
    assert round(plan["max_concurrency"], 2) == log.max_concurrency, host
    assert summary["kv_cache_tokens_predicted"] == summary["kv_cache_tokens_reported"] == log.kv_cache_tokens

    # the start was stored for (tiny-cpu, cpu, vLLM version, this host): the next plan says so
    again = json.loads(sc(env, "plan", "tiny-cpu", "--gpu", "cpu", "--json", timeout=STOP_S).stdout)
    assert again["notes"][0].startswith("calibrated from 1 start")
    assert again["kv_cache_tokens_logged"] == log.kv_cache_tokens
