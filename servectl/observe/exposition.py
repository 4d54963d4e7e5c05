"""One scrape of vLLM's /metrics as numbers: the Prometheus text parsed with prometheus_client's parser,
each concept of servectl.catalog.metrics found under the first of its names the server exposes, summed
over the series of every engine (data parallel) and model label. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from servectl.catalog import metrics as catalog


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (upper bound -> observations <= it, +Inf included), their sum and count."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    def minus(self, older: "Histogram") -> "Histogram | None":
        """The observations made since `older`; None when a bucket went down (the server restarted) or the
        bucket layouts differ (another release)."""
        if [b for b, _ in self.buckets] != [b for b, _ in older.buckets]:
            return None
        diff = tuple((b, c - o) for (b, c), (_, o) in zip(self.buckets, older.buckets))
        if any(c < 0 for _, c in diff) or self.count < older.count:
            return None
        return Histogram(diff, self.sum - older.sum, self.count - older.count)


@dataclass(frozen=True)
class Scrape:
    """The figures of one scrape. Missing concepts are absent from the dicts (a release without them, or a
    server that does not speculate); `names` says which spelling each concept was found under."""

    values: dict[str, float] = field(default_factory=dict)  # gauges and counters
    histograms: dict[str, Histogram] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = ()  # model_name labels seen
    cache_config: dict[str, str] = field(default_factory=dict)
    process_start_time: float | None = None  # the API server's (prometheus_client's process collector)


def _merge_buckets(series: dict[tuple, dict[float, float]]) -> tuple[tuple[float, float], ...]:
    total: dict[float, float] = {}
    for buckets in series.values():
        for bound, count in buckets.items():
            total[bound] = total.get(bound, 0.0) + count
    return tuple(sorted(total.items()))


def parse(text: str) -> Scrape:
    """The concepts servectl reads from a /metrics body (raises ValueError on text that is not the
    Prometheus exposition format)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family
    values: dict[str, float] = {}
    histograms: dict[str, Histogram] = {}
    names: dict[str, str] = {}
    models: set[str] = set()
    cache_config: dict[str, str] = {}
    start = None
    if (proc := families.get("process_start_time_seconds")) is not None and proc.samples:
        start = proc.samples[0].value
    for concept in catalog.CONCEPTS:
        found = next((families[n] for n in (c.name for c in concept.names) if n in families), None)
        if found is None and concept.kind == "info":
            # the parser names an untyped info gauge after its sample (`..._info`) or without the suffix
            found = next(
                (families[n.name.removesuffix("_info")] for n in concept.names if n.name.removesuffix("_info") in families), None
            )
        if found is None:
            continue
        names[concept.key] = found.name
        for s in found.samples:
            if "model_name" in s.labels:
                models.add(s.labels["model_name"])
        if concept.kind == "info":
            if found.samples:
                cache_config = dict(found.samples[0].labels)
            continue
        if concept.kind in ("gauge", "counter"):
            wanted = found.name + ("_total" if concept.kind == "counter" else "")
            picked = [s.value for s in found.samples if s.name in (wanted, found.name)]
            if picked:
                # usage fractions are per engine: the fullest one is what a new request meets
                values[concept.key] = max(picked) if concept.key == "kv_cache_usage" else sum(picked)
            continue
        series: dict[tuple, dict[float, float]] = {}
        total_sum = total_count = 0.0
        for s in found.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            if s.name.endswith("_bucket"):
                bound = math.inf if s.labels.get("le") in ("+Inf", "inf") else float(s.labels["le"])
                series.setdefault(key, {})[bound] = s.value
            elif s.name.endswith("_sum"):
                total_sum += s.value
            elif s.name.endswith("_count"):
                total_count += s.value
        histograms[concept.key] = Histogram(_merge_buckets(series), total_sum, total_count)
    return Scrape(values, histograms, names, tuple(sorted(models)), cache_config, start)
