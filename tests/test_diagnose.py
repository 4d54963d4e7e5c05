"""Diagnosis on real log text: GPU-only failures from public issue logs (each file names its source), the root error
extraction, the rules data, the CLI contract (--json keys, exit codes). Live CPU starts: test_diagnose_live.py."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from servectl.cli import main
from servectl.verify.diagnose import Hints, diagnose, explain, load_file, root_error

DATA = Path(__file__).parent / "data" / "logs"
DIAG = DATA / "diagnose"
KEYS = {"cause", "remedy", "fix", "evidence", "rule", "root_error"}


def _read(name: str) -> str:
    return (DIAG / name).read_text(encoding="utf-8")


def test_rules_are_data_with_sources_versions_and_how_tested():
    rules = load_file().rules
    assert len(rules) >= 40 and len({r.id for r in rules}) == len(rules)
    for r in rules:
        assert r.source and r.tested, r.id
        assert not r.versions or r.source_text, f"{r.id}: versions checked need the source text that was looked for"


def test_rule_messages_are_in_the_installed_vllm_source(vllm_python):
    """Each rule that names vLLM 0.32.0 among its checked versions: its message text is in that release's source."""
    pkg = next(vllm_python.parent.parent.glob("lib/python3*/site-packages/vllm"))
    source = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in pkg.rglob("*.py"))
    missing = [r.id for r in load_file().rules if "0.32.0" in r.versions and r.source_text not in source]
    assert not missing


# ------------------------------------------------------------------ GPU-only failures: public issue logs
@pytest.mark.parametrize(
    ("fixture", "rule", "fix"),
    [
        ("issue-transformerlab-370-bf16-v100.log", "bfloat16-unsupported-gpu", ["--dtype half"]),
        # 2 GPUs asked, 1 visible: tensor parallel over the one there is
        (
            "issue-15217-world-size-gpu-count.log",
            "world-size-exceeds-gpus",
            ["--tensor-parallel-size 1", "--pipeline-parallel-size 1"],
        ),
        ("issue-verl-omni-133-driver-too-old.log", "nvidia-driver-too-old", []),
        ("issue-nunif-702-cuda-driver-insufficient.log", "cuda-driver-insufficient", []),
        ("issue-13946-failed-to-infer-device.log", "no-gpu-visible", []),
        ("issue-gfx906-6-invalid-device-function.log", "rocm-invalid-device-function", []),
        ("issue-rocm-4909-strix-halo-invalid-device-function.log", "rocm-invalid-device-function", []),
        ("issue-4383-nccl-shm.log", "nccl-shared-memory", []),
        ("issue-4618-nccl-unhandled-system-error.log", "nccl-error", ["NCCL_P2P_DISABLE=1"]),
        ("issue-13608-undefined-symbol.log", "vllm-torch-mismatch", []),
        ("issue-8189-flash-attention-ampere.log", "flash-attention-needs-ampere", ["--dtype half"]),
        ("issue-9045-oom-loading.log", "cuda-oom-loading", ["--tensor-parallel-size 2"]),
        ("issue-23230-oom-profiling.log", "cuda-oom-profiling", ["--max-num-batched-tokens 2048", "--max-num-seqs 32"]),
        (
            "issue-10439-compose-no-cache-blocks.log",
            "no-memory-for-cache-blocks",
            ["--gpu-memory-utilization 0.95", "--max-num-batched-tokens 2048"],
        ),
        (
            "issue-17431-no-cache-blocks-a800.log",
            "no-memory-for-cache-blocks",
            ["--gpu-memory-utilization 0.95", "--max-num-batched-tokens 2048"],
        ),
        ("issue-recipes-653-max-model-len-kv.log", "max-model-len-exceeds-kv-cache", ["--max-model-len 199552"]),
        ("issue-2418-max-seq-len-kv-tokens.log", "max-model-len-exceeds-kv-tokens", ["--max-model-len 3664"]),
        ("issue-1282-awq-capability.log", "quantization-not-supported-gpu", []),
        ("issue-4327-fp8-capability.log", "quantization-not-supported-gpu", []),
        ("issue-8791-uvicorn-bind.log", "port-in-use", None),
        ("gpu-free-memory-below-utilization.log", "free-memory-below-utilization", ["--gpu-memory-utilization 0.88"]),
        ("gpu-free-memory-below-utilization-v0.9.log", "free-memory-below-utilization", ["--gpu-memory-utilization 0.73"]),
        ("gpu-cuda-oom-cudagraph-capture.log", "cuda-oom-cudagraphs", ["--max-cudagraph-capture-size 16", "--max-num-seqs 16"]),
        ("gpu-cuda-error-oom-capture-end.log", "cuda-oom-cudagraphs", ["--max-cudagraph-capture-size 16", "--max-num-seqs 16"]),
        ("gpu-no-kernel-image-rtx5090.log", "no-kernel-image", []),
        ("issue-18995-rtx5090-no-kernel-image.log", "no-kernel-image", []),
        ("gated-repo.log", "gated-repo", ["HF_TOKEN=<your token>"]),
        ("rocm-hip-invalid-device-function.log", "rocm-invalid-device-function", None),
        ("issue-28857-gemma3-float16.log", "dtype-float16-unsupported-by-model", ["--dtype bfloat16"]),
        ("issue-14040-quantization-scheme-capability.log", "quantization-scheme-not-supported-gpu", []),
        ("issue-16231-pipeline-parallel-unsupported.log", "pipeline-parallel-unsupported", ["--pipeline-parallel-size 1"]),
        ("issue-7207-no-hip-gpus.log", "rocm-no-device", []),
        ("issue-transformers-44288-rope-list-set.log", "rope-validation-typeerror", []),
        (
            "issue-49064-mamba-blocks-h100.log",
            "mamba-blocks-below-max-num-seqs",
            ["--max-num-seqs 969", "--max-cudagraph-capture-size 969"],
        ),
        # the message inside vLLM's worker wrapper: no root error of its own, the rule still reads the line
        (
            "issue-38632-mamba-blocks-worker-wrapper.log",
            "mamba-blocks-below-max-num-seqs",
            ["--max-num-seqs 600", "--max-cudagraph-capture-size 600"],
        ),
        ("cpu-lora-adapter-missing.log", "lora-adapter-missing", []),
        ("cpu-ssl-files-missing.log", "file-missing", []),
        ("cpu-weights-lfs-pointer.log", "weights-not-safetensors", []),
        ("cpu-mtp-weights-missing.log", "mtp-weights-missing", []),
        ("cpu-mtp-prefix-caching-triton.log", "cpu-speculative-prefix-caching-triton", ["--no-enable-prefix-caching"]),
        ("cpu-pp3-numa-nodes.log", "cpu-workers-exceed-numa-nodes", ["--tensor-parallel-size 1", "--pipeline-parallel-size 1"]),
    ],
)
def test_rule_on_public_issue_log(fixture: str, rule: str, fix: list[str] | None) -> None:
    text = _read(fixture)
    d = explain(text)
    assert d.rule == rule, (d, fixture)
    if fix is not None:
        assert d.fix == fix
    lines = text.splitlines()
    assert d.evidence and lines[d.evidence.line - 1].strip().startswith(d.evidence.text[:80])
    assert d.root_error is None or "Engine core initialization failed" not in d.root_error.message


def test_numbers_from_the_message_reach_cause_and_fix() -> None:
    assert "12.8" in explain(_read("issue-verl-omni-133-driver-too-old.log")).cause  # found version 12080
    assert "gfx906" in explain(_read("issue-gfx906-6-invalid-device-function.log")).cause
    awq = explain(_read("issue-1282-awq-capability.log"))
    assert "awq needs compute capability 80; this GPU has 75" in awq.cause
    bf16 = explain(_read("issue-transformerlab-370-bf16-v100.log"))
    assert "Tesla V100-SXM2-32GB" in bf16.cause and "7.0" in bf16.cause


def test_gfx_override_from_the_detected_target() -> None:
    """vLLM does not log the gfx target: `up` passes the detected one; a consumer RDNA target gets the override."""
    text = _read("issue-rocm-4909-strix-halo-invalid-device-function.log")
    assert explain(text, Hints(gfx_target="gfx1151")).fix == ["HSA_OVERRIDE_GFX_VERSION=11.0.0"]
    assert explain(text, Hints(gfx_target="gfx1030")).fix == ["HSA_OVERRIDE_GFX_VERSION=10.3.0"]
    # a data-centre target has no stand-in: build for it (PYTORCH_ROCM_ARCH), no override offered
    d = explain(text, Hints(gfx_target="gfx942"))
    assert d.fix == [] and "PYTORCH_ROCM_ARCH=gfx942" in d.remedy


def test_tensor_parallel_fits_the_gpus() -> None:
    msg = "ValueError: Total number of attention heads (16) must be divisible by tensor parallel size (6)."
    assert explain(msg).fix == ["--tensor-parallel-size 4"]
    assert explain(msg, Hints(gpus=2)).fix == ["--tensor-parallel-size 2"]


def test_parser_from_the_printed_list_fitting_the_model_family() -> None:
    msg = (
        "(APIServer pid=1) INFO 01-01 00:00:00 [api_utils.py:286] non-default args: {'model': 'Qwen/Qwen3-8B'}\n"
        "KeyError: 'invalid tool call parser: qwen (chose from { hermes,llama3_json,mistral,qwen3_xml })'"
    )
    assert explain(msg).fix == ["--tool-call-parser hermes"]
    llama = msg.replace("Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct")
    assert explain(llama).fix == ["--tool-call-parser llama3_json"]
    # the recipe's parser wins when listed; a name not listed is never offered
    assert explain(msg, Hints(tool_call_parser="qwen3_xml")).fix == ["--tool-call-parser qwen3_xml"]
    assert explain(msg, Hints(tool_call_parser="qwen3_coder")).fix == ["--tool-call-parser hermes"]


# ------------------------------------------------------------------ root error
def test_root_error_skips_wrappers_and_unwraps_pydantic() -> None:
    log = (
        "(EngineCore pid=7) ERROR 01-01 00:00:00 [core.py:1] ValueError: the real cause 42\n"
        "Traceback (most recent call last):\n"
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}\n"
    )
    r = root_error(log)
    assert (r.type, r.message, r.line) == ("ValueError", "the real cause 42", 1)
    pyd = (
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for SchedulerConfig\n"
        "  Value error, max_num_batched_tokens (64) must be greater than or equal to max_num_seqs (128). "
        "[type=value_error, input_value=ArgsKwargs(()), input_type=ArgsKwargs]\n"
    )
    r = root_error(pyd)
    assert r.type == "ValueError" and r.line == 2 and r.message.endswith("max_num_seqs (128).")


def test_root_error_through_prefixes_and_the_worker_wrapper() -> None:
    compose = root_error(_read("issue-10439-compose-no-cache-blocks.log"))
    assert (compose.type, compose.line) == ("ValueError", 4) and compose.message.startswith("No available memory")
    worker = root_error(_read("issue-38632-mamba-blocks-worker-wrapper.log"))
    assert worker.type == "RuntimeError" and worker.message.startswith("max_num_seqs (1024) exceeds available Mamba")
    stamped = "2026-02-24T20:21:58.123456789Z (APIServer pid=1) KeyError: 'invalid tool call parser: x (chose from { hermes })'"
    assert root_error(stamped).type == "KeyError"


def test_unknown_error_still_shows_the_root_error_exit_1() -> None:
    log = "INFO starting\nTraceback (most recent call last):\nzmq.error.ZMQError: Something nobody has seen\n"
    res = CliRunner().invoke(main, ["diagnose", "-", "--json"], input=log)
    assert res.exit_code == 1
    out = json.loads(res.output)
    assert set(out) == KEYS and out["rule"] is None and out["fix"] == []
    assert out["root_error"] == {"type": "zmq.error.ZMQError", "message": "Something nobody has seen", "line": 3}
    text = CliRunner().invoke(main, ["diagnose", "-"], input=log)
    assert text.exit_code == 1 and "zmq.error.ZMQError: Something nobody has seen" in text.output


def test_cli_json_keys_and_text_output() -> None:
    res = CliRunner().invoke(main, ["diagnose", str(DIAG / "issue-recipes-653-max-model-len-kv.log"), "--json"])
    assert res.exit_code == 0
    out = json.loads(res.output)
    assert set(out) == KEYS and out["fix"] == ["--max-model-len 199552"]
    assert out["evidence"]["line"] == 2 and out["root_error"]["type"] == "ValueError"
    text = CliRunner().invoke(main, ["diagnose", str(DIAG / "issue-recipes-653-max-model-len-kv.log")])
    assert text.exit_code == 0 and "fix: --max-model-len 199552" in text.output


def test_unreadable_input_exits_2(tmp_path) -> None:
    res = CliRunner().invoke(main, ["diagnose", str(tmp_path / "missing.log")])
    assert res.exit_code == 2 and "cannot read" in res.output
    binary = tmp_path / "core"
    binary.write_bytes(b"\x7fELF\x00\x00\x01\x02" * 64)
    res = CliRunner().invoke(main, ["diagnose", str(binary)])
    assert res.exit_code == 2 and "not a text log" in res.output


def test_wrapper_rule_only_when_the_root_error_is_not_in_the_log() -> None:
    """The tail of a real failed start, cut below its root error: only the wrapper is left."""
    lines = _read("cpu-max-model-len-too-large.log").splitlines()
    tail = "\n".join(lines[next(i for i, ln in enumerate(lines) if "Engine core initialization failed" in ln) - 3 :])
    d = explain(tail)
    assert d.rule == "engine-core-failed" and d.root_error is None
    assert explain("\n".join(lines)).rule != "engine-core-failed"


def test_several_causes_in_one_log_each_once() -> None:
    found = {d.rule: d for d in diagnose(_read("vllm-source-messages.log"))}
    assert found["mamba-blocks-below-max-num-seqs"].fix == ["--max-num-seqs 37", "--max-cudagraph-capture-size 37"]
    assert "Qwen3_5MoeForConditionalGeneration" in found["architecture-not-supported"].cause
    assert "engine-core-failed" not in found


def test_fp8_kv_hazard_only_without_a_failure() -> None:
    found = explain((DATA / "gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-a.log").read_text())
    assert found.rule == "fp8-kv-cache-hybrid" and found.fix == ["--kv-cache-dtype auto"]


def test_oom_phase_loading_vs_graphs() -> None:
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 31.36 GiB"
    assert explain(oom).rule == "cuda-oom-loading"
    graphs = "INFO Model loading took 20.1 GiB\nCapturing CUDA graphs (mixed prefill-decode, PIECEWISE): 40%\n" + oom
    assert explain(graphs).rule == "cuda-oom-cudagraphs"


def test_docs_coverage_table_lists_every_rule() -> None:
    """The diagnosis-rules reference page (generated at every docs build) has a row for every rule, each naming the
    vLLM source it was looked up in and the log it was tested on."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "docs" / "_generate"))
    import reference

    page = reference.diagnosis_page()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9-]+)`( \([a-z]+\))? \|.*$", page, re.M)}
    missing = [r.id for r in load_file().rules if r.id not in rows]
    assert not missing
    for rule, row in rows.items():
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        source, tested_on = cells[-3], cells[-2]
        assert source and tested_on and tested_on != "-", rule


def test_captured_cpu_starts() -> None:
    """Real vLLM 0.32 CPU starts captured earlier (their .source files): an explicit KV size too small for the
    context gets the KV size vLLM said it needs, rounded up (0.24 GiB -> 256M), not --gpu-memory-utilization."""
    for name in ("cpu-max-model-len-too-large.log", "cpu-max-model-len-too-large-8140.log"):
        d = explain(_read(name))
        assert d.rule == "kv-cache-explicit-too-small-for-context" and d.fix == ["--kv-cache-memory-bytes 256M"], name
    port = explain(_read("cpu-port-in-use.log"))
    assert port.rule == "port-in-use" and "port 8142 is already in use" in port.cause
    assert port.fix and int(port.fix[0].split()[-1]) > 8142


def test_every_rule_is_tested_on_a_log() -> None:
    """Each rule id is expected somewhere: a public or captured log here, or a live failed start."""
    here = Path(__file__).parent
    text = (here / "test_diagnose.py").read_text() + (here / "test_diagnose_live.py").read_text()
    untested = [r.id for r in load_file().rules if f'"{r.id}"' not in text]
    assert not untested


def test_a_healthy_start_has_no_cause() -> None:
    """A real start that served (vLLM 0.32 CPU), and a start allowed past max_model_len whose WARNING quotes the
    error's words (the line below is from a real start with VLLM_ALLOW_LONG_MAX_MODEL_LEN=1): nothing to fix."""
    healthy = (DATA.parent / "vllm-0.32.0-cpu-startup.log").read_text()
    d = explain(healthy)
    assert d.rule is None and d.root_error is None and d.fix == []
    warned = healthy + (
        "(APIServer pid=17905) WARNING 12-01 15:26:47 [model.py:2660] User-specified max_model_len (500000) is greater "
        "than the derived max_model_len (max_position_embeddings=4096.0 or model_max_length=None in model's "
        "config.json). VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with extreme caution.\n"
    )
    assert explain(warned).rule is None
    res = CliRunner().invoke(main, ["diagnose", "-"], input=healthy)
    assert res.exit_code == 1 and "no error found in the log" in res.output
