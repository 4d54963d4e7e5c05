"""vLLM's own Grafana dashboard, as each vLLM release ships it, for the monitoring stack of `render
--with-monitoring`: the release that will run picks the dashboard written for its metric names.

The JSON files under dashboards/ are vLLM's examples/.../prometheus_grafana/grafana.json byte for byte
(Apache-2.0, vLLM project), taken from the release's source distribution on the package registry; the
commit is the one its vllm/_version.py records. The same file was found (same hash) in the releases
listed under `checked`; `since`/`until` is the range each applies to ([since, until)).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from packaging.version import InvalidVersion, Version


@dataclass(frozen=True)
class Dashboard:
    release: str  # the vLLM release the file was taken from
    since: str | None
    until: str | None
    file: str
    source: str  # path in vLLM's repository at that release
    commit: str
    sha256: str
    checked: tuple[str, ...]  # releases whose sdist carries the same file


_REPO = "https://github.com/vllm-project/vllm/blob"
# fmt: off
DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard("0.11.0", None, "0.12.0", "vllm-grafana-0.11.0.json",
              f"{_REPO}/v0.11.0/examples/online_serving/prometheus_grafana/grafana.json", "f71952c1c",
              "36f9bb5fd238cb3cc2494bdcdde277585fa6edaa5e505cedefdd2aba6d39766c", ("0.10.2", "0.11.0")),
    Dashboard("0.18.0", "0.12.0", "0.30.0", "vllm-grafana-0.18.0.json",
              f"{_REPO}/v0.18.0/examples/online_serving/prometheus_grafana/grafana.json", "bcf2be961",
              "651f1cf353024072197214df101a6f641839099736939b22b2f46b11c9faf527",
              ("0.12.0", "0.18.0", "0.24.0", "0.28.0", "0.29.0")),
    Dashboard("0.32.0", "0.30.0", None, "vllm-grafana-0.32.0.json",
              f"{_REPO}/v0.32.0/examples/observability/prometheus_grafana/grafana.json", "5df63a720",
              "f9de0e5032ca918f3c21f3b0bb90bfdcef5ca4657f0a7977cd9f73679f9ced16", ("0.30.0", "0.32.0", "0.34.0")),
)
# fmt: on


def for_release(version: str | None) -> Dashboard:
    """The dashboard whose range holds `version`; the newest for an unknown release (an image tag such as `latest`)."""
    if version:
        try:
            v = Version(version)
        except InvalidVersion:
            v = None
        if v is not None:
            for d in DASHBOARDS:
                if (d.since is None or v >= Version(d.since)) and (d.until is None or v < Version(d.until)):
                    return d
    return DASHBOARDS[-1]


@lru_cache(maxsize=None)
def text(dashboard: Dashboard) -> str:
    """The file as vLLM published it (checked against its recorded hash)."""
    raw = resources.files("servectl.catalog").joinpath("dashboards", dashboard.file).read_bytes()
    if hashlib.sha256(raw).hexdigest() != dashboard.sha256:
        raise RuntimeError(f"dashboards/{dashboard.file} differs from vLLM {dashboard.release}'s file (sha256)")
    return raw.decode()


def load(dashboard: Dashboard) -> dict:
    return json.loads(text(dashboard))


def for_image(image: str) -> Dashboard:
    """The dashboard for the vLLM release an image tag names (the newest for `latest` or a digest)."""
    from servectl.catalog.versions import version_from_image

    return for_release(version_from_image(image))
