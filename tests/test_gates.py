"""The pure parts of `check --level full|soak`: /metrics reading, the fix flags, tool-call
reassembly, durations and the memory bound. The live behaviour is in test_check_levels_live.py."""

import json
from pathlib import Path

import pytest

from servectl.errors import UserError
from servectl.verify.gates import fixes_for, reassemble_tool_calls
from servectl.verify.server_facts import ServerFacts, read_metrics, vllm_flags
from servectl.verify.soak import GROWTH_FLOOR_MIB, growth_problem, parse_duration

DATA = Path(__file__).parent / "data"


def test_metrics_of_vllm_0_32_are_read():
    # captured from `vllm serve` 0.32.0 (CPU build), tiny model, 64M KV cache, max-model-len 2048
    m = read_metrics((DATA / "vllm-0.32.0-cpu-metrics.txt").read_text())
    assert m["preemptions"] == 0.0 and m["running"] == 0.0 and m["kv_usage"] == 0.0
    cc = m["cache_config"]
    assert cc["kv_cache_size_tokens"] == "149796" and cc["block_size"] == "256" and cc["num_gpu_blocks"] == "1024"
    assert float(cc["kv_cache_max_concurrency"]) == pytest.approx(73.14, abs=0.01)  # the start-up log's "73.14x"


def test_preemptions_are_summed_over_engines_and_both_spellings():
    text = (
        "# TYPE vllm:num_preemptions_total counter\n"
        'vllm:num_preemptions_total{engine="0",model_name="m"} 3.0\n'
        'vllm:num_preemptions_total{engine="1",model_name="m"} 2.0\n'
    )
    assert read_metrics(text)["preemptions"] == 5.0


# the under-sized server of the live test, as vLLM 0.32.0 reported it: "CPU KV cache size: 9,362
# tokens, Maximum concurrency for 2,048 tokens per request: 4.57x" with --kv-cache-memory-bytes 4M
UNDERSIZED = ServerFacts(
    url="http://127.0.0.1:8000",
    model="tiny-cpu",
    max_model_len=2048,
    kv_cache_tokens=9362,
    max_concurrency=4.571428571428571,
    block_size=256,
    num_blocks=64,
    kv_cache_memory_bytes=4 * 2**20,
    gpu_memory_utilization=0.92,
    max_num_seqs=8,
)


def test_fixes_are_the_three_ways_out():
    fixes = fixes_for(UNDERSIZED, 8)
    assert fixes[0] == "--max-num-seqs 4"
    assert fixes[1] == "--max-model-len 1024"  # 2048 * 4.57 / 8 = 1170, down to whole 256-token blocks
    # 4M * 8 / 4.57 * 1.05 = 7.35M -> 8M; the same server started with 8M reported 9.14x and passed
    assert fixes[2] == "--kv-cache-memory-bytes 8M"


def test_gpu_server_without_a_kv_byte_flag_is_told_how_much_more():
    facts = ServerFacts(
        url="u", model="m", max_model_len=262144, max_concurrency=2.5, block_size=16, gpu_memory_utilization=0.9, max_num_seqs=8
    )
    fixes = fixes_for(facts, 8)
    assert fixes[0] == "--max-num-seqs 2" and fixes[1] == "--max-model-len 81920"
    assert "3.2x the KV cache" in fixes[2] and "--gpu-memory-utilization from 0.9" in fixes[2]


def test_a_preempting_server_whose_figure_fits_is_asked_for_less_than_was_tried():
    facts = ServerFacts(url="u", model="m", max_model_len=2048, max_concurrency=9.1, block_size=256, max_num_seqs=8)
    assert fixes_for(facts, 8, preempted=True)[0] == "--max-num-seqs 7"


def test_vllm_flags_from_either_command_line():
    serve = ["/venv/bin/python", "/venv/bin/vllm", "serve", "/models/x", "--max-num-seqs", "8", "--enforce-eager"]
    assert vllm_flags(serve) == {"--max-num-seqs": "8", "--enforce-eager": None}
    module = ["python", "-B", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--max_num_seqs=16", "-tp", "2"]
    flags = vllm_flags(module)
    assert flags["--max-num-seqs"] == "16" and flags["--tensor-parallel-size"] == "2"


def test_tool_call_deltas_of_vllm_hermes_stream_are_reassembled():
    # captured: vLLM 0.32.0 --tool-call-parser hermes, scripted tiny model, one chunk with two deltas
    deltas = [
        {"index": 0, "id": "chatcmpl-tool-a3dc19775e9cb9df", "function": {"name": "get_weather"}, "type": "function"},
        {"index": 0, "function": {"arguments": '{"city": "Paris"}'}},
    ]
    [call] = reassemble_tool_calls(deltas)
    assert call["name"] == "get_weather" and call["id"] == "chatcmpl-tool-a3dc19775e9cb9df"
    assert json.loads(call["arguments"]) == {"city": "Paris"}


def test_arguments_split_over_many_deltas_and_two_calls():
    # the OpenAI streaming contract: arguments arrive in pieces, calls told apart by index
    deltas = [
        {"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"ci'}},
        {"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}},
        {"index": 0, "function": {"arguments": 'ty": "Oslo"}'}},
    ]
    calls = reassemble_tool_calls(deltas)
    assert [c["name"] for c in calls] == ["f", "g"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("1.5h", 5400), ("90", 90), ("500ms", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "0s", "-5m"])
def test_bad_durations_are_one_line(text):
    with pytest.raises(UserError) as err:
        parse_duration(text)
    assert "30s, 10m or 1h" in err.value.one_line()


def test_memory_bound():
    mib = 2**20
    assert growth_problem(2000 * mib, 2100 * mib, "server RSS") is None  # within 10 %
    assert growth_problem(1000 * mib, 1000 * mib + (GROWTH_FLOOR_MIB - 1) * mib, "server RSS") is None  # floor
    problem = growth_problem(2000 * mib, 2300 * mib, "server RSS")
    assert problem and "+300 MiB over the second half" in problem
    assert growth_problem(None, 2300 * mib, "server RSS") is None  # not measured: no verdict
