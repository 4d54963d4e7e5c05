"""`servectl bench`'s pure parts: the protocol's argv, vLLM's result JSON -> a results entry, what
the shared file may hold, comparisons, reading result files, and the plot."""

import copy
import json
import socket
import sys
from pathlib import Path

import pytest

from conftest import free_port
from servectl.bench.protocol import Protocol, bench_argv, compare, level_result, parse_levels, shareable_flags

DATA = Path(__file__).parent / "data"
# written by `vllm bench serve` 0.32.0 (CPU build) against the tiny model: --backend openai-chat,
# random 128+32 tokens, 8 prompts, --max-concurrency 4, --metric-percentiles 50,99
VLLM_JSON = json.loads((DATA / "vllm-0.32.0-cpu-bench-serve-c4.json").read_text())


def test_levels():
    assert parse_levels("16,1,4,4") == [1, 4, 16]
    for bad in ("", "0", "1,x", "-1", "1.5"):
        with pytest.raises(ValueError):
            parse_levels(bad)


def test_every_level_has_the_same_dataset_and_seed():
    p = Protocol(concurrency=[1, 4], num_prompts=32, input_len=128, output_len=32)
    one, four = (bench_argv(p, c, "http://h:1", "m", "tok", "/tmp/r") for c in (1, 4))
    differ = [(a, b) for a, b in zip(one, four) if a != b]
    assert differ == [("1", "4"), ("1", "4"), ("c1.json", "c4.json")]  # --max-concurrency, --num-warmups, file
    for flag, value in (
        ("--dataset-name", "random"),
        ("--seed", "0"),
        ("--num-prompts", "32"),
        ("--random-input-len", "128"),
        ("--metric-percentiles", "50,99"),
    ):
        assert one[one.index(flag) + 1] == value
    assert "--ignore-eos" in one and "--save-result" in one


def test_results_entry_carries_vllms_figures_unchanged():
    r = level_result(4, VLLM_JSON)
    assert r["request_throughput"] == VLLM_JSON["request_throughput"] == 8.46578924828244
    assert r["output_throughput"] == VLLM_JSON["output_throughput"]
    assert r["ttft_ms"] == {"p50": VLLM_JSON["p50_ttft_ms"], "p99": VLLM_JSON["p99_ttft_ms"]}
    assert r["tpot_ms"] == {"p50": VLLM_JSON["p50_tpot_ms"], "p99": VLLM_JSON["p99_tpot_ms"]}
    assert r["errors"] == VLLM_JSON["failed"] == 0 and r["completed"] == 8
    assert "spec_decode" not in r  # the server does not speculate
    # keys serve.py writes when the server's /metrics count drafts (vllm/benchmarks/serve.py, 0.32.0)
    spec = level_result(
        4,
        {
            **VLLM_JSON,
            "spec_decode_acceptance_rate": 71.5,
            "spec_decode_acceptance_length": 2.43,
            "spec_decode_num_drafts": 100,
            "spec_decode_draft_tokens": 200,
            "spec_decode_accepted_tokens": 143,
        },
    )
    assert spec["spec_decode"] == {
        "acceptance_rate": 71.5,
        "acceptance_length": 2.43,
        "num_drafts": 100,
        "draft_tokens": 200,
        "accepted_tokens": 143,
    }


def test_shared_flags_hold_no_secret_address_or_path():
    argv = [
        "/home/ann/venv/bin/vllm",
        "serve",
        "/home/ann/models/Qwen3.5-35B-A3B-NVFP4",
        "--api-key",
        "sk-123",
        "--host",
        "box.corp.example",
        "--port",
        "8000",
        "--max-num-seqs",
        "8",
        "--hf-token=hf_abc",
        "--tokenizer",
        "/home/ann/tok/",
        "--reasoning-parser",
        "qwen3",
        "--kv-cache-dtype",
        "fp8",
        "--enforce-eager",
    ]
    flags = shareable_flags(argv)
    text = " ".join(flags)
    assert "sk-123" not in text and "hf_abc" not in text and "box.corp" not in text and "/home" not in text
    assert flags[:2] == ["--api-key", "<redacted>"]
    assert "--max-num-seqs 8" in text and "--tokenizer tok" in text and "--reasoning-parser qwen3" in text
    assert "--kv-cache-dtype fp8" in text and "--port" not in text and text.endswith("--enforce-eager")


def _doc(**changes):
    doc = {
        "recipe": "r",
        "profile": "p",
        "vllm_version": "0.32.0",
        "host": {"cpu": "x"},
        "flags": ["--a", "1"],
        "protocol": {"num_prompts": 8},
        "model": "m",
        "results": [level_result(1, VLLM_JSON), level_result(4, VLLM_JSON)],
    }
    doc.update(changes)
    return doc


def test_compare_side_by_side():
    a = _doc()
    b = copy.deepcopy(a)
    b["vllm_version"] = "0.33.0"
    b["results"][0]["output_throughput"] = a["results"][0]["output_throughput"] * 1.25
    b["results"][0]["ttft_ms"]["p99"] = a["results"][0]["ttft_ms"]["p99"] * 2
    b["results"] = b["results"][:1] + [dict(level_result(16, VLLM_JSON))]
    diff = compare(a, b)
    assert diff["setup"] == {"vllm_version": {"a": "0.32.0", "b": "0.33.0"}}
    rows = {(r["concurrency"], r["metric"]): r for r in diff["rows"]}
    assert rows[(1, "output_throughput")]["change"] == pytest.approx(0.25) and rows[(1, "output_throughput")]["better"]
    assert rows[(1, "ttft_ms.p99")]["change"] == pytest.approx(1.0) and rows[(1, "ttft_ms.p99")]["better"] is False
    assert rows[(1, "request_throughput")]["change"] == 0 and rows[(1, "request_throughput")]["better"] is None
    assert diff["only_in_a"] == [4] and diff["only_in_b"] == [16]


def test_cli_compare_prints_both_and_bad_files_are_one_line(cli, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_doc()))
    faster = _doc(profile="rtx-5090")
    faster["results"][0]["output_throughput"] = _doc()["results"][0]["output_throughput"] * 1.25
    b.write_text(json.dumps(faster))
    result = cli("bench", "compare", str(a), str(b), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["setup"] == {"profile": {"a": "p", "b": "rtx-5090"}}
    table = cli("bench", "compare", str(a), str(b))
    assert table.exit_code == 0 and "output_throughput" in table.stdout and "rtx-5090" in table.stdout
    assert "+25.0%" in table.stdout and "[" not in table.stdout  # the change is styled, never printed as markup
    (tmp_path / "bad.json").write_text("{not json")
    for args in ((str(tmp_path / "nope.json"), str(b)), (str(tmp_path / "bad.json"), str(b))):
        result = cli("bench", "compare", *args)
        assert result.exit_code == 2 and "Traceback" not in result.output
    (tmp_path / "other.json").write_text(json.dumps({"results": "x"}))
    result = cli("bench", "compare", str(tmp_path / "other.json"), str(b))
    assert result.exit_code == 2 and "results" in result.stderr


def test_bad_concurrency_is_bad_input(cli):
    result = cli("bench", f"http://127.0.0.1:{free_port()}", "--concurrency", "1,zero")
    assert result.exit_code == 2 and "--concurrency" in result.stderr


def test_unknown_deployment_name_is_bad_input(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    result = cli("bench", "no-such-deployment-17")
    assert result.exit_code == 2 and "no deployment named" in result.stderr


def test_plot_without_matplotlib_fails_before_running(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    result = cli("bench", f"http://127.0.0.1:{free_port()}", "--plot", "x.png")
    assert result.exit_code == 2 and "servectl[plot]" in result.stderr


def test_plot_draws_a_png(tmp_path):
    from servectl.bench.plot import plot_results  # matplotlib: in the test extra; users add servectl[plot]

    out = tmp_path / "t.png"
    plot_results(_doc(), out)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and out.stat().st_size > 10_000


def test_host_facts_name_no_host():
    from servectl.bench.runner import host_facts
    from servectl.hardware.detect import detect

    facts = host_facts(detect())
    assert facts["cpu_cores"] >= 1 and facts["memory_gib"] > 0
    assert socket.gethostname() not in json.dumps(facts)


def test_unreachable_server_is_bad_input_and_writes_nothing(cli, tmp_path, vllm_python):
    out = tmp_path / "r.json"  # bench finds the vLLM environment (its `vllm bench serve`) before the server
    result = cli("bench", f"http://127.0.0.1:{free_port()}", "-o", str(out))
    assert result.exit_code == 2 and "cannot reach" in result.stderr and "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_deployment_name_brings_its_recipe_profile_and_flags(monkeypatch, tmp_path):
    from servectl.bench.runner import target_for
    from servectl.launch import state
    from servectl.launch.record import DeploymentRecord

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    argv = [
        "/opt/v/bin/vllm",
        "serve",
        "/srv/models/Qwen3.5-35B-A3B-NVFP4",
        "--served-model-name",
        "qwen",
        "--host",
        "0.0.0.0",
        "--port",
        "8123",
        "--max-num-seqs",
        "4",
        "--api-key",
        "sk-x",
    ]
    state.save(
        DeploymentRecord(
            name="prod",
            runtime="local",
            recipe="qwen3.5-35b-a3b-nvfp4",
            profile="rtx-5090",
            model="/srv/models/Qwen3.5-35B-A3B-NVFP4",
            served_model_name="qwen",
            host="0.0.0.0",
            port=8123,
            log_path=str(tmp_path / "log"),
            argv=argv,
            started_at=0.0,
        )
    )
    t = target_for("prod")
    assert t.url == "http://127.0.0.1:8123" and (t.recipe, t.profile, t.model) == ("qwen3.5-35b-a3b-nvfp4", "rtx-5090", "qwen")
    assert t.tokenizer == "/srv/models/Qwen3.5-35B-A3B-NVFP4" and t.argv == argv
    assert shareable_flags(t.argv) == ["--served-model-name", "qwen", "--max-num-seqs", "4", "--api-key", "<redacted>"]
