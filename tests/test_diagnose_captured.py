"""Diagnosis rules on vLLM failures quoted from public issues and on a real failing CPU start captured here.

Each fixture in tests/data/logs/diagnose/ names its source in its first line or a .source file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from servectl.cli import main
from servectl.verify.diagnose import diagnose

DIAG = Path(__file__).parent / "data" / "logs" / "diagnose"


def _one(name: str):
    found = diagnose((DIAG / name).read_text(encoding="utf-8"))
    assert found, f"no rule matched {name}"
    return found[0]


@pytest.mark.parametrize(
    ("fixture", "rule", "fix"),
    [
        # (19.77 / 22.05 - 0.01) -> 0.88; (59.32 / 79.15 - 0.01) -> 0.73
        ("gpu-free-memory-below-utilization.log", "free-memory-below-utilization", "--gpu-memory-utilization 0.88"),
        # vLLM 0.9 printed no device name: "Free memory on device (59.32/79.15 GiB)"
        ("gpu-free-memory-below-utilization-v0.9.log", "free-memory-below-utilization", "--gpu-memory-utilization 0.73"),
        ("gpu-cuda-oom-cudagraph-capture.log", "cuda-oom-cudagraphs", "--max-cudagraph-capture-size 16 --max-num-seqs 16"),
        # torch's "CUDA error: out of memory" from CUDAGraph.capture_end
        ("gpu-cuda-error-oom-capture-end.log", "cuda-oom-cudagraphs", "--max-cudagraph-capture-size 16 --max-num-seqs 16"),
        ("gpu-no-kernel-image-rtx5090.log", "no-kernel-image", None),
        ("gated-repo.log", "gated-repo", "export HF_TOKEN=<your token>"),
        ("rocm-hip-invalid-device-function.log", "rocm-hip-device", "--device /dev/kfd --device /dev/dri --group-add video"),
        ("cpu-max-model-len-too-large-8140.log", "max-model-len-exceeds-kv-cache", "--max-model-len 261248"),
    ],
)
def test_rule_on_real_log(fixture: str, rule: str, fix: str | None) -> None:
    d = _one(fixture)
    assert d.rule == rule
    if fix is not None:
        assert d.fix == fix
    assert d.evidence and d.evidence in (DIAG / fixture).read_text(encoding="utf-8")


def test_free_memory_cause_carries_the_numbers() -> None:
    d = _one("gpu-free-memory-below-utilization.log")
    assert "19.77 of 22.05 GiB" in d.cause and "0.9" in d.cause


def test_hip_error_names_the_detail() -> None:
    assert "invalid device function" in _one("rocm-hip-invalid-device-function.log").cause


def test_source_messages_each_rule_once() -> None:
    found = {d.rule: d for d in diagnose((DIAG / "vllm-source-messages.log").read_text(encoding="utf-8"))}
    assert found["mamba-blocks-below-max-num-seqs"].fix == "--max-num-seqs 37 --max-cudagraph-capture-size 37"
    assert "Qwen3_5MoeForConditionalGeneration" in found["architecture-not-supported"].cause
    assert "100" in found["quantization-not-supported-gpu"].cause and "89" in found["quantization-not-supported-gpu"].cause
    assert "no-memory-for-cache-blocks" in found
    # the wrapper at the end of the file is not reported when root causes are known
    assert "engine-core-failed" not in found


def test_real_cpu_start_through_the_cli() -> None:
    """A real vLLM 0.32 CPU start that failed (captured here): the root cause and the exact flag, not the wrapper."""
    res = CliRunner().invoke(main, ["diagnose", str(DIAG / "cpu-max-model-len-too-large-8140.log"), "--json"])
    data = json.loads(res.output)
    assert [d["rule"] for d in data["diagnoses"]] == ["max-model-len-exceeds-kv-cache"]
    assert data["diagnoses"][0]["fix"] == "--max-model-len 261248"
    assert "estimated maximum model length is 261248" in data["diagnoses"][0]["evidence"]


def test_stdin() -> None:
    text = (DIAG / "gated-repo.log").read_text(encoding="utf-8")
    res = CliRunner().invoke(main, ["diagnose", "-"], input=text)
    assert "HF_TOKEN" in res.output
