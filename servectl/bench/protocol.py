"""The fixed benchmark protocol and the shareable result file: pure functions, no I/O.

Protocol (every level the same): vLLM's random dataset (no download), the same seed, the same
prompts (`--num-prompts`, `--input-len`, `--output-len`, EOS ignored so every reply has the asked
length), greedy sampling, the completions endpoint (token counts exact, no chat template), a
warm-up of as many requests as the level's concurrency, then the level's run with
`--max-concurrency` and unbounded request rate. Percentiles 50 and 99 of TTFT, TPOT, ITL and E2EL.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONCURRENCY = (1, 4, 16)
DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 256
SEED = 0
FORMAT_VERSION = 1


class Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: list[int] = Field(description="Concurrency levels, one run each (--max-concurrency).")
    num_prompts: int = Field(description="Requests per level (--num-prompts).")
    input_len: int = Field(description="Prompt tokens per request (--random-input-len).")
    output_len: int = Field(description="Generated tokens per request, EOS ignored (--random-output-len).")
    seed: int = Field(SEED, description="Dataset seed, the same for every level (--seed).")
    dataset: str = Field("random", description="vLLM's dataset (--dataset-name).")
    backend: str = Field("openai", description="vLLM's request backend (--backend), the completions endpoint.")
    endpoint: str = Field("/v1/completions", description="Endpoint benchmarked (--endpoint).")
    temperature: float = Field(0.0, description="Sampling temperature (--temperature).")
    warmups: str = Field("concurrency", description="Warm-up requests before each level: as many as its concurrency.")


def default_num_prompts(levels: list[int]) -> int:
    """Enough requests that the highest level runs several waves."""
    return max(32, 4 * max(levels))


def parse_levels(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; ValueError with what is wrong."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--concurrency {text!r} must be positive integers separated by commas, e.g. 1,4,16")
    return sorted(set(int(p) for p in parts))


def bench_argv(p: Protocol, level: int, base_url: str, model: str, tokenizer: str, result_dir: str) -> list[str]:
    """The `vllm bench serve` arguments of one level."""
    return [
        "--backend",
        p.backend,
        "--endpoint",
        p.endpoint,
        "--base-url",
        base_url,
        "--model",
        model,
        "--tokenizer",
        tokenizer,
        "--dataset-name",
        p.dataset,
        "--random-input-len",
        str(p.input_len),
        "--random-output-len",
        str(p.output_len),
        "--num-prompts",
        str(p.num_prompts),
        "--seed",
        str(p.seed),
        "--temperature",
        str(p.temperature),
        "--ignore-eos",
        "--max-concurrency",
        str(level),
        "--num-warmups",
        str(level),
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--disable-tqdm",
        "--save-result",
        "--result-dir",
        result_dir,
        "--result-filename",
        f"c{level}.json",
    ]


def level_result(level: int, vllm_json: dict[str, Any]) -> dict[str, Any]:
    """One `results` entry from vLLM's own result JSON (keys of vllm/benchmarks/serve.py); figures unchanged.
    A server that speculates (MTP, a draft model) adds vLLM's acceptance figures, read from its /metrics
    before and after the level (serve.py fetch_spec_decode_metrics)."""
    entry = {
        "concurrency": level,
        "request_throughput": vllm_json["request_throughput"],
        "output_throughput": vllm_json["output_throughput"],
        "total_token_throughput": vllm_json.get("total_token_throughput"),
        "ttft_ms": {"p50": vllm_json.get("p50_ttft_ms", vllm_json.get("median_ttft_ms")), "p99": vllm_json.get("p99_ttft_ms")},
        "tpot_ms": {"p50": vllm_json.get("p50_tpot_ms", vllm_json.get("median_tpot_ms")), "p99": vllm_json.get("p99_tpot_ms")},
        "itl_ms": {"p50": vllm_json.get("p50_itl_ms"), "p99": vllm_json.get("p99_itl_ms")},
        "e2el_ms": {"p50": vllm_json.get("p50_e2el_ms"), "p99": vllm_json.get("p99_e2el_ms")},
        "completed": vllm_json.get("completed"),
        "errors": vllm_json.get("failed", 0),
        "duration_s": vllm_json.get("duration"),
        "total_input_tokens": vllm_json.get("total_input_tokens"),
        "total_output_tokens": vllm_json.get("total_output_tokens"),
    }
    if "spec_decode_acceptance_rate" in vllm_json:
        entry["spec_decode"] = {
            key: vllm_json.get(f"spec_decode_{key}")
            for key in ("acceptance_rate", "acceptance_length", "num_drafts", "draft_tokens", "accepted_tokens")
        }
    return entry


# --------------------------------------------------------------------------- what is shared: no secrets, no hostnames, no paths

_SECRET = re.compile(r"(key|token|secret|passw(or)?d|auth)(?![a-z])", re.IGNORECASE)  # not --tokenizer, --max-num-batched-tokens
_DROP = {"--host", "--port", "--ssl-keyfile", "--ssl-certfile", "--ssl-ca-certs", "--root-path", "--log-config-file"}
_PATHS = {"--model", "--tokenizer", "--download-dir", "--chat-template", "--served-model-name"}


def shareable_flags(tokens: list[str]) -> list[str]:
    """vLLM flags fit to publish: secret values redacted, address/port/certificates dropped, paths
    cut to their last part (a path names the user's directories)."""
    from servectl.vllmenv.args import Flag, parse_args, to_tokens

    start = next((i for i, t in enumerate(tokens) if t.startswith("--")), len(tokens))
    try:
        flags = parse_args(tokens[start:])
    except ValueError:
        return []
    out: list[Flag] = []
    for f in flags:
        name = f.name.split("=")[0]
        if name in _DROP:
            continue
        value = f.value
        if value is not None and _SECRET.search(name):
            value = "<redacted>"
        elif value is not None and (name in _PATHS or value.startswith(("/", "~", "./"))):
            value = value.rstrip("/").rsplit("/", 1)[-1]
        out.append(Flag(name, value))
    return to_tokens(out)


# --------------------------------------------------------------------------- compare


COMPARED = (
    ("request_throughput", "req/s", 1),
    ("output_throughput", "tok/s", 1),
    ("ttft_ms.p50", "ms", -1),
    ("ttft_ms.p99", "ms", -1),
    ("tpot_ms.p50", "ms", -1),
    ("tpot_ms.p99", "ms", -1),
    ("errors", "", -1),
)


def _get(entry: dict, dotted: str) -> Any:
    value: Any = entry
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def compare(a: dict, b: dict) -> dict[str, Any]:
    """Side-by-side differences: setup fields that differ, and per common concurrency each figure
    of A and B with B's change relative to A (better: +1 when higher is better, -1 when lower)."""
    setup = {}
    for key in ("recipe", "profile", "vllm_version", "host", "flags", "protocol", "model"):
        if a.get(key) != b.get(key):
            setup[key] = {"a": a.get(key), "b": b.get(key)}
    by_a = {r["concurrency"]: r for r in a.get("results", [])}
    by_b = {r["concurrency"]: r for r in b.get("results", [])}
    rows = []
    for level in sorted(set(by_a) & set(by_b)):
        for key, unit, better in COMPARED:
            va, vb = _get(by_a[level], key), _get(by_b[level], key)
            change = (vb - va) / va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else None
            rows.append(
                {
                    "concurrency": level,
                    "metric": key,
                    "unit": unit,
                    "a": va,
                    "b": vb,
                    "change": round(change, 4) if change is not None else None,
                    "better": None if change is None or change == 0 else (change > 0) == (better > 0),
                }
            )
    return {"setup": setup, "rows": rows, "only_in_a": sorted(set(by_a) - set(by_b)), "only_in_b": sorted(set(by_b) - set(by_a))}
