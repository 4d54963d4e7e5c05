"""The monitoring stack of `render --with-monitoring`: Prometheus scraping vLLM (and the other servers of
the rendering that expose metrics), Grafana with a provisioned data source and vLLM's own dashboard.

Compose: two more services, `prometheus` and `grafana`, their configuration inline as Compose `configs`
(one file to render, validate and ship), ports published on 127.0.0.1 only, Grafana's admin password from
a Compose secret read from a file (GF_SECURITY_ADMIN_PASSWORD__FILE): there is no default password.
Kubernetes: a prometheus-operator ServiceMonitor on the vLLM Service and the dashboard as a ConfigMap
labelled for Grafana's dashboard sidecar (`grafana_dashboard: "1"`, as kube-prometheus-stack sets it up).

Scrape targets are data (`ScrapeTarget`): another server that exposes metrics is one more entry, and targets
that share a job are one Prometheus job with a static config per target (a fleet's servers: job `vllm`, label
`model`). `add_to_compose` takes a name for the stack's containers, not a launch, so a single deployment and a
fleet (servectl.render.fleet) add the same stack. Pure: the dashboard comes in as text (servectl.catalog.dashboards
reads it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from servectl.render import compose
from servectl.spec.models import LaunchSpec

PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"  # the 3.5 long-term-support release
GRAFANA_IMAGE = "grafana/grafana:12.2.1"
PROMETHEUS_PORT, GRAFANA_PORT = 9090, 3000
SCRAPE_INTERVAL = "5s"  # vLLM's example (examples/observability/prometheus_grafana/prometheus.yaml)
PASSWORD_SECRET = "grafana_admin_password"
PASSWORD_FILE = "./grafana-admin-password"  # made by the user (see the header); never written by servectl
DATASOURCE_UID = "prometheus"
DASHBOARD_DIR = "/etc/grafana/dashboards"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1"


@dataclass(frozen=True)
class ScrapeTarget:
    """One Prometheus job: a server reachable at `address` (host:port) that serves Prometheus text."""

    job: str
    address: str
    metrics_path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dashboard:
    """vLLM's dashboard JSON and where it came from (servectl.catalog.dashboards)."""

    text: str
    release: str
    source: str
    commit: str


def prometheus_config(targets: list[ScrapeTarget], interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    """One job per job name, in the order first seen; each target of a job is a static config with its labels."""
    jobs: dict[str, dict[str, Any]] = {}
    for t in targets:
        static: dict[str, Any] = {"targets": [t.address]}
        if t.labels:
            static["labels"] = dict(t.labels)
        job = jobs.get(t.job)
        if job is None:
            job = jobs[t.job] = {"job_name": t.job}
            if t.metrics_path != "/metrics":
                job["metrics_path"] = t.metrics_path
            job["static_configs"] = []
        elif job.get("metrics_path", "/metrics") != t.metrics_path:
            raise ValueError(f"job {t.job}: targets with different metrics paths ({t.metrics_path})")
        job["static_configs"].append(static)
    return {"global": {"scrape_interval": interval, "evaluation_interval": "30s"}, "scrape_configs": list(jobs.values())}


def datasource_config(url: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": url,
                "isDefault": True,
                "editable": False,
            }
        ],
    }


def dashboard_provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "servectl",
                "folder": "vLLM",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": DASHBOARD_DIR},
            }
        ],
    }


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


def compose_targets(spec: LaunchSpec, proxy_port: int | None = None) -> list[ScrapeTarget]:
    """vLLM (service `vllm`), and the preset proxy's own counters when it is part of the stack."""
    labels = {"deployment": spec.name}
    out = [ScrapeTarget("vllm", f"{compose.SERVICE}:{spec.container_port}", labels=labels)]
    if proxy_port is not None:
        from servectl.render.proxy import CONTAINER_PORT, METRICS_PATH, SERVICE

        out.append(ScrapeTarget("servectl-proxy", f"{SERVICE}:{CONTAINER_PORT}", METRICS_PATH, labels))
    return out


def add_to_compose(doc: dict[str, Any], name: str, targets: list[ScrapeTarget], dashboard: Dashboard) -> dict[str, Any]:
    """The Compose document with Prometheus and Grafana added (a new dict; `doc` is not changed); `name` prefixes
    their container names (the deployment's or the fleet's)."""
    out = {**doc, "services": dict(doc["services"])}
    out["services"]["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        "container_name": f"{name}-prometheus",
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=15d",
        ],
        "configs": [{"source": "prometheus", "target": "/etc/prometheus/prometheus.yml"}],
        "ports": [f"127.0.0.1:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"],
        "volumes": ["prometheus-data:/prometheus"],
        "restart": "unless-stopped",
    }
    out["services"]["grafana"] = {
        "image": GRAFANA_IMAGE,
        "container_name": f"{name}-grafana",
        "environment": {
            "GF_SECURITY_ADMIN_USER": "admin",
            "GF_SECURITY_ADMIN_PASSWORD__FILE": f"/run/secrets/{PASSWORD_SECRET}",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
        },
        "secrets": [PASSWORD_SECRET],
        "configs": [
            {"source": "grafana-datasource", "target": "/etc/grafana/provisioning/datasources/servectl.yaml"},
            {"source": "grafana-dashboards", "target": "/etc/grafana/provisioning/dashboards/servectl.yaml"},
            {"source": "vllm-dashboard", "target": f"{DASHBOARD_DIR}/vllm.json"},
        ],
        "ports": [f"127.0.0.1:{GRAFANA_PORT}:{GRAFANA_PORT}"],
        "volumes": ["grafana-data:/var/lib/grafana"],
        "depends_on": ["prometheus"],
        "restart": "unless-stopped",
    }
    out["configs"] = {
        **doc.get("configs", {}),
        "prometheus": {"content": _yaml(prometheus_config(targets))},
        "grafana-datasource": {"content": _yaml(datasource_config(f"http://prometheus:{PROMETHEUS_PORT}"))},
        "grafana-dashboards": {"content": _yaml(dashboard_provider())},
        "vllm-dashboard": {"content": dashboard.text},
    }
    out["secrets"] = {**doc.get("secrets", {}), PASSWORD_SECRET: {"file": PASSWORD_FILE}}
    out["volumes"] = {**doc.get("volumes", {}), "prometheus-data": {}, "grafana-data": {}}
    return out


def compose_header(spec: LaunchSpec, dashboard: Dashboard) -> str:
    return stack_header(f"{spec.recipe} on {spec.profile}", dashboard)


def stack_header(what: str, dashboard: Dashboard) -> str:
    """The Compose file's comment: what runs, where the stack listens, the password file to make, the dashboard."""
    return (
        f"# {what} with Prometheus (127.0.0.1:{PROMETHEUS_PORT}) and Grafana "
        f"(127.0.0.1:{GRAFANA_PORT}, user admin)\n"
        f"# Grafana's admin password is read from {PASSWORD_FILE} (no default): create it first, e.g.\n"
        f"#   (umask 077; openssl rand -base64 24 > {PASSWORD_FILE})\n"
        f"# Dashboard: vLLM {dashboard.release}'s {dashboard.source} (commit {dashboard.commit}, Apache-2.0)\n"
        "# docker compose up -d\n"
    )


def compose_text(spec: LaunchSpec, dashboard: Dashboard, proxy_port: int | None = None) -> str:
    """The whole stack: vLLM, the preset proxy when asked, Prometheus and Grafana."""
    doc = compose.compose_dict(spec)
    if proxy_port is not None:
        from servectl.render import proxy

        doc["services"][proxy.SERVICE] = proxy.compose_service(spec, proxy_port)
    doc = add_to_compose(doc, spec.name, compose_targets(spec, proxy_port), dashboard)
    return compose.dump(doc, compose_header(spec, dashboard))


# --------------------------------------------------------------------------- Kubernetes


def service_monitor(spec: LaunchSpec, selector: dict[str, str], name: str, port: str) -> dict[str, Any]:
    """A ServiceMonitor scraping the vLLM Service's named port."""
    return {
        "apiVersion": SERVICE_MONITOR_API,
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "labels": dict(selector)},
        "spec": {
            "selector": {"matchLabels": dict(selector)},
            "endpoints": [{"port": port, "path": "/metrics", "interval": SCRAPE_INTERVAL}],
        },
    }


def dashboard_configmap(name: str, labels: dict[str, str], dashboard: Dashboard) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {**labels, "grafana_dashboard": "1"},
            "annotations": {
                "servectl.io/dashboard-source": f"vLLM {dashboard.release}: {dashboard.source} (commit {dashboard.commit})"
            },
        },
        "data": {"vllm.json": dashboard.text},
    }


def k8s_documents(spec: LaunchSpec, dashboard: Dashboard) -> list[dict[str, Any]]:
    """The monitoring objects for every Kubernetes format (each renders a Service labelled k8s.labels on port `http`)."""
    from servectl.render import k8s

    name, labels = k8s.k8s_name(spec.name), k8s.labels(spec)
    return [
        service_monitor(spec, labels, name, k8s.HTTP_PORT_NAME),
        dashboard_configmap(f"{name}-grafana-dashboard"[:63].rstrip("-"), labels, dashboard),
    ]


def k8s_text(rendered: str, spec: LaunchSpec, dashboard: Dashboard) -> str:
    """A Kubernetes rendering with the monitoring documents appended (the dashboard as a literal block)."""
    from servectl.render import k8s

    class Dumper(k8s._SafeDumperNoAliases):
        pass

    Dumper.add_representer(str, compose._str)
    docs = yaml.dump_all(k8s_documents(spec, dashboard), Dumper=Dumper, sort_keys=False, default_flow_style=False, width=120)
    return rendered.rstrip("\n") + "\n---\n" + docs


# --------------------------------------------------------------------------- the dashboard's queries

_GRAFANA_RANGE = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}")
_GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def dashboard_expressions(dashboard_json: str) -> list[str]:
    """Every PromQL expression of a Grafana dashboard, with Grafana's variables replaced as Grafana would
    before sending it (range variables by a duration, others by a value), so Prometheus' own parser can read it."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str) and node["expr"].strip():
                found.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(dashboard_json))
    return [_GRAFANA_VAR.sub("value", _GRAFANA_RANGE.sub("1m", e)) for e in found]


def rules_file(expressions: list[str]) -> str:
    """A Prometheus recording-rules file of the expressions, for `promtool check rules`."""
    rules = [{"record": f"servectl:dashboard_expr_{i}", "expr": e} for i, e in enumerate(expressions)]
    return _yaml({"groups": [{"name": "vllm-dashboard", "rules": rules}]})
