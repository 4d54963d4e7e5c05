"""`servectl top`: watch one or more vLLM servers through /metrics.

Each round scrapes every target (bounded: servectl.observe.fetch), keeps the scrapes of the last
`window_s` seconds (servectl.observe.window) and turns them into one row per server: the `--json` contract
below, and the rich table people see. A server that stops answering stays listed as `down` with the
reason and is scraped again every round; one that comes back with its counters reset (or a new process start time) is `restarted` for
10 s, its window starting afresh.

Row keys (`top --once --json`, per server): name, url, state (up | restarted | down), error, model,
requests_running, requests_waiting, prompt_tokens_per_s, generation_tokens_per_s (between the last two
scrapes), prompt_tokens_total, generation_tokens_total, ttft_s and itl_s ({p50, p90, p99, count} over the
window; null when the server lacks the histogram), kv_cache_usage (0-1), preemptions_total,
preemptions_window, prefix_cache_hit_rate (window) and prefix_cache_hit_rate_total (0-1, null without
lookups), spec_acceptance_rate and spec_acceptance_length (window; null when the server does not
speculate or drafted nothing), memory_bytes and memory_source (process tree RSS | container | null),
restarts, window_s (seconds the figures span), metric_names (concept -> the name the server uses).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from servectl.observe import exposition
from servectl.observe.fetch import FetchError, MetricsReader
from servectl.observe.targets import Target, memory
from servectl.observe.window import Window

UP, RESTARTED, DOWN = "up", "restarted", "down"
RESTART_SHOWN_S = 10.0  # a restart stays in the state column this long


@dataclass
class Watched:
    target: Target
    window: Window
    state: str = DOWN
    error: str | None = "not scraped yet"
    memory_bytes: int | None = None
    memory_source: str | None = None
    last_ok: float | None = None
    restarted_at: float | None = None
    history: list[float] = field(default_factory=list)  # generation tok/s, for the sparkline


class Monitor:
    """The targets and their windows; `poll()` scrapes each once."""

    def __init__(self, targets: list[Target], window_s: float = 60.0, deadline_s: float = 5.0):
        self.watched = [Watched(t, Window(window_s)) for t in targets]
        self.deadline_s = deadline_s
        self.window_s = window_s
        self.reader = MetricsReader(deadline_s)

    def close(self) -> None:
        self.reader.close()

    def poll(self, now: float | None = None) -> None:
        for w in self.watched:
            self._scrape(w, time.monotonic() if now is None else now)

    def _scrape(self, w: Watched, now: float) -> None:
        try:
            text = self.reader.get_text(w.target.url + "/metrics")
            scrape = exposition.parse(text)
        except FetchError as exc:
            w.state, w.error = DOWN, str(exc)
            w.memory_bytes, w.memory_source = None, None
            return
        except ValueError as exc:
            w.state, w.error = DOWN, f"/metrics is not Prometheus text ({exc})"
            return
        if w.window.add(now, scrape):
            w.restarted_at = now
        recent = w.restarted_at is not None and now - w.restarted_at < RESTART_SHOWN_S
        w.state = RESTARTED if recent else UP
        w.error, w.last_ok = None, now
        w.memory_bytes, w.memory_source = memory(w.target, self.deadline_s)
        rate = w.window.rate("generation_tokens")
        if rate is not None:
            w.history = (w.history + [rate])[-30:]

    def rows(self) -> list[dict[str, Any]]:
        return [row(w) for w in self.watched]


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def row(w: Watched) -> dict[str, Any]:
    """One server's figures (the --json contract: every key always present, null when unknown)."""
    win, latest = w.window, w.window.latest
    values = latest.values if latest and w.state != DOWN else {}
    queries, hits = values.get("prefix_cache_queries"), values.get("prefix_cache_hits")
    speculating = latest is not None and "spec_draft_tokens" in latest.values
    rate, length = win.acceptance() if speculating else (None, None)

    def pct(key: str) -> dict[str, float | None] | None:
        got = win.percentiles(key) if w.state != DOWN else None
        return None if got is None else {k: _round(v, 6) for k, v in got.items()}

    return {
        "name": w.target.name,
        "url": w.target.url,
        "state": w.state,
        "error": w.error,
        "model": ", ".join(latest.models) if latest and latest.models else None,
        "requests_running": values.get("requests_running"),
        "requests_waiting": values.get("requests_waiting"),
        "prompt_tokens_per_s": _round(win.rate("prompt_tokens")) if values else None,
        "generation_tokens_per_s": _round(win.rate("generation_tokens")) if values else None,
        "prompt_tokens_total": values.get("prompt_tokens"),
        "generation_tokens_total": values.get("generation_tokens"),
        "ttft_s": pct("ttft"),
        "itl_s": pct("itl"),
        "kv_cache_usage": _round(values.get("kv_cache_usage")),
        "preemptions_total": values.get("preemptions"),
        "preemptions_window": win.delta("preemptions") if values else None,
        "prefix_cache_hit_rate": _round(win.hit_rate()) if values else None,
        "prefix_cache_hit_rate_total": _round(hits / queries) if queries and hits is not None else None,
        "spec_acceptance_rate": _round(rate),
        "spec_acceptance_length": _round(length),
        "memory_bytes": w.memory_bytes,
        "memory_source": w.memory_source,
        "restarts": win.restarts,
        "window_s": round(win.span_s, 3) if values else None,
        "metric_names": dict(latest.names) if latest else {},
    }


def strict_json(value: Any) -> Any:
    """NaN and infinities (a gauge may hold them) as null: the snapshot is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return value
