"""`render --with-monitoring`: golden files, the real validators (Docker Compose, the prometheus-operator CRD
schema, promtool on the scrape configuration and on every PromQL expression of each vendored dashboard), the
vendored dashboards' provenance and selection, and the preset proxy's own counters."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest
import yaml
from packaging.version import Version

import golden_cases as golden
from servectl.catalog import dashboards
from servectl.render import monitoring
from servectl.verify import validate
from servectl.verify.validate_k8s import validate_text

REGEN = "run scripts/regen-golden and review the diff"


@pytest.fixture(scope="module")
def rendered():
    return golden.monitoring_golden_outputs()


def test_renderings_match_their_golden_files(rendered):
    on_disk = {p.name: p.read_text() for p in golden.MONITORING_GOLDEN_DIR.iterdir() if p.is_file()}
    assert sorted(on_disk) == sorted(rendered), REGEN
    assert [n for n, t in rendered.items() if on_disk[n] != t] == [], REGEN


def test_compose_stack_passes_docker_compose_and_the_schema(rendered):
    for name, text in rendered.items():
        if ".compose." in name:
            assert validate.compose(text) == [], name


def test_compose_stack_shape(rendered):
    doc = yaml.safe_load(rendered["nvfp4-rtx-5090-proxy.compose.yaml"])
    services = doc["services"]
    assert (
        services["prometheus"]["image"] == "prom/prometheus:v3.5.0" and services["grafana"]["image"] == "grafana/grafana:12.2.1"
    )
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"] and services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    env = services["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env and doc["secrets"] == {
        "grafana_admin_password": {"file": "./grafana-admin-password"}
    }
    scrape = yaml.safe_load(doc["configs"]["prometheus"]["content"])
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert jobs["vllm"]["static_configs"][0]["targets"] == ["vllm:8000"]
    assert jobs["servectl-proxy"]["metrics_path"] == "/proxy/metrics" and jobs["servectl-proxy"]["static_configs"][0][
        "targets"
    ] == ["proxy:8001"]
    # the dashboard arrives byte for byte once Compose undoes its `$$` escaping
    assert doc["configs"]["vllm-dashboard"]["content"].replace("$$", "$") == dashboards.text(dashboards.for_release("0.18.0"))


def test_fleet_front_door_stack_scrapes_the_front_door_and_its_relay(rendered):
    """Front-door layout: the models' servers listen on 127.0.0.1 inside the front door's container, so Prometheus
    reads the front door twice: its own counters (job servectl-fleet) and its relay of every running server's vLLM
    metrics (job vllm, path /metrics/models, samples labelled model by the front door)."""
    from servectl.fleet.metrics import RELAY_PATH

    doc = yaml.safe_load(rendered["fleet-pair-front-door.compose.yaml"])
    assert sorted(doc["services"]) == ["fleet", "grafana", "prometheus"]
    assert doc["services"]["fleet"]["command"][-1] == "0.0.0.0:8080"  # reachable from the prometheus container
    assert doc["services"]["prometheus"]["container_name"] == "pair-prometheus"
    jobs = {j["job_name"]: j for j in yaml.safe_load(doc["configs"]["prometheus"]["content"])["scrape_configs"]}
    assert jobs["servectl-fleet"] == {
        "job_name": "servectl-fleet",
        "static_configs": [{"targets": ["fleet:8080"], "labels": {"fleet": "pair"}}],
    }
    assert jobs["vllm"]["metrics_path"] == RELAY_PATH == "/metrics/models"
    assert jobs["vllm"]["static_configs"] == [{"targets": ["fleet:8080"], "labels": {"fleet": "pair"}}]
    # the planned release (the profile's v0.18.0 image here) picks vLLM's dashboard
    assert doc["configs"]["vllm-dashboard"]["content"].replace("$$", "$") == dashboards.text(dashboards.for_release("0.18.0"))
    assert doc["secrets"] == {"grafana_admin_password": {"file": "./grafana-admin-password"}}


def test_fleet_services_stack_scrapes_each_model_labelled_by_name(rendered):
    """Services layout: one vLLM job, one target per model's service on its container port, labelled model and
    fleet; vLLM's dashboard selects by vLLM's model_name, which each service is started with (--served-model-name)."""
    doc = yaml.safe_load(rendered["fleet-pair-services.compose.yaml"])
    assert sorted(doc["services"]) == ["chat", "coder", "grafana", "prometheus"]
    (job,) = yaml.safe_load(doc["configs"]["prometheus"]["content"])["scrape_configs"]
    assert job["job_name"] == "vllm" and "metrics_path" not in job
    assert job["static_configs"] == [
        {"targets": ["coder:8000"], "labels": {"fleet": "pair", "model": "coder"}},
        {"targets": ["chat:8000"], "labels": {"fleet": "pair", "model": "chat"}},
    ]
    for name in ("coder", "chat"):
        command = doc["services"][name]["command"]
        assert command[command.index("--served-model-name") + 1] == name


def test_fleet_monitoring_cli_validates_and_refuses_what_does_not_apply(cli, tmp_path):
    fleet_file = str(golden.FLEETS_DIR / "pro6000-pair.yaml")
    ok = cli(
        "render",
        "--fleet",
        fleet_file,
        "--format",
        "compose",
        "--with-monitoring",
        "--fleet-layout",
        "services",
        "--validate",
        "-o",
        str(tmp_path),
    )
    assert ok.exit_code == 0, ok.stderr
    assert "docker compose + compose schema" in ok.stderr and "promtool" in ok.stderr
    assert validate.monitoring("compose", (tmp_path / "docker-compose.yaml").read_text()) == []
    systemd = cli("render", "--fleet", fleet_file, "--format", "systemd", "--with-monitoring")
    assert systemd.exit_code == 2 and "--with-monitoring is for --format compose" in systemd.stderr
    proxy = cli("render", "--fleet", fleet_file, "--format", "compose", "--with-proxy")
    assert proxy.exit_code == 2 and "front door serves the presets itself" in proxy.stderr
    clash = tmp_path / "clash.yaml"
    clash.write_text("name: c\ngpu: rtx-pro-6000-blackwell\nmodels:\n  grafana: {model: qwen3.5-35b-a3b-mxfp4, context: 8192}\n")
    refused = cli("render", "--fleet", str(clash), "--format", "compose", "--fleet-layout", "services", "--with-monitoring")
    assert refused.exit_code == 2 and "monitoring stack" in refused.stderr
    assert cli("render", "--fleet", str(clash), "--format", "compose", "--fleet-layout", "services").exit_code == 0


def test_one_job_several_targets_must_share_the_path():
    targets = [
        monitoring.ScrapeTarget("vllm", "a:8000", labels={"model": "a"}),
        monitoring.ScrapeTarget("vllm", "b:8000", "/other"),
    ]
    with pytest.raises(ValueError, match="different metrics paths"):
        monitoring.prometheus_config(targets)


def test_one_more_scrape_target_is_one_more_entry():
    targets = [
        monitoring.ScrapeTarget("vllm", "vllm:8000"),
        monitoring.ScrapeTarget("fleet", "fleet:9000", "/fleet/metrics", {"tier": "front"}),
    ]
    jobs = monitoring.prometheus_config(targets)["scrape_configs"]
    assert jobs[1] == {
        "job_name": "fleet",
        "metrics_path": "/fleet/metrics",
        "static_configs": [{"targets": ["fleet:9000"], "labels": {"tier": "front"}}],
    }


def test_kubernetes_monitoring_validates_against_the_real_schemas(rendered):
    for name, text in rendered.items():
        if ".k8s" in name:
            assert validate_text(text) == [], name
            kinds = [d["kind"] for d in yaml.safe_load_all(text)]
            assert kinds[-2:] == ["ServiceMonitor", "ConfigMap"]


def test_a_broken_service_monitor_is_refused(rendered):
    docs = list(yaml.safe_load_all(rendered["gptq-8bit-rocm-4gpu.k8s.yaml"]))
    smon = next(d for d in docs if d["kind"] == "ServiceMonitor")
    smon["spec"]["endpoints"][0]["interval"] = "five seconds"
    smon["spec"]["endpoints"][0]["scrapeEvery"] = "5s"
    problems = validate_text(yaml.safe_dump_all(docs))
    assert any("interval" in p for p in problems) and any("scrapeEvery" in p for p in problems)


def test_service_monitor_selects_the_rendered_service(rendered):
    docs = list(yaml.safe_load_all(rendered["gptq-8bit-rocm-4gpu-2nodes.k8s-lws.yaml"]))
    service = next(d for d in docs if d["kind"] == "Service")
    smon = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert smon["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert smon["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]


@pytest.fixture(scope="module")
def promtool():
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: scripts/test installs Debian's prometheus package (apt-get install prometheus)")
    return tool


@pytest.mark.parametrize("dashboard", dashboards.DASHBOARDS, ids=lambda d: d.release)
def test_every_dashboard_query_parses_with_promtool(promtool, tmp_path, dashboard):
    exprs = monitoring.dashboard_expressions(dashboards.text(dashboard))
    assert len(exprs) >= 25
    rules = tmp_path / "rules.yml"
    rules.write_text(monitoring.rules_file(exprs))
    proc = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and f"{len(exprs)} rules found" in proc.stdout, proc.stdout + proc.stderr


def test_promtool_finds_a_broken_query_and_config(promtool):
    problems = validate.promtool("scrape_configs:\n- job_name: x\n  scrape_every: 5s\n", ["rate(vllm:x_total[1m]"])
    assert any("check config" in p for p in problems) and any("parse error" in p for p in problems)


def test_validate_runs_promtool_on_the_stack(rendered):
    for name, text in rendered.items():
        fmt = "compose" if ".compose." in name else "k8s"
        assert validate.monitoring(fmt, text) == [], name


def test_dashboards_are_vllms_files_and_match_the_release():
    for d in dashboards.DASHBOARDS:
        assert hashlib.sha256(dashboards.text(d).encode()).hexdigest() == d.sha256
        assert d.release in d.checked and f"/v{d.release}/" in d.source
        json.loads(dashboards.text(d))
    assert dashboards.for_release("0.11.0").release == "0.11.0"
    assert dashboards.for_release("0.18.0").release == dashboards.for_release("0.29.1").release == "0.18.0"
    assert dashboards.for_release("0.32.0").release == dashboards.for_release(None).release == "0.32.0"
    assert dashboards.for_image("vllm/vllm-openai:v0.18.0-cu130").release == "0.18.0"
    assert dashboards.for_image("rocm/vllm:latest").release == "0.32.0"


def test_each_dashboard_uses_names_its_releases_expose():
    """The KV usage spelling of each dashboard is the one the metric table gives for its releases."""
    for d in dashboards.DASHBOARDS:
        text = dashboards.text(d)
        kv = "vllm:gpu_cache_usage_perc" if d.until and Version(d.until) <= Version("0.12.0") else "vllm:kv_cache_usage_perc"
        assert kv in text, d.release


def test_with_monitoring_refuses_other_formats(cli):
    result = cli("render", "tiny-cpu", "--gpu", "cpu", "--format", "systemd", "--with-monitoring")
    assert result.exit_code == 2 and "--with-monitoring is for --format compose" in result.stderr


def test_proxy_serves_its_own_counters():
    import asyncio

    from servectl.catalog.presets import select_presets
    from servectl.proxy.app import build_app

    app = build_app("http://127.0.0.1:9", "tiny-cpu", select_presets("qwen3.5"))

    async def call(method, path, body=b""):
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(msg):
            sent.append(msg)

        await app.handle({"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}, receive, send)
        return sent

    async def scenario():
        await call("POST", "/v1/chat/completions", json.dumps({"model": "tiny-cpu-nosuch", "messages": []}).encode())
        sent = await call("GET", "/proxy/metrics")
        return sent

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 200
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(sent[1]["body"].decode())}
    rejected = {s.labels["reason"]: s.value for s in families["servectl_proxy_rejected"].samples}
    assert rejected == {"unknown_preset": 1.0}
