"""`servectl bench` against the real vLLM CPU server: the result file's figures are the ones
`vllm bench serve` printed for the same run (its output is kept beside the result file)."""

import json
import re
import socket

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

# printed label (vllm/benchmarks/serve.py, "{:<40} {:<10.2f}") -> where the figure is in a results entry
PRINTED = {
    "Request throughput (req/s):": ("request_throughput",),
    "Output token throughput (tok/s):": ("output_throughput",),
    "P50 TTFT (ms):": ("ttft_ms", "p50"),
    "P99 TTFT (ms):": ("ttft_ms", "p99"),
    "P50 TPOT (ms):": ("tpot_ms", "p50"),
    "P99 TPOT (ms):": ("tpot_ms", "p99"),
    "Failed requests:": ("errors",),
}


def printed_blocks(log: str) -> list[dict[str, str]]:
    """Each level's printed figures, in run order."""
    blocks = []
    for chunk in log.split("servectl-bench: vllm bench serve ")[1:]:
        figures = {}
        for label in PRINTED:
            m = re.search(re.escape(label) + r"\s+(\S+)", chunk)
            assert m, f"{label} not printed"
            figures[label] = m.group(1)
        blocks.append(figures)
    return blocks


def test_bench_figures_are_vllms_own(tiny_server, cli, tmp_path):
    out = tmp_path / "result.json"
    result = cli(
        "bench",
        tiny_server.url,
        "--concurrency",
        "1,2",
        "--num-prompts",
        "8",
        "--input-len",
        "64",
        "--output-len",
        "16",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert {"recipe", "profile", "vllm_version", "flags", "host", "results"} <= set(doc)
    assert doc["vllm_version"] == "0.32.0" and doc["model"] == "tiny-cpu"
    assert doc["host"]["server_on_this_host"] is True and doc["host"]["cpu_cores"] >= 1
    assert "--max-model-len" in doc["flags"] and "--port" not in doc["flags"]
    text = out.read_text()
    assert socket.gethostname() not in text and tiny_server.model_dir not in text  # no hostname, no paths
    assert [r["concurrency"] for r in doc["results"]] == [1, 2]
    blocks = printed_blocks(out.with_suffix(".vllm-bench.log").read_text())
    assert len(blocks) == 2
    for entry, printed in zip(doc["results"], blocks):
        assert entry["completed"] == 8 and entry["errors"] == 0
        for label, path in PRINTED.items():
            value = entry
            for key in path:
                value = value[key]
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            assert shown == printed[label], (entry["concurrency"], label, value, printed[label])
