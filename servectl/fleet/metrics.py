"""The front door's /metrics (prometheus_client, a registry of its own per fleet), per model.

| metric | type | labels | what |
|---|---|---|---|
| servectl_fleet_requests_total | counter | model | requests routed to the model (answered by it) |
| servectl_fleet_rejected_total | counter | model, reason | requests answered 503 by the front door (queue_full, deadline, start_failed, shutting_down) |
| servectl_fleet_starts_total | counter | model | server starts that reached ready |
| servectl_fleet_start_failures_total | counter | model | starts that did not |
| servectl_fleet_swaps_total | counter | model | starts or wake-ups of the model that first put others to sleep or stopped them |
| servectl_fleet_evictions_total | counter | model, action | times the model was put to sleep / stopped to make room |
| servectl_fleet_wakeups_total | counter | model | wake-ups from sleep |
| servectl_fleet_stops_total | counter | model, reason | stops: ttl, evicted, died, wake_failed, shutdown |
| servectl_fleet_queue_seconds | histogram | model | time a request waited for its model to be ready (0 when it was) |
| servectl_fleet_start_seconds | histogram | model | time from start to ready |
| servectl_fleet_model_state | gauge | model, state | 1 for the model's current state (stopped, starting, ready, sleeping) |
| servectl_fleet_memory_mib | gauge | pool, kind | the device's budget and what the fleet's models hold now (kind budget / used) |

`/metrics/models` (RELAY_PATH) relays vLLM's own metrics of every model whose server is up (ready or asleep): each
sample gains the label `model` (the fleet's name for it, as in the table above; vLLM's own `model_name` stays), the
families of all servers are merged (one HELP and TYPE each, as the text format wants), and
servectl_fleet_relay_up{model} says whether that server's /metrics was read (1) or not (0). Prometheus scrapes it
as its `vllm` job, so vLLM's Grafana dashboard works through the front door, whose servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

RELAY_PATH = "/metrics/models"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

STATES = ("stopped", "starting", "ready", "sleeping")
# queue waits run from ~0 (warm) to a cold start of minutes; starts from seconds (wake) to tens of minutes
_WAIT_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)
_START_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)


class FleetMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("servectl_fleet_requests", "Requests routed to a model.", ["model"], registry=r)
        self.rejected = Counter(
            "servectl_fleet_rejected", "Requests the front door answered 503.", ["model", "reason"], registry=r
        )
        self.starts = Counter("servectl_fleet_starts", "Server starts that reached ready.", ["model"], registry=r)
        self.start_failures = Counter("servectl_fleet_start_failures", "Server starts that failed.", ["model"], registry=r)
        self.swaps = Counter("servectl_fleet_swaps", "Starts or wake-ups that first evicted other models.", ["model"], registry=r)
        self.evictions = Counter(
            "servectl_fleet_evictions", "Times a model was put to sleep or stopped to make room.", ["model", "action"], registry=r
        )
        self.wakeups = Counter("servectl_fleet_wakeups", "Wake-ups from sleep.", ["model"], registry=r)
        self.stops = Counter("servectl_fleet_stops", "Server stops by reason.", ["model", "reason"], registry=r)
        self.queue_seconds = Histogram(
            "servectl_fleet_queue_seconds", "Time a request waited for its model.", ["model"], buckets=_WAIT_BUCKETS, registry=r
        )
        self.start_seconds = Histogram(
            "servectl_fleet_start_seconds", "Time from start to ready.", ["model"], buckets=_START_BUCKETS, registry=r
        )
        self.state = Gauge("servectl_fleet_model_state", "1 for the model's current state.", ["model", "state"], registry=r)
        self.memory = Gauge("servectl_fleet_memory_mib", "Device budget and what the models hold.", ["pool", "kind"], registry=r)

    def declare(self, model: str) -> None:
        """Every series of a model exists from the start (0), so rates work before the first event."""
        for c in (self.requests, self.starts, self.start_failures, self.swaps, self.wakeups):
            c.labels(model)
        self.queue_seconds.labels(model)
        self.start_seconds.labels(model)
        self.set_state(model, "stopped")

    def set_state(self, model: str, shown: str) -> None:
        for s in STATES:
            self.state.labels(model, s).set(1 if s == shown else 0)

    def text(self) -> bytes:
        return generate_latest(self.registry)


def relay(scraped: dict[str, str | None]) -> bytes:
    """One exposition of the servers' own metrics: {fleet model name: its /metrics text, or None when it could not
    be read}. Samples gain `model` (unless the server set it itself); families merge across servers; a family
    whose type differs from the first server's is left out for that server (the text format allows one TYPE)."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    up = GaugeMetricFamily(
        "servectl_fleet_relay_up", "1 when the model's server /metrics was read, 0 when not.", labels=["model"]
    )
    for model, text in scraped.items():
        parsed: list[Metric] | None = None
        if text is not None:
            try:
                parsed = list(text_string_to_metric_families(text))
            except ValueError:  # not Prometheus text: the server counts as not read
                parsed = None
        up.add_metric([model], 1.0 if parsed is not None else 0.0)
        for fam in parsed or []:
            merged = families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit))
            if merged.type != fam.type:
                continue
            merged.samples += [
                Sample(
                    x.name, x.labels if "model" in x.labels else {"model": model, **x.labels}, x.value, x.timestamp, x.exemplar
                )
                for x in fam.samples
            ]

    class _Relayed:
        def collect(self):
            yield from families.values()
            yield up

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Relayed())
    return generate_latest(registry)
