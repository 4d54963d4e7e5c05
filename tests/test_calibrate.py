"""Calibration from real start-up logs: stored per (recipe, profile, vLLM version, host), used by later plans."""

import json
from pathlib import Path

import pytest

from servectl.plan import calibrate as cal
from servectl.hardware import cpu_features
from servectl.hardware.cpu_features import CpuFeatures

LOGS = Path(__file__).parent / "data" / "logs"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SERVECTL_CALIBRATION_DIR", raising=False)  # the store under this test's cache dir
    return tmp_path


def test_calibrate_cpu_log_matches_and_stores(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_features, "probe", lambda python, timeout_s=120: CpuFeatures(source="test: AVX2 host"))
    r = cli("calibrate", "tiny-cpu", "--gpu", "cpu", "--log", str(LOGS / "cpu-start-tiny-qwen3next.log"), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["measured_kv_tokens"] == d["predicted_kv_tokens"] == 190_650
    assert d["measured_block_size"] == d["predicted_block_size"] == 128  # no "Setting attention block size" line
    assert d["overhead_mib"] == 0.0 and d["starts"] == 1  # bytes were pinned: nothing to correct
    stored = json.loads((tmp_path / "servectl" / "calibration" / "cpu.json").read_text())
    assert stored["tiny-cpu"]["0.32.0"][cal.host_id()]["starts"] == 1


def test_a_host_the_rules_miss_is_exact_after_one_start(cli, monkeypatch):
    """The planner reads this host as AVX2 (a rule it does not know): the first plan misses vLLM's figure,
    the second, calibrated from the real start's log, gives it exactly."""
    monkeypatch.setattr(cpu_features, "probe", lambda python, timeout_s=120: CpuFeatures(source="test: rules miss it"))
    first = json.loads(cli("plan", "tiny-cpu", "--gpu", "cpu", "--json").stdout)
    assert first["kv_cache_tokens_logged"] == 190_650 and first["block_size"] == 128
    r = cli("calibrate", "tiny-cpu", "--gpu", "cpu", "--log", str(LOGS / "cpu-start-tiny-qwen3next-avx512bf16.log"), "--json")
    d = json.loads(r.stdout)
    assert (d["measured_block_size"], d["predicted_block_size"], d["measured_kv_tokens"]) == (256, 128, 149_796)
    second = json.loads(cli("plan", "tiny-cpu", "--gpu", "cpu", "--json").stdout)
    assert second["kv_cache_tokens_logged"] == 149_796 and second["block_size"] == 256
    assert round(second["max_concurrency"], 2) == 73.14
    assert second["notes"][0].startswith("calibrated from 1 start")
    # another vLLM version or host has its own key
    assert cal.correction_for("tiny-cpu", "cpu", "0.31.0") is None
    assert cal.correction_for("tiny-cpu", "cpu", "0.32.0", host="elsewhere") is None


def test_gpu_log_correction_is_used_by_later_plans(cli, tmp_path):
    # a util-mode 5090 start that left 1.00 GiB for the KV cache (less than the plan predicts)
    log = tmp_path / "start.log"
    log.write_text(
        "(APIServer pid=1) INFO non-default args: {'gpu_memory_utilization': 0.905, 'max_model_len': 32768, "
        "'max_num_seqs': 32, 'max_num_batched_tokens': 2048, 'max_cudagraph_capture_size': 32}\n"
        "(EngineCore pid=2) INFO Initializing a V1 LLM engine (v0.18.0) with config: model='m'\n"
        + (LOGS / "gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-a.log").read_text().splitlines()[3].replace("5.98", "1.00")
        + "\n"
    )
    args = ("plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--gpu-memory-utilization", "0.905", "--json")
    before = json.loads(cli(*args).stdout)
    assert before["vllm_version"] == "0.18.0"
    r = cli("calibrate", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--log", str(log), "--json")
    d = json.loads(r.stdout)
    assert d["measured_available_mib"] == 1024.0
    assert d["overhead_mib"] == pytest.approx(d["predicted_available_mib"] - 1024.0, abs=0.2)
    after = json.loads(cli(*args).stdout)
    assert after["budget"]["calibration"] == pytest.approx(d["overhead_mib"], abs=0.2)
    assert after["num_blocks"] == 1024 * 2**20 // (2_162_688 * 10)
    assert after["num_blocks"] < before["num_blocks"]
    assert after["notes"][0].startswith("calibrated from 1 start")
    cli("calibrate", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--log", str(log), "--json")
    again = json.loads(cli(*args).stdout)
    assert again["notes"][0].startswith("calibrated from 2 starts")
    assert cal.correction_for("qwen3.5-35b-a3b-nvfp4", "rtx-5090", "0.18.0").overhead_mib == d["overhead_mib"]


def test_log_without_kv_lines_is_a_user_error(cli):
    r = cli("calibrate", "tiny-cpu", "--gpu", "cpu", "--log", str(LOGS / "gpu-a6000-qwen3.8-27b-nvfp4-load.log"))
    assert r.exit_code == 2 and "no KV cache line" in r.stderr
