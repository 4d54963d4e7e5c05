"""`servectl check` against a real vLLM CPU server: the scripted tiny model passes every applicable
check; the random-weight variant is caught as gibberish (the detector's real test)."""

import json

import pytest

from servectl.verify.health import run_checks, tiny_png
from servectl.vllmenv.tinymodel import ensure_tiny_model

from conftest import VllmServer, free_port

pytestmark = [pytest.mark.server]


def by_name(report):
    return {c.name: c for c in report.checks}


def test_scripted_model_passes_every_applicable_check(tiny_server):
    report = run_checks(tiny_server.url, model=tiny_server.model)
    checks = by_name(report)
    assert report.passed, [(c.name, c.detail) for c in report.checks]
    for name in ("health", "models", "chat", "sanity", "reasoning", "tools", "streaming", "metrics"):
        assert checks[name].status == "pass", (name, checks[name].detail)
    assert checks["vision"].status == "skipped"  # tiny-cpu takes no images
    assert checks["models"].figures["root"] == tiny_server.model_dir
    assert checks["streaming"].figures["chunks"] >= 2
    assert "kv_cache_size_tokens" in checks["metrics"].figures


def test_cli_json_and_exit_code(tiny_server, cli):
    result = cli("check", tiny_server.url, "--json", "--timeout", "600")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["model"] == "tiny-cpu"
    assert data["recipe"] == "tiny-cpu"  # found from the served name: no --model given


def test_a_different_model_on_the_port_fails(tiny_server, cli):
    """A leftover server answering /health must not pass for the model we expect."""
    result = cli("check", tiny_server.url, "--model", "qwen3.5-35b-a3b-nvfp4")
    assert result.exit_code == 1
    assert "models" in result.stderr


def test_unreachable_server_is_bad_input(cli):
    result = cli("check", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "cannot reach" in result.stderr and "Traceback" not in result.output


def test_missing_api_key_variable_is_one_line(cli, monkeypatch):
    monkeypatch.delenv("SERVECTL_TEST_NO_SUCH_KEY", raising=False)
    result = cli("check", f"http://127.0.0.1:{free_port()}", "--api-key-env", "SERVECTL_TEST_NO_SUCH_KEY")
    assert result.exit_code == 2 and "SERVECTL_TEST_NO_SUCH_KEY" in result.stderr


def test_random_weights_are_flagged_as_gibberish():
    server = VllmServer(ensure_tiny_model("random"), port=free_port(), served_name="tiny-random")
    try:
        server.wait_ready()
        report = run_checks(server.url, model="tiny-random")
    finally:
        server.stop()
    sanity = by_name(report)["sanity"]
    assert sanity.status == "fail", sanity.detail
    assert "gibberish" in sanity.detail
    assert not report.passed


def test_generated_png_is_a_valid_image():
    png = tiny_png(16)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
