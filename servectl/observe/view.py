"""The people's view of `servectl top`: rows (servectl.observe.top.row) -> one rich table. Every string that
comes from outside (names, URLs, model names, errors) goes through servectl.console.plain, and rich markup
is never parsed."""

from __future__ import annotations

from typing import Any, Literal

from servectl.console import plain

SPARK = " ▁▂▃▄▅▆▇█"
STATE_STYLE = {"up": "green", "restarted": "yellow", "down": "red"}


def _num(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _ms(p: dict | None, key: str) -> str:
    if p is None:
        return "n/a"
    v = p.get(key)
    return "-" if v is None else f"{v * 1000:.0f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in values)


def table(rows: list[dict[str, Any]], history: dict[str, list[float]], interval_s: float, window_s: float):
    from rich.table import Table
    from rich.text import Text

    columns: tuple[tuple[str, Literal["left", "right"]], ...]
    t = Table(
        title=f"servectl top  (every {interval_s:g} s; latency over the last {window_s:g} s; q or Ctrl-C quits)",
        title_justify="left",
    )
    columns = (
        ("server", "left"),
        ("state", "left"),
        ("run", "right"),
        ("wait", "right"),
        ("prompt tok/s", "right"),
        ("gen tok/s", "right"),
        ("TTFT p50/p99 ms", "right"),
        ("ITL p50/p99 ms", "right"),
        ("KV", "right"),
        ("preempt", "right"),
        ("prefix hit", "right"),
        ("spec accept", "right"),
        ("memory", "right"),
        ("gen tok/s trend", "left"),
    )
    for col, just in columns:
        t.add_column(col, justify=just, overflow="fold")
    for r in rows:
        state = Text(r["state"], style=STATE_STYLE.get(r["state"], ""))
        if r["state"] == "down":
            t.add_row(
                Text(plain(r["name"])),
                state,
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                Text(plain(f"{r['error']} (retrying)"), style="red"),
            )
            continue
        name = plain(r["name"]) + (f"\n{plain(r['model'])}" if r.get("model") else "")
        spec = (
            "off"
            if r["spec_acceptance_rate"] is None and "spec_draft_tokens" not in r["metric_names"]
            else _pct(r["spec_acceptance_rate"])
        )
        preempt = "-" if r["preemptions_total"] is None else f"{r['preemptions_total']:.0f} (+{r['preemptions_window'] or 0:.0f})"
        t.add_row(
            Text(name),
            state,
            _num(r["requests_running"]),
            _num(r["requests_waiting"]),
            _num(r["prompt_tokens_per_s"], "{:.1f}"),
            _num(r["generation_tokens_per_s"], "{:.1f}"),
            f"{_ms(r['ttft_s'], 'p50')} / {_ms(r['ttft_s'], 'p99')}",
            f"{_ms(r['itl_s'], 'p50')} / {_ms(r['itl_s'], 'p99')}",
            _pct(r["kv_cache_usage"]),
            preempt,
            _pct(r["prefix_cache_hit_rate"]),
            spec,
            _bytes(r["memory_bytes"]),
            sparkline(history.get(r["name"], [])),
        )
    return t
