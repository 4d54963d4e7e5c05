"""`servectl bench --plot`: throughput and latency against concurrency, one PNG or SVG in servectl's plot
style (servectl.observe.plot_style, shared with `plan --plot`; matplotlib, an optional extra:
`pip install 'servectl[plot]'`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servectl.observe.plot_style import LINE_COLORS, plot_format, require_matplotlib, save

__all__ = ["plot_format", "plot_results", "require_matplotlib"]


def plot_results(doc: dict[str, Any], path: Path) -> None:
    """Two panels: output and request throughput; TTFT and TPOT p50/p99 (log scale), per concurrency."""
    plt = require_matplotlib()
    rows = sorted(doc["results"], key=lambda r: r["concurrency"])
    levels = [r["concurrency"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(levels, [r["output_throughput"] for r in rows], "o-", color=LINE_COLORS[0], label="output tok/s")
    left.set_xlabel("concurrency")
    left.set_ylabel("output tokens/s")
    twin = left.twinx()
    twin.plot(levels, [r["request_throughput"] for r in rows], "s--", color=LINE_COLORS[1], label="requests/s")
    twin.set_ylabel("requests/s")
    left.set_title("throughput")
    left.legend(left.get_lines() + twin.get_lines(), ["output tok/s", "requests/s"], fontsize="small", loc="upper left")
    for key, marker in (("ttft_ms", "o"), ("tpot_ms", "s")):
        for pct, line in (("p50", "-"), ("p99", ":")):
            right.plot(levels, [r[key][pct] for r in rows], marker + line, label=f"{key[:4].upper()} {pct}")
    right.set_yscale("log")
    right.set_xlabel("concurrency")
    right.set_ylabel("ms")
    right.set_title("latency")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.grid(True)
    title = " / ".join(
        str(x) for x in (doc.get("recipe") or doc.get("model"), doc.get("profile"), f"vLLM {doc.get('vllm_version')}") if x
    )
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path, dpi=100)
