"""The preset proxy's own counters, served at METRICS_PATH in Prometheus text (what the monitoring stack of
`render --with-proxy --with-monitoring` scrapes). vLLM's /metrics still passes through to the backend:
scraping that through the proxy would count every vLLM series twice.

Counted per request, never per relayed chunk: a dict increment, so the relay's cost is unchanged.
"""

from __future__ import annotations

from collections import Counter

from servectl.render.proxy import METRICS_PATH  # noqa: F401  (the path, shared with the renderers)

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    """A label value escaped as the exposition format wants (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ProxyMetrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()  # (preset, by) of the rewritten paths
        self.rejected: Counter[str] = Counter()  # reason: body_too_large | unknown_preset
        self.backend_errors = 0

    def requested(self, info: bytes | None) -> None:
        """One request on a rewritten path, from its x-servectl-proxy info (`preset=NAME; by=model|auto`)."""
        if info is None:
            return
        parts = dict(p.split("=", 1) for p in info.decode(errors="replace").split("; ") if "=" in p)
        self.requests[(parts.get("preset", "none"), parts.get("by", "model"))] += 1

    def text(self) -> bytes:
        lines = [
            "# HELP servectl_proxy_requests_total Requests on the completion paths, by the preset applied.",
            "# TYPE servectl_proxy_requests_total counter",
        ]
        lines += [
            f'servectl_proxy_requests_total{{preset="{_label(p)}",by="{_label(b)}"}} {n}'
            for (p, b), n in sorted(self.requests.items())
        ]
        lines += [
            "# HELP servectl_proxy_rejected_total Requests the proxy answered itself with an error.",
            "# TYPE servectl_proxy_rejected_total counter",
        ]
        lines += [f'servectl_proxy_rejected_total{{reason="{r}"}} {n}' for r, n in sorted(self.rejected.items())]
        lines += [
            "# HELP servectl_proxy_backend_errors_total Requests answered 502 because the backend failed.",
            "# TYPE servectl_proxy_backend_errors_total counter",
            f"servectl_proxy_backend_errors_total {self.backend_errors}",
        ]
        return ("\n".join(lines) + "\n").encode()
