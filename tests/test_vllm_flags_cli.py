"""vLLM flags on the command line: canonical before guards and planner, unknown ones refused or named."""

from __future__ import annotations

import pytest

MODEL, GPU = "qwen3.5-35b-a3b-mxfp4", "rtx-5090"


@pytest.mark.parametrize("flags", [["-tp", "8"], ["-tp=8"], ["--tensor_parallel_size", "8"], ["--tensor-parallel-size=8"]])
def test_every_spelling_of_tp_meets_the_gpu_count_guard(cli, flags):
    result = cli("render", MODEL, "--gpu", GPU, "--", *flags)
    assert result.exit_code == 2
    assert "needs 8 GPUs but profile rtx-5090 has 1" in result.stderr


def test_the_rendered_command_uses_vllms_long_names(cli):
    out = cli("render", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--", "-tp", "2", "--max_model_len=4096").stdout
    assert "--tensor-parallel-size 2" in out and "--max-model-len 4096" in out and "-tp" not in out


def test_a_servectl_option_it_does_not_know_is_never_passed_to_vllm(cli):
    result = cli("render", MODEL, "--gpu", GPU, "--turbo", "on")  # (--speculative is a render option now)
    assert result.exit_code == 2
    assert "No such option" in result.stderr and "--turbo" in result.stderr
    assert "vllm serve" not in result.stdout


def test_a_flag_vllm_does_not_know_is_named_in_a_warning(cli):
    result = cli("render", MODEL, "--gpu", GPU, "--", "--max-num-seqz", "64", "--speculativ-config", "mtp")
    assert result.exit_code == 0
    warning = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: not checked")]
    assert warning and "--max-num-seqz (did you mean --max-num-seqs" in warning[0] and "--speculativ-config" in warning[0]


def test_strict_refuses_flags_it_cannot_check(cli):
    result = cli("render", MODEL, "--gpu", GPU, "--strict", "--", "--max-num-seqz", "64")
    assert result.exit_code == 2
    assert "--strict refuses" in result.stderr and result.stdout == ""


def test_a_bad_value_is_one_line_exit_2(cli):
    result = cli("render", MODEL, "--gpu", GPU, "--", "--tensor-parallel-size", "two")
    assert result.exit_code == 2
    assert "--tensor-parallel-size expects an integer, got 'two'" in result.stderr


def test_the_target_vllm_refuses_unknown_flags_with_did_you_mean(cli, tmp_path, monkeypatch, vllm_python):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = cli("render", MODEL, "--gpu", GPU, "--python", str(vllm_python), "--", "--max-num-seqz", "64")
    assert result.exit_code == 2
    assert "has no option --max-num-seqz (did you mean --max-num-seqs" in result.stderr
