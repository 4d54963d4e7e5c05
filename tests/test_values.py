"""Values as vLLM checks them, refused with exit 2 and one line naming the flag: bounds read from vLLM's own
config classes, strict JSON and its shapes, pipeline stages against layers, ports, finite numbers, options
nobody knows; and `up --force` reaches the guards `render --force` does."""

from __future__ import annotations

import json
import socket

import pytest


def refused(result, flag: str) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert flag in result.stderr and "Traceback" not in result.output and "internal error" not in result.output
    return lines[-1]


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["plan", "tiny-cpu", "--gpu", "cpu", "--", "-tp", "0"], "--tensor-parallel-size"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--", "--pipeline-parallel-size", "0"], "--pipeline-parallel-size"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--max-model-len", "0"], "--max-model-len"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--max-num-seqs", "-5"], "--max-num-seqs"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--max-num-batched-tokens", "0"], "--max-num-batched-tokens"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--gpu-memory-utilization", "nan"], "--gpu-memory-utilization"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--block-size", "0"], "--block-size"),
        (
            ["render", "tiny-cpu", "--gpu", "cpu", "--", "--speculative-config", '{"num_speculative_tokens": 1e400}'],
            "--speculative-config",
        ),
        (
            ["render", "tiny-cpu", "--gpu", "cpu", "--", "--speculative-config", '{"num_speculative_tokens": "two"}'],
            "--speculative-config",
        ),
        (
            ["plan", "tiny-cpu", "--gpu", "cpu", "--speculative-config", '{"num_speculative_tokens": true}'],
            "--speculative-config",
        ),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--speculative-config", '{"num_speculative_tokens": NaN}'], "--speculative-config"),
        (["render", "tiny-cpu", "--gpu", "cpu", "--", "--limit-mm-per-prompt", '{"image": -1}'], "--limit-mm-per-prompt"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--", "-pp", "5"], "--pipeline-parallel-size"),  # 4 layers
        (["plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--nodes", "64"], "--nodes"),  # 40 layers
        (["render", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--format", "ray-nodes", "--nodes", "41"], "--nodes"),
        (["render", "tiny-cpu", "--gpu", "cpu", "--", "-tp", "3"], "--tensor-parallel-size"),  # 4 attention heads
        (["render", "tiny-cpu", "--gpu", "cpu", "--format", "compose", "--with-proxy", "--port", "65535"], "--proxy-port"),
        (
            [
                "render",
                "tiny-cpu",
                "--gpu",
                "cpu",
                "--format",
                "compose",
                "--with-proxy",
                "--port",
                "8000",
                "--proxy-port",
                "8000",
            ],
            "--proxy-port",
        ),
        (["render", "tiny-cpu", "--gpu", "cpu", "--port", "0"], "--port"),
        (["check", "http://127.0.0.1:1", "--timeout", "nan"], "--timeout"),
        (["check", "http://127.0.0.1:1", "--timeout", "inf"], "--timeout"),
        (["check", "http://127.0.0.1:1", "--timeout", "-1"], "--timeout"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--target-contxt", "32768"], "--target-contxt"),
        (["plan", "tiny-cpu", "--gpu", "cpu", "--", "--api", "x"], "--api"),  # ambiguous, as vLLM's argparse says
        (["render", "tiny-cpu", "--gpu", "cpu", "--", "--served-model-name", "a\x1b[2Jb"], "--served-model-name"),
    ],
)
def test_values_vllm_would_refuse_are_refused_naming_the_flag(cli_any, argv, flag):
    refused(cli_any(*argv), flag)


def test_a_misspelt_plan_option_gets_did_you_mean_and_a_whole_command_line_still_plans(cli_any):
    assert "did you mean --target-context?" in refused(
        cli_any("plan", "tiny-cpu", "--gpu", "cpu", "--target-contxt", "32768"), "--target-contxt"
    )
    ok = cli_any(
        "plan",
        "tiny-cpu",
        "--gpu",
        "cpu",
        "--json",
        "vllm",
        "serve",
        "servectl/tiny-cpu",
        "--max-model-len",
        "1024",
        "--enforce-eager",
        "--served-model-name",
        "t",
        "--max-num-seq",
        "4",
    )  # an abbreviation vLLM accepts
    assert ok.exit_code == 0, ok.output
    plan = json.loads(ok.stdout)
    assert plan["max_model_len"] == 1024 and "--max-num-seqs" in plan["flags"]


def test_the_proxy_refuses_itself_and_a_taken_port_in_one_line(cli_any):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = cli_any("proxy", "--backend", "http://127.0.0.1:9", "--listen", f"127.0.0.1:{port}", "--model", "m")
    assert busy.exit_code == 2 and "cannot listen on" in busy.stderr and "Traceback" not in busy.output
    own = cli_any("proxy", "--backend", f"http://localhost:{port}/v1", "--listen", f"0.0.0.0:{port}", "--model", "m")
    assert own.exit_code == 2 and "this proxy's own address" in own.stderr


def test_up_force_reaches_the_guards_render_force_does(cli_any, tmp_path, monkeypatch, vllm_python):
    """A forceable guard (FP8 KV cache on a hybrid recipe) stops `up` as it stops `render`; --force gets both past
    it (`up` then goes on to its next step, here the port check)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    guard = "degrades output into gibberish"
    base = ["qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090"]
    assert guard in refused(cli_any("render", *base, "--", "--kv-cache-dtype", "fp8"), "--kv-cache-dtype")
    assert cli_any("render", *base, "--force", "--", "--kv-cache-dtype", "fp8").exit_code == 0
    python = str(vllm_python)
    with socket.socket() as taken:  # `up` past the guards meets the port check next: nothing starts
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        stopped = cli_any("up", *base, "--python", python, "--port", port, "--", "--kv-cache-dtype", "fp8")
        forced = cli_any("up", *base, "--python", python, "--port", port, "--force", "--", "--kv-cache-dtype", "fp8")
    assert stopped.exit_code == 2 and guard in stopped.stderr
    assert "forced past guard fp8-kv-cache" in forced.stderr  # a warning now, no longer a refusal
    assert forced.exit_code == 2 and "already in use" in forced.stderr, forced.stderr


@pytest.fixture()
def cli_any():
    """The CLI in-process, exceptions caught (a refused value must be exit 2, never an exception)."""
    from click.testing import CliRunner

    from servectl.cli import main

    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=True)
