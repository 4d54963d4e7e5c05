"""`servectl check --level full|soak` against real vLLM CPU servers with the scripted tiny model:
a server sized for what its flags promise passes; one whose KV cache cannot hold max_num_seqs x
max_model_len fails `concurrency` with vLLM's own figures, the preemptions it caused and the flags
that fix it."""

import json
import os
import subprocess
import sys

import pytest

from servectl.vllmenv.tinymodel import ensure_tiny_model

from conftest import VllmServer, free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]


def by_name(data):
    return {c["name"]: c for c in data["checks"]}


def test_full_passes_on_a_well_sized_server(tiny_server, cli):
    result = cli("check", tiny_server.url, "--level", "full", "--json", "--timeout", "600")
    data = json.loads(result.stdout)
    checks = by_name(data)
    assert result.exit_code == 0, [(c["name"], c["detail"]) for c in data["checks"] if c["status"] == "fail"]
    assert data["level"] == "full"
    for name in ("concurrency", "context", "tool-stream", "reasoning-leak"):
        assert checks[name]["status"] == "pass", (name, checks[name]["detail"])
    conc = checks["concurrency"]["figures"]
    # the fixture's flags: --kv-cache-memory-bytes 64M --max-model-len 2048 --max-num-seqs 8
    assert conc["max_num_seqs"] == 8 and conc["max_num_seqs_source"] == "the server's --max-num-seqs"
    assert conc["max_concurrency"] >= 8 and conc["requests"] == 8 and conc["errors"] == 0 and conc["preemptions"] == 0
    assert conc["prompt_tokens"] + conc["output_tokens"] <= 2048
    rungs = checks["context"]["figures"]["rungs"]
    assert [r["share"] for r in rungs] == [0.25, 0.5, 0.75, 0.9]
    assert all(r["usage_prompt_tokens"] == r["prompt_tokens"] for r in rungs)
    assert rungs[-1]["prompt_tokens"] > 0.85 * 2048
    # vLLM's own per-request counters saw each rung whole (the only request on the server at that time)
    assert checks["context"]["figures"]["counters"] == "exact"
    assert all(
        r["vllm_counted"]
        == {
            "finished_requests": 1,
            "finished_prompt_tokens": r["usage_prompt_tokens"],
            "finished_generation_tokens": r["completion_tokens"],
            "preemptions": 0,
        }
        for r in rungs
    )
    assert checks["tool-stream"]["figures"]["tool_call_deltas"] >= 1


@pytest.fixture()
def busy_cores():
    """One busy loop per core (at least two), started here and stopped by PID: a host whose CPUs are taken."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(2, os.cpu_count() or 2))]
    yield [p.pid for p in loops]
    for p in loops:
        p.kill()
        p.wait()


def test_full_passes_while_other_processes_keep_every_core_busy(tiny_server, cli, busy_cores):
    """The gates decide from figures vLLM reports exactly (token counts, /tokenize, its counters), never from
    gauges sampled while requests run: a host with no idle core gives the same verdict, only later."""
    assert all(os.path.exists(f"/proc/{pid}") for pid in busy_cores)
    result = cli("check", tiny_server.url, "--level", "full", "--json", "--timeout", "600")
    data = json.loads(result.stdout)
    assert result.exit_code == 0, [(c["name"], c["detail"]) for c in data["checks"] if c["status"] == "fail"]
    checks = by_name(data)
    for name in ("concurrency", "context", "tool-stream", "reasoning-leak"):
        assert checks[name]["status"] == "pass", (name, checks[name]["detail"])
    assert all(os.path.exists(f"/proc/{pid}") for pid in busy_cores)  # the load lasted the whole check


def test_full_fails_concurrency_on_an_undersized_server(cli):
    # 4 MiB of KV cache: vLLM 0.32 reports 9,362 tokens, 4.57 requests of 2,048; the flags promise 8
    server = VllmServer(
        ensure_tiny_model("scripted"), port=free_port(), extra=("--kv-cache-memory-bytes", "4M", "--max-num-seqs", "8")
    )
    try:
        server.wait_ready()
        result = cli("check", server.url, "--level", "full", "--json", "--timeout", "600")
    finally:
        server.stop()
    assert result.exit_code == 1
    checks = by_name(json.loads(result.stdout))
    conc = checks["concurrency"]
    assert conc["status"] == "fail"
    fig = conc["figures"]
    assert fig["max_num_seqs"] == 8 and fig["max_concurrency"] < 8 and fig["kv_cache_tokens"] < 8 * 2048
    # 8 requests of 1,945 tokens on a cache of ~4.6 such requests: running ones need new blocks while
    # decoding and vLLM preempts; every request still completes
    assert fig["preemptions"] >= 1 and fig["errors"] == 0 and fig["empty"] == 0
    assert "preemptions" in conc["detail"] and "fix: --max-num-seqs 4" in conc["detail"]
    assert "--max-model-len 1024" in conc["detail"] and "--kv-cache-memory-bytes 8M" in conc["detail"]
    assert "concurrency" in result.stderr  # the failed check is named
    # only the capacity is wrong: the other gates still pass
    for name in ("context", "tool-stream", "reasoning-leak"):
        assert checks[name]["status"] == "pass", (name, checks[name]["detail"])


def test_soak_30s_passes_and_reports_memory(tiny_server, cli):
    result = cli("check", tiny_server.url, "--level", "soak", "--duration", "30s", "--json", "--timeout", "600")
    data = json.loads(result.stdout)
    assert result.exit_code == 0, [(c["name"], c["detail"]) for c in data["checks"] if c["status"] == "fail"]
    soak = by_name(data)["soak"]
    fig = soak["figures"]
    assert soak["status"] == "pass" and fig["duration_s"] >= 30
    assert fig["requests"] > len(fig["kinds"]) and fig["errors"] == 0 and fig["empty"] == 0
    assert set(fig["kinds"]) == {"chat", "thinking", "stream", "long", "tool"}
    # the server runs here: its process tree's memory is measured at start, mid-run and end
    assert fig["rss_start_bytes"] > 100 * 2**20 and fig["rss_mid_bytes"] and fig["rss_end_bytes"]
    assert "second half" in fig["growth_bound"]
    assert fig["tokens_per_s_first_quarter"] > 0 and fig["throughput_drift"] is not None
    assert "soak: " in result.stderr  # progress while it ran


def test_duration_belongs_to_soak(cli):
    result = cli("check", f"http://127.0.0.1:{free_port()}", "--duration", "30s")
    assert result.exit_code == 2 and "--level soak" in result.stderr
    result = cli("check", f"http://127.0.0.1:{free_port()}", "--level", "soak", "--duration", "soon")
    assert result.exit_code == 2 and "not a duration" in result.stderr
