"""Diagnosis rules on real log text: starts captured here (vLLM 0.32.0 CPU), vLLM's source messages, public issues."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from servectl.cli import main
from servectl.verify.diagnose import diagnose, load_rules

DATA = Path(__file__).parent / "data" / "logs"
DIAG = DATA / "diagnose"


def _by_rule(text: str) -> dict:
    return {d.rule: d for d in diagnose(text)}


def test_rules_load_and_every_rule_has_a_source():
    rules = load_rules()
    assert len(rules) >= 15 and all(r.source for r in rules)


def test_cli_real_cpu_start_max_model_len():
    res = CliRunner().invoke(main, ["diagnose", str(DIAG / "cpu-max-model-len-too-large.log"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    first = out["diagnoses"][0]
    assert first["rule"] == "max-model-len-exceeds-kv-cache"
    assert first["fix"] == "--max-model-len 261248"  # the estimate vLLM printed in this log
    assert "estimated maximum model length is 261248" in first["evidence"]
    assert all(d["rule"] != "engine-core-failed" for d in out["diagnoses"])  # root cause, not the wrapper


def test_cli_real_cpu_start_port_in_use_text_output():
    res = CliRunner().invoke(main, ["diagnose", str(DIAG / "cpu-port-in-use.log")])
    assert res.exit_code == 0
    assert "port 8142 is already in use" in res.output and "--port 8143" in res.output


def test_source_messages_each_rule_and_computed_fix():
    found = _by_rule((DIAG / "source-messages.log").read_text())
    assert found["free-memory-below-utilization"].fix == "--gpu-memory-utilization 0.87"  # floor(27.80/31.36-0.01)
    assert found["mamba-blocks-below-max-num-seqs"].fix == "--max-num-seqs 98 --max-cudagraph-capture-size 98"
    assert "no-memory-for-cache-blocks" in found
    assert "Qwen3_5MoeForConditionalGeneration" in found["architecture-not-supported"].cause
    assert "capability 89" in found["quantization-not-supported-gpu"].cause
    assert "100" in found["quantization-scheme-not-supported-gpu"].cause
    assert found["max-model-len-exceeds-kv-tokens"].fix == "--max-model-len 23648"


def test_no_kernel_image_issue_excerpt():
    (d,) = diagnose((DIAG / "issue-18995-rtx5090-no-kernel-image.log").read_text())
    assert d.rule == "no-kernel-image" and "cu130" in d.fix


def test_fp8_kv_cache_on_hybrid_qwen_real_gpu_log():
    found = _by_rule((DATA / "gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-a.log").read_text())
    assert found["fp8-kv-cache-hybrid"].fix == "--kv-cache-dtype auto"


def test_oom_phase_loading_vs_graphs():
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 31.36 GiB"
    assert [d.rule for d in diagnose(oom)] == ["cuda-oom-loading"]
    graphs = "INFO Model loading took 20.1 GiB\nCapturing CUDA graphs (mixed prefill-decode, PIECEWISE): 40%\n" + oom
    assert [d.rule for d in diagnose(graphs)] == ["cuda-oom-cudagraphs"]


def test_rope_gated_hip_and_wrapper_alone():
    assert diagnose("TypeError: unsupported operand type(s) for |: 'list' and 'set'")[0].fix == "servectl patch apply"
    assert diagnose("huggingface_hub.errors.GatedRepoError: 401 Client Error.")[0].rule == "gated-repo"
    assert diagnose("RuntimeError: HIP error: hipErrorNoDevice")[0].rule == "rocm-hip-device"
    wrapped = "ERROR [core.py] SomethingNewError: odd\nRuntimeError: Engine core initialization failed. See root cause above."
    (d,) = diagnose(wrapped)
    assert d.rule == "engine-core-failed" and d.context == ["ERROR [core.py] SomethingNewError: odd"]


def test_unknown_log_exits_1_and_stdin():
    res = CliRunner().invoke(main, ["diagnose", "-"], input="all good\n")
    assert res.exit_code == 1
    res = CliRunner().invoke(main, ["diagnose", "/nonexistent.log"])
    assert res.exit_code == 2 and "cannot read" in res.output


@pytest.mark.server
@pytest.mark.slow
def test_live_failing_start_is_diagnosed(tmp_path):
    """One real start of the CPU vLLM with a max-model-len its KV cache cannot hold."""
    import os

    from servectl.vllmenv.tinymodel import ensure_tiny_model

    vllm = Path.home() / ".local/share/servectl/venvs/vllm-0.32.0-cpu/bin/vllm"
    assert vllm.exists(), "the vLLM CPU environment is missing: run `servectl bootstrap --cpu`"
    env = {**os.environ, "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1", "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    log = tmp_path / "vllm.log"
    with log.open("w") as fh:
        proc = subprocess.run([str(vllm), "serve", str(ensure_tiny_model("scripted")), "--enforce-eager", "--dtype",
                               "bfloat16", "--kv-cache-memory-bytes", "32M", "--max-model-len", "500000", "--host",
                               "127.0.0.1", "--port", "8147"], stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=300)
    assert proc.returncode != 0
    res = subprocess.run([sys.executable, "-m", "servectl", "diagnose", str(log), "--json"], capture_output=True, text=True)
    first = json.loads(res.stdout)["diagnoses"][0]
    assert res.returncode == 0 and first["rule"] == "max-model-len-exceeds-kv-cache"
    import re

    est = re.search(r"estimated maximum model length is (\d+)", log.read_text()).group(1)
    assert first["fix"] == f"--max-model-len {est}"
