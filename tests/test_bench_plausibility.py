"""Benchmark rounds are judged from their own figures (servectl.bench.plausibility), on results captured from
real `vllm bench serve` runs against the vLLM CPU server: a healthy round passes; a round whose client was
stalled while the server answered (its whole answers read at once) is broken; and the benchmarks that
repeat rounds leave broken rounds out of their medians."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from servectl.bench.plausibility import Round, from_bench_level, from_vllm_result, keep_plausible, problems, stream_burst
from servectl.bench.protocol import level_result

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))


def captured(name: str) -> dict:
    return json.loads((DATA / name).read_text())


HEALTHY = captured("bench/vllm-0.32.0-cpu-openai-chat-healthy.json")  # 80 prompts of 64 tokens, concurrency 8
STALLED = captured("bench/vllm-0.32.0-cpu-openai-chat-stalled-client.json")  # the same, the client stopped 3 s of every 3.05 s
SMALL = captured("vllm-0.32.0-cpu-bench-serve-c4.json")  # 8 prompts of 32 tokens, concurrency 4 (servectl bench's test data)


def test_healthy_captured_rounds_pass():
    assert problems(from_vllm_result(HEALTHY, asked_output_len=64, concurrency=8)) == []
    assert problems(from_vllm_result(SMALL, asked_output_len=32, concurrency=4)) == []


def test_a_round_read_in_bursts_is_broken():
    """The captured round's TPOT is far below the server's own per-token time and its answers arrived at once."""
    r = from_vllm_result(STALLED, asked_output_len=64, concurrency=8)
    found = problems(r)
    assert len(found) == 1 and "read whole answers at once" in found[0], found
    assert r.tpot_p50_ms < 0.1 < from_vllm_result(HEALTHY, asked_output_len=64).tpot_p50_ms  # what a reader would see


def test_every_rule_fires_on_its_own():
    good = from_vllm_result(HEALTHY, asked_output_len=64, concurrency=8)
    cases = {
        "requests completed": dataclasses.replace(
            good, completed=79, failed=1, total_output_tokens=79 * 64, request_throughput=79 / good.duration_s
        ),
        "asked 64": dataclasses.replace(
            good,
            total_output_tokens=good.total_output_tokens - 5,
            output_throughput=(good.total_output_tokens - 5) / good.duration_s,
        ),
        "replies do not have": dataclasses.replace(good, output_lens=(63, *good.output_lens[1:])),
        "request throughput x duration": dataclasses.replace(good, request_throughput=good.request_throughput * 2),
        "output throughput x duration": dataclasses.replace(good, output_throughput=good.output_throughput / 2),
        "in flight": dataclasses.replace(good, mean_e2el_ms=good.mean_e2el_ms * 2),
    }
    for words, r in cases.items():
        found = problems(r)
        assert any(words in p for p in found), (words, found)
    assert problems(dataclasses.replace(good, mean_e2el_ms=good.mean_e2el_ms * 1.05)) == []  # within the slack


def test_legitimate_extremes_are_not_mistaken_for_bursts():
    """One request at a time: the busiest second holds few tokens, so TPOT is below that second's per-token time,
    but decoding is a real share of each request. A 100k-token prompt before a 16-token answer: decoding is under
    1 % of the request and under the busiest second's per-token time, but a decoded token is not cheaper than a
    prefilled prompt token was. A round is a burst only when all three signs agree."""
    sparse = Round(
        num_prompts=32,
        completed=32,
        failed=0,
        duration_s=70.4,
        request_throughput=32 / 70.4,
        output_throughput=64 * 32 / 70.4,
        total_output_tokens=64 * 32,
        asked_output_len=64,
        concurrency=1,
        total_input_tokens=32 * 1024,
        ttft_p50_ms=2000,
        tpot_p50_ms=3,
        mean_e2el_ms=2189,
        peak_output_tokens_per_s=64,
    )
    assert problems(sparse) == []
    long_prompt = Round(
        num_prompts=8,
        completed=8,
        failed=0,
        duration_s=8 * 30.225,
        request_throughput=1 / 30.225,
        output_throughput=16 / 30.225,
        total_output_tokens=8 * 16,
        asked_output_len=16,
        concurrency=1,
        total_input_tokens=8 * 100_000,
        ttft_p50_ms=30_000,
        tpot_p50_ms=15,
        mean_e2el_ms=30_225,
        peak_output_tokens_per_s=16,
    )
    assert problems(long_prompt) == []
    # the same long-prompt round with its answers read at once is a burst
    burst = dataclasses.replace(long_prompt, total_input_tokens=8 * 64, tpot_p50_ms=0.005)
    assert stream_burst(burst)


def test_servectl_bench_levels_are_judged_the_same():
    doc_protocol = {"num_prompts": 8, "output_len": 32}
    assert problems(from_bench_level(level_result(4, SMALL), doc_protocol)) == []
    assert problems(from_bench_level(level_result(8, STALLED), {"num_prompts": 80, "output_len": 64}))


def test_keep_plausible():
    rounds = [from_vllm_result(x, asked_output_len=64, concurrency=8) for x in (HEALTHY, STALLED, HEALTHY)]
    used, broken = keep_plausible(rounds)
    assert used == [0, 2] and list(broken) == [1]


def test_proxy_benchmark_medians_leave_broken_rounds_out():
    """benchmarks/proxy_vllm_bench.py: the medians come from plausible rounds only, and a path without one has
    no figure at all (not the broken round's)."""
    import proxy_vllm_bench as pvb

    def run(tpot, req_s, broken=()):
        return {
            "tpot_ms": tpot,
            "itl_ms": 1.0,
            "ttft_ms": 100.0,
            "req_s": req_s,
            "tok_s": req_s * 64,
            "cpu_us_per_chunk": 20.0,
            "cpu_ms_per_request": 1.0,
            "broken": list(broken),
        }

    runs = {
        "direct": [run(7.7, 14.5), run(0.01, 5.0, ["burst"]), run(0.01, 5.1, ["burst"])],
        "proxy": [run(8.0, 14.0), run(8.2, 13.8), run(7.9, 14.1)],
        "relay": [run(0.01, 5.0, ["burst"])] * 3,
    }
    summary = pvb.summarize(runs)
    assert summary["median"]["direct"]["tpot_ms"] == 7.7 and summary["median"]["direct"]["req_s"] == 14.5
    assert summary["rounds_used"] == {"direct": 1, "proxy": 3, "relay": 0}
    assert summary["median"]["relay"] is None and summary["relay"]["tpot_pct_over_direct"] is None
    assert round(summary["proxy"]["tpot_pct_over_direct"], 1) == round((8.0 / 7.7 - 1) * 100, 1)
