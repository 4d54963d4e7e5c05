"""Whether one benchmark round's figures can be believed, judged from the round's own data. Pure.

A serving benchmark measures from the client's side: it timestamps each streamed event as the client
reads it. On a loaded host the client (or vLLM's API server) can be descheduled for a second or more;
the server's events then wait in the socket, and the client reads a whole answer in one go. Every
figure that splits a request's time is then wrong: the first token seems to arrive at the end (TTFT
stretched to the whole request) and the rest a few microseconds apart (TPOT of 0.01 ms for a server
that needs 8 ms per token), while throughput drops with the stalled client. Such a round is not a
slow measurement of the server, it is no measurement of it; a benchmark that repeats rounds reports
it as broken and leaves it out of its medians (benchmarks/proxy_vllm_bench.py, speculative_speedup.py).

The rules, each from the round itself:
- every request completed, none failed;
- with EOS ignored, every reply has the asked length (total output tokens = completed x asked);
- the figures agree with each other: throughput x duration = what was counted;
- at most `concurrency` requests were in flight (Little's law: mean latency x request rate);
- tokens arrived as a stream, not in one burst. A burst shows three ways at once: decoding took under 1 %
  of a request's time; the median TPOT is under a quarter of the whole server's time per token at its
  busiest second (vLLM's `max_output_tokens_per_s`, else the round's output throughput); and a decoded
  token seems 50 times cheaper than a prompt token was to prefill (TTFT per prompt token), when decoding
  a token costs a forward pass of its own. Each sign alone can be legitimate (a huge prompt dwarfs a
  short answer; the busiest second of a sparse run is not full; a tiny prompt's TTFT is mostly fixed
  overhead); all three together mean the client read finished answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SLACK = 4.0  # how far below the server's busiest per-token time a median TPOT may fall before it is suspect
MIN_DECODE_SHARE = 0.01  # decode phase / whole request below which the tokens came in one burst
PREFILL_SLACK = 50.0  # how much cheaper than a prefilled prompt token a decoded token may seem
MIN_TOKENS_FOR_TPOT = 16  # shorter answers give TPOT too few steps to judge
TOLERANCE = 0.02  # relative slack of the consistency checks (rounding of the printed figures)


@dataclass(frozen=True)
class Round:
    """One benchmark run's figures, whatever tool wrote them."""

    num_prompts: int
    completed: int
    failed: int
    duration_s: float
    request_throughput: float  # requests / s
    output_throughput: float  # output tokens / s
    total_output_tokens: int
    asked_output_len: int | None = None  # tokens each reply must have (EOS ignored); None: not fixed
    concurrency: int | None = None  # --max-concurrency
    total_input_tokens: int | None = None
    ttft_p50_ms: float | None = None
    tpot_p50_ms: float | None = None
    mean_e2el_ms: float | None = None
    peak_output_tokens_per_s: float | None = None  # vLLM's busiest one-second window
    output_lens: tuple[int, ...] | None = None  # per request, when the detailed result was saved


def from_vllm_result(result: dict[str, Any], *, asked_output_len: int | None, concurrency: int | None = None) -> Round:
    """A round from `vllm bench serve --save-result` JSON (keys of vllm/benchmarks/serve.py)."""
    mean_e2el = result.get("mean_e2el_ms")
    if (
        mean_e2el is None
        and result.get("mean_ttft_ms") is not None
        and result.get("mean_tpot_ms") is not None
        and result.get("completed")
    ):
        # every request has the same length when EOS is ignored: latency = TTFT + (n - 1) x TPOT
        per_request = result["total_output_tokens"] / result["completed"]
        mean_e2el = result["mean_ttft_ms"] + max(per_request - 1, 0) * result["mean_tpot_ms"]
    lens = result.get("output_lens")
    return Round(
        num_prompts=int(result.get("num_prompts") or result["completed"] + result.get("failed", 0)),
        completed=int(result["completed"]),
        failed=int(result.get("failed") or 0),
        duration_s=float(result["duration"]),
        request_throughput=float(result["request_throughput"]),
        output_throughput=float(result["output_throughput"]),
        total_output_tokens=int(result["total_output_tokens"]),
        asked_output_len=asked_output_len,
        concurrency=concurrency or result.get("max_concurrency"),
        total_input_tokens=result.get("total_input_tokens"),
        ttft_p50_ms=result.get("median_ttft_ms", result.get("p50_ttft_ms")),
        tpot_p50_ms=result.get("median_tpot_ms", result.get("p50_tpot_ms")),
        mean_e2el_ms=mean_e2el,
        peak_output_tokens_per_s=result.get("max_output_tokens_per_s"),
        output_lens=tuple(int(n) for n in lens) if isinstance(lens, list) else None,
    )


def from_bench_level(entry: dict[str, Any], protocol: dict[str, Any]) -> Round:
    """A round from one `results` entry of a `servectl bench` result file and its `protocol`."""
    completed = int(entry.get("completed") or 0)
    return Round(
        num_prompts=int(protocol["num_prompts"]),
        completed=completed,
        failed=int(entry.get("errors") or 0),
        duration_s=float(entry["duration_s"]),
        request_throughput=float(entry["request_throughput"]),
        output_throughput=float(entry["output_throughput"]),
        total_output_tokens=int(entry.get("total_output_tokens") or 0),
        asked_output_len=int(protocol["output_len"]),
        concurrency=int(entry["concurrency"]),
        total_input_tokens=entry.get("total_input_tokens"),
        ttft_p50_ms=(entry.get("ttft_ms") or {}).get("p50"),
        tpot_p50_ms=(entry.get("tpot_ms") or {}).get("p50"),
        mean_e2el_ms=None,
    )


def _off(value: float, expected: float) -> bool:
    return abs(value - expected) > TOLERANCE * max(abs(expected), 1e-9)


def problems(r: Round) -> list[str]:
    """Why the round's figures cannot be believed, one reason a line; empty when they can."""
    out: list[str] = []
    if r.completed != r.num_prompts or r.failed:
        out.append(f"{r.completed} of {r.num_prompts} requests completed, {r.failed} failed")
    if r.completed == 0 or r.duration_s <= 0:
        return out or ["no request completed"]
    if r.asked_output_len is not None:
        expected = r.completed * r.asked_output_len
        if r.total_output_tokens != expected:
            out.append(f"{r.total_output_tokens} output tokens, asked {r.asked_output_len} x {r.completed} = {expected}")
        elif r.output_lens and any(n != r.asked_output_len for n in r.output_lens):
            wrong = sum(1 for n in r.output_lens if n != r.asked_output_len)
            out.append(f"{wrong} replies do not have the asked {r.asked_output_len} tokens")
    if _off(r.request_throughput * r.duration_s, r.completed):
        out.append(f"request throughput x duration = {r.request_throughput * r.duration_s:.1f}, not the {r.completed} completed")
    if _off(r.output_throughput * r.duration_s, r.total_output_tokens):
        out.append(
            f"output throughput x duration = {r.output_throughput * r.duration_s:.0f} tokens, "
            f"not the {r.total_output_tokens} counted"
        )
    if r.concurrency and r.mean_e2el_ms is not None:
        in_flight = r.mean_e2el_ms / 1000 * r.request_throughput
        if in_flight > r.concurrency * (1 + 5 * TOLERANCE):
            out.append(
                f"{in_flight:.1f} requests in flight on average (mean latency x request rate), "
                f"more than the concurrency {r.concurrency}"
            )
    burst = stream_burst(r)
    if burst:
        out.append(burst)
    return out


def stream_burst(r: Round) -> str | None:
    """The reason the round's tokens came in one burst rather than streamed, or None."""
    per_request = r.total_output_tokens / r.completed if r.completed else 0
    if r.tpot_p50_ms is None or r.ttft_p50_ms is None or per_request < MIN_TOKENS_FOR_TPOT:
        return None
    decode_ms = (per_request - 1) * r.tpot_p50_ms
    share = decode_ms / (decode_ms + r.ttft_p50_ms) if decode_ms + r.ttft_p50_ms > 0 else 0.0
    if share >= MIN_DECODE_SHARE:
        return None
    peak = r.peak_output_tokens_per_s or r.output_throughput
    server_ms_per_token = 1000 / peak if peak > 0 else 0.0  # the whole server's time per token at its busiest
    if r.tpot_p50_ms >= server_ms_per_token / SLACK:
        return None
    if r.total_input_tokens:
        prefill_ms_per_token = r.ttft_p50_ms / (r.total_input_tokens / r.completed)
        if r.tpot_p50_ms >= prefill_ms_per_token / PREFILL_SLACK:
            return None
    return (
        f"median TPOT {r.tpot_p50_ms:.3f} ms is below what the whole server needed per token at its busiest "
        f"({server_ms_per_token:.2f} ms) and decoding took {share:.2%} of a request's {decode_ms + r.ttft_p50_ms:.0f} ms: "
        "the client read whole answers at once (a stalled client or API server), so TTFT and TPOT are not the server's"
    )


def keep_plausible(rounds: list[Round]) -> tuple[list[int], dict[int, list[str]]]:
    """Indices of the rounds to average, and the reasons of those left out."""
    broken = {i: p for i, r in enumerate(rounds) if (p := problems(r))}
    return [i for i in range(len(rounds)) if i not in broken], broken
