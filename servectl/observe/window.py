"""Figures from a series of scrapes: counter rates, histogram percentiles over a sliding window, ratios of
counter deltas. Pure: scrapes and their times in, numbers out.

A restarted server starts its counters from zero (and prometheus_client's process_start_time_seconds
changes): any counter or histogram count that goes down, or a new start time, drops the history, so no
rate or percentile ever mixes two lives of a server.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from servectl.observe.exposition import Histogram, Scrape

COUNTERS = (
    "prompt_tokens",
    "generation_tokens",
    "preemptions",
    "prefix_cache_queries",
    "prefix_cache_hits",
    "spec_drafts",
    "spec_draft_tokens",
    "spec_accepted_tokens",
)


def quantile(q: float, hist: Histogram | None) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket the rank falls in; a rank in
    the +Inf bucket gives the highest finite bound; None without observations."""
    if hist is None or not hist.buckets:
        return None
    total = hist.buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for i, (bound, count) in enumerate(hist.buckets):
        if count >= rank:
            if math.isinf(bound):
                return hist.buckets[i - 1][0] if i > 0 else None
            if i == 0 and bound <= 0:
                return bound
            in_bucket = count - prev_count
            if in_bucket <= 0:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / in_bucket
        prev_bound, prev_count = bound, count
    return hist.buckets[-1][0]


def restarted(older: Scrape, newer: Scrape) -> bool:
    """The server behind two scrapes restarted between them."""
    if older.process_start_time and newer.process_start_time and newer.process_start_time != older.process_start_time:
        return True
    for key in COUNTERS:
        if key in older.values and key in newer.values and newer.values[key] < older.values[key]:
            return True
    for key, hist in newer.histograms.items():
        if key in older.histograms and hist.count < older.histograms[key].count:
            return True
    return False


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


@dataclass
class Window:
    """The scrapes of one server over the last `seconds` (at least the last two are kept)."""

    seconds: float = 60.0

    def __post_init__(self) -> None:
        self.samples: deque[tuple[float, Scrape]] = deque()
        self.restarts = 0

    def add(self, t: float, scrape: Scrape) -> bool:
        """Keep a scrape taken at time t; True when it shows a restart (the history is then dropped)."""
        fresh = bool(self.samples) and restarted(self.samples[-1][1], scrape)
        if fresh:
            self.samples.clear()
            self.restarts += 1
        self.samples.append((t, scrape))
        while len(self.samples) > 2 and t - self.samples[1][0] >= self.seconds:
            self.samples.popleft()
        return fresh

    @property
    def latest(self) -> Scrape | None:
        return self.samples[-1][1] if self.samples else None

    @property
    def span_s(self) -> float:
        return self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0.0

    def rate(self, key: str) -> float | None:
        """Per second between the last two scrapes."""
        if len(self.samples) < 2:
            return None
        (t0, a), (t1, b) = self.samples[-2], self.samples[-1]
        if key not in a.values or key not in b.values or t1 <= t0:
            return None
        return (b.values[key] - a.values[key]) / (t1 - t0)

    def delta(self, key: str) -> float | None:
        """Counter increase over the window."""
        if len(self.samples) < 2:
            return None
        a, b = self.samples[0][1], self.samples[-1][1]
        if key not in a.values or key not in b.values:
            return None
        return b.values[key] - a.values[key]

    def histogram(self, key: str) -> Histogram | None:
        """Observations over the window (bucket deltas)."""
        if len(self.samples) < 2:
            return None
        a, b = self.samples[0][1].histograms.get(key), self.samples[-1][1].histograms.get(key)
        if a is None or b is None:
            return None
        return b.minus(a)

    def percentiles(self, key: str, qs: tuple[float, ...] = (0.5, 0.9, 0.99)) -> dict[str, float | None] | None:
        """{p50, p90, p99 (seconds), count} over the window; None when the server does not expose the histogram."""
        if self.latest is None or key not in self.latest.histograms:
            return None
        hist = self.histogram(key)
        out: dict[str, float | None] = {f"p{round(q * 100)}": quantile(q, hist) for q in qs}
        out["count"] = hist.count if hist is not None else 0
        return out

    def hit_rate(self) -> float | None:
        """Prefix-cache hits / queries over the window (None without queries)."""
        return _ratio(self.delta("prefix_cache_hits"), self.delta("prefix_cache_queries"))

    def acceptance(self) -> tuple[float | None, float | None]:
        """(accepted / draft tokens, 1 + accepted / drafts) over the window; (None, None) without drafts."""
        accepted, proposed, drafts = (
            self.delta("spec_accepted_tokens"),
            self.delta("spec_draft_tokens"),
            self.delta("spec_drafts"),
        )
        rate = _ratio(accepted, proposed)
        length = 1 + accepted / drafts if accepted is not None and drafts else None
        return rate, length
