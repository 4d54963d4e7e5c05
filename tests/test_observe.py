"""servectl.observe: /metrics of the real vLLM 0.32 CPU server (captured in tests/data/metrics/) parsed with
the release table, rates and histogram percentiles over a window, restarts, bounded reads against a real
HTTP server, and the metric-name table checked against the installed vLLM source."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from pathlib import Path

import pytest

from servectl.catalog import metrics as table
from servectl.observe import exposition
from servectl.observe.exposition import Histogram
from servectl.observe.fetch import FetchError, MetricsReader
from servectl.observe.top import Monitor, strict_json
from servectl.observe.targets import Target
from servectl.observe.window import Window, quantile

DATA = Path(__file__).parent / "data" / "metrics"
IDLE = (DATA / "vllm-0.32.0-cpu-idle.txt").read_text()
AFTER = (DATA / "vllm-0.32.0-cpu-after-3-requests.txt").read_text()


def test_real_scrape_is_read_under_the_current_names():
    s = exposition.parse(AFTER)
    assert s.names["kv_cache_usage"] == "vllm:kv_cache_usage_perc"
    assert s.names["itl"] == "vllm:inter_token_latency_seconds"
    assert s.values["requests_running"] == 0 and s.values["prompt_tokens"] == 63 and s.values["generation_tokens"] == 30
    assert s.histograms["ttft"].count == 3 and s.histograms["ttft"].buckets[-1] == (math.inf, 3.0)
    assert s.models == ("tiny-cpu",) and s.cache_config["block_size"] == "256"
    assert "spec_draft_tokens" not in s.values  # this server does not speculate
    assert s.process_start_time and s.process_start_time > 1e9


def test_old_release_names_are_read_too():
    # the spellings of vLLM <= 0.11 (V1 with deprecated names, or the V0 engine's)
    old = (
        IDLE.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
        .replace("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
        .replace("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")
    )
    s = exposition.parse(old)
    assert s.names["kv_cache_usage"] == "vllm:gpu_cache_usage_perc" and "kv_cache_usage" in s.values
    assert (
        s.names["itl"] == "vllm:time_per_output_token_seconds"
        and s.names["prefix_cache_queries"] == "vllm:gpu_prefix_cache_queries"
    )


def test_not_prometheus_text_is_an_error():
    with pytest.raises(ValueError):
        exposition.parse('vllm:x{a="1" 3\n')


def test_quantile_follows_prometheus_histogram_quantile():
    h = Histogram(((0.1, 2.0), (0.2, 6.0), (0.5, 10.0), (math.inf, 10.0)), 2.0, 10.0)
    assert quantile(0.5, h) == pytest.approx(0.1 + 0.1 * (5 - 2) / 4)  # rank 5 in (0.1, 0.2]
    assert quantile(0.1, h) == pytest.approx(0.05)  # first bucket interpolates from 0
    assert quantile(0.99, h) == pytest.approx(0.2 + 0.3 * (9.9 - 6) / 4)
    assert quantile(0.99, Histogram(((0.1, 1.0), (math.inf, 5.0)), 1, 5)) == 0.1  # rank in +Inf: highest finite bound
    assert quantile(0.5, Histogram(((0.1, 0.0), (math.inf, 0.0)), 0, 0)) is None


def test_window_rates_deltas_and_percentiles_from_real_scrapes():
    w = Window(60)
    w.add(100.0, exposition.parse(IDLE))
    w.add(102.0, exposition.parse(AFTER))
    idle, after = exposition.parse(IDLE), exposition.parse(AFTER)
    assert w.rate("generation_tokens") == pytest.approx(
        (after.values["generation_tokens"] - idle.values["generation_tokens"]) / 2
    )
    p = w.percentiles("ttft")
    assert p["count"] == 3 and 0 < p["p50"] <= p["p99"] <= 0.08  # all three in the (0.02, 0.04] bucket here
    assert w.percentiles("no-such") is None


def test_a_restart_drops_the_history_and_is_counted():
    w = Window(60)
    w.add(0.0, exposition.parse(AFTER))
    assert w.add(2.0, exposition.parse(IDLE))  # counters went down: a new life
    assert w.restarts == 1 and len(w.samples) == 1 and w.rate("generation_tokens") is None


def test_the_window_slides():
    w = Window(10)
    s = exposition.parse(IDLE)
    for t in range(0, 30, 2):
        w.add(float(t), s)
    assert 10 <= w.span_s <= 12


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    delay = 0.0

    def do_GET(self):
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        try:
            self.wfile.write(self.body)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture()
def http_server():
    servers = []

    def start(body: bytes, delay: float = 0.0) -> str:
        handler = type("H", (_Handler,), {"body": body, "delay": delay})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()


def test_reads_are_bounded_in_size_and_time(http_server):
    with MetricsReader(5) as reader:
        assert reader.get_text(http_server(AFTER.encode()) + "/metrics") == AFTER
    with MetricsReader(5, max_bytes=1000) as reader, pytest.raises(FetchError, match="byte limit"):
        reader.get_text(http_server(b"x" * 5000) + "/metrics")
    slow = http_server(b"ok", delay=3.0)
    started = time.monotonic()
    with MetricsReader(0.5) as reader, pytest.raises(FetchError, match="no answer within 0.5 s"):
        reader.get_text(slow + "/metrics")
    assert time.monotonic() - started < 2.5


def test_monitor_rows_keep_every_key_and_mark_a_dead_server_down(http_server):
    live = http_server(AFTER.encode())
    m = Monitor([Target("live", live), Target("gone", "http://127.0.0.1:9")], window_s=60, deadline_s=2)
    try:
        m.poll(now=0.0)
        m.poll(now=1.0)
        rows = {r["name"]: r for r in m.rows()}
    finally:
        m.close()
    assert rows["live"]["state"] == "up" and rows["live"]["generation_tokens_per_s"] == 0
    assert rows["gone"]["state"] == "down" and rows["gone"]["error"]
    assert rows["live"].keys() == rows["gone"].keys()
    json.dumps(strict_json(list(rows.values())), allow_nan=False)


def test_strict_json_has_no_nan():
    assert strict_json({"a": [float("nan"), float("inf"), 1.5]}) == {"a": [None, None, 1.5]}


def test_view_escapes_names_from_outside():
    from rich.console import Console

    from servectl.observe.view import table as view_table

    row = {"name": "evil\x1b[31m[bold]x", "state": "down", "error": "boom\x07"}
    console = Console(record=True, width=200, color_system=None)
    console.print(view_table([row], {}, 2, 60))
    out = console.export_text()
    assert "\x1b" not in out and "\\x1b[31m[bold]x" in out and "\\x07" in out


def test_table_names_exist_in_the_installed_vllm_source(vllm_python):
    """Every name the table says 0.32 exposes is declared in the CPU build's own source."""
    site = next(vllm_python.parent.parent.glob("lib/python3*/site-packages/vllm"))
    source = (site / "v1/metrics/loggers.py").read_text() + (site / "v1/spec_decode/metrics.py").read_text()
    from packaging.version import Version

    for concept in table.CONCEPTS:
        for n in concept.names:
            exposed = (n.since is None or Version(n.since) <= Version("0.32.0")) and (
                n.until is None or Version(n.until) >= Version("0.32.0")
            )
            assert (f'"{n.name}"' in source) == exposed, f"{concept.key}: {n.name}"
