"""Each guard of the core: a one-line error with exit 2, and --force where overriding makes sense."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from servectl.spec import guards
from servectl.vllmenv import args as va

NVFP4, GPTQ, MXFP4 = "qwen3.5-35b-a3b-nvfp4", "qwen3.5-35b-a3b-gptq-8bit", "qwen3.5-35b-a3b-mxfp4"

# (id, render args, words the error must contain, forceable)
CASES = [
    ("fp8-kv-cache", [NVFP4, "--gpu", "rtx-5090", "--", "--kv-cache-dtype", "fp8_e4m3"], "gibberish", True),
    (
        "fp8-kv-cache-with-scales",
        [MXFP4, "--gpu", "rtx-5090", "--", "--kv-cache-dtype", "fp8", "--calculate-kv-scales"],
        "gibberish",
        True,
    ),
    (
        "max-num-seqs-above-capture",
        [NVFP4, "--gpu", "rtx-5090", "--", "--max-num-seqs", "64"],
        "--max-cudagraph-capture-size 32",
        True,
    ),
    (
        "parallel-above-gpu-count",
        [NVFP4, "--gpu", "rtx-pro-6000-blackwell", "--", "--tensor-parallel-size", "2"],
        "needs 2 GPUs",
        True,
    ),
    ("nvfp4-on-rocm", [NVFP4, "--gpu", "rocm-4gpu"], "ROCm", False),
    ("mxfp4-on-rocm", [MXFP4, "--gpu", "rocm-4gpu"], "ROCm", False),
    ("gptq-rocm-without-float16", [GPTQ, "--gpu", "rocm-4gpu", "--", "--dtype", "bfloat16"], "--dtype float16", True),
    ("secret-api-key", [NVFP4, "--gpu", "rtx-5090", "--", "--api-key", "s3cret-value"], "--secret", False),
    ("secret-looking-value", [NVFP4, "--gpu", "rtx-5090", "--", "--hf-overrides", "hf_abcdefghijklmnopqrstuv"], "secret", False),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_guard_refuses_with_one_line_and_exit_2(cli, case):
    _, args, words, forceable = case
    result = cli("render", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line and "Traceback" not in line
    assert words in line
    assert ("--force" in line) == forceable


@pytest.mark.parametrize("case", [c for c in CASES if c[3]], ids=[c[0] for c in CASES if c[3]])
def test_force_overrides_with_a_warning(cli, case):
    _, args, _, _ = case
    result = cli("render", "--force", *args)
    assert result.exit_code == 0, result.stderr
    assert "forced past guard" in result.stderr
    assert "vllm serve " in result.stdout


@pytest.mark.parametrize("case", [c for c in CASES if not c[3]], ids=[c[0] for c in CASES if not c[3]])
def test_force_does_not_override_hard_guards(cli, case):
    _, args, words, _ = case
    result = cli("render", "--force", *args)
    assert result.exit_code == 2 and words in result.stderr


def test_card_settings_pass_every_guard(cli):
    # the 5090 card runs --max-num-seqs 32 with a capture size of 32: equal is fine
    assert cli("render", NVFP4, "--gpu", "rtx-5090", "--card").exit_code == 0


def test_card_overrides_still_guarded(cli):
    result = cli("render", NVFP4, "--gpu", "rtx-5090", "--card", "--", "--max-num-seqs", "33")
    assert result.exit_code == 2 and "exceeds --max-cudagraph-capture-size 32" in result.stderr


def test_literal_secret_in_env_is_refused(catalog):
    found = guards.check(catalog.model(NVFP4), catalog.gpu("rtx-5090"), [], {"HF_TOKEN": "whatever"})
    assert [v.id for v in found] == ["secret-on-command-line"] and not found[0].forceable


def test_nvfp4_before_blackwell_is_a_forceable_refusal(catalog):
    hopper = replace(
        catalog.gpu("rtx-pro-6000-blackwell"),
        name="h100",
        architecture="hopper",
        compute_capability="9.0",
        quantizations=["fp8", "gptq-int8", "bf16"],
    )
    found = guards.check(catalog.model(NVFP4), hopper, va.parse_args([]), {})
    assert [(v.id, v.forceable) for v in found] == [("quantization-unsupported", True)]
    assert "Blackwell" in found[0].message and "9.0" in found[0].message


def test_fp8_recipe_runs_where_listed(catalog):
    assert guards.check(catalog.model("qwen3.6-35b-a3b-fp8"), catalog.gpu("dgx-spark"), [], {}) == []


# --------------------------------------------------------------------------- one table for plan, render and up

MTP_PP = "vLLM's MTP draft does not support pipeline parallelism"


def _error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_every_guard_id_is_in_the_one_table():
    ids = [gid for gid, _, _ in guards.GUARDS]
    assert len(ids) == len(set(ids))
    assert {"fp8-kv-cache", "speculative-pipeline-parallel", "speculative-vllm-version", "profile-without-settings"} <= set(ids)


@pytest.mark.parametrize(
    "layout",
    [
        ["--", "--pipeline-parallel-size", "2"],
        ["--format", "k8s-lws", "--nodes", "2"],
        ["--format", "ray-nodes", "--nodes", "3"],
        ["--format", "k8s-raycluster"],  # the multi-node formats' default: 2 nodes
    ],
)
def test_mtp_with_pipeline_parallelism_is_refused_however_the_layout_is_reached(cli, layout):
    args = [GPTQ, "--gpu", "rocm-4gpu", "--speculative", "mtp"]
    if layout[0] == "--":
        args = [GPTQ, "--gpu", "rocm-4gpu", "--speculative", "mtp", "--", "--tensor-parallel-size", "2", *layout[1:]]
    refused = cli("render", *args, *([] if layout[0] == "--" else layout))
    assert refused.exit_code == 2 and MTP_PP in refused.stderr and "--force" in refused.stderr
    forced = cli("render", "--force", *args, *([] if layout[0] == "--" else layout))
    assert forced.exit_code == 0, forced.output
    assert "forced past guard speculative-pipeline-parallel" in forced.stderr


def test_plan_render_and_up_refuse_with_the_same_line_and_the_same_force_rule(cli, tmp_path, monkeypatch, vllm_python):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    tiny = ["tiny-cpu", "--gpu", "cpu", "--speculative", "mtp"]
    pp = ["--", "--pipeline-parallel-size", "2"]
    plan = cli("plan", *tiny, *pp)
    render = cli("render", *tiny, *pp)
    up = cli("up", *tiny, "--port", "1", "--no-check", *pp)  # `up` finds the vLLM environment first (vllm_python)
    assert plan.exit_code == render.exit_code == up.exit_code == 2
    assert _error_line(plan) == _error_line(render) == _error_line(up)
    assert "needs 2 GPUs but profile cpu has 1" in _error_line(plan)  # the table's first row that trips
    assert _error_line(plan).endswith("(or pass --force if you know better)")
    # --nodes reaches the same guard in plan and render
    nodes = cli("plan", GPTQ, "--gpu", "rocm-4gpu", "--speculative", "mtp", "--nodes", "2")
    assert nodes.exit_code == 2 and MTP_PP in nodes.stderr and "--nodes 2" in nodes.stderr
    forced = cli("plan", GPTQ, "--gpu", "rocm-4gpu", "--speculative", "mtp", "--nodes", "2", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert any("forced past guard speculative-pipeline-parallel" in w for w in json.loads(forced.stdout)["warnings"])


def test_plan_says_forced_only_when_forced(cli):
    refused = cli("plan", NVFP4, "--gpu", "rtx-5090", "--speculative", "mtp", "--vllm-version", "0.16.0")
    assert refused.exit_code == 2 and "needs vLLM >=0.17.0" in refused.stderr and "forced" not in refused.output
    forced = cli("plan", NVFP4, "--gpu", "rtx-pro-6000-blackwell", "--speculative", "mtp", "--vllm-version", "0.16.0", "--force")
    assert "forced past guard speculative-vllm-version" in forced.output
    plain = cli("plan", NVFP4, "--gpu", "rtx-5090", "--max-model-len", "32768")
    assert plain.exit_code == 0 and "forced" not in plain.output


def test_multi_node_gpus_count_every_node(catalog):
    flags = va.parse_args(["--tensor-parallel-size", "4", "--pipeline-parallel-size", "2"])
    one = guards.check(catalog.model(GPTQ), catalog.gpu("rocm-4gpu"), flags, {})
    two = guards.check(catalog.model(GPTQ), catalog.gpu("rocm-4gpu"), flags, {}, nodes=2)
    assert [v.id for v in one if v.id == "parallel-above-gpu-count"] and not [
        v for v in two if v.id == "parallel-above-gpu-count"
    ]
