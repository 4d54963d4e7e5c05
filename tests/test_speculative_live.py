"""Speculative decoding with the tiny model's MTP head on a real vLLM CPU server.

The scripted head drafts the script's next tokens, so vLLM must accept nearly every draft; the
random head drafts noise, so nearly every draft is rejected. Acceptance is read from vLLM's own
counters on /metrics (vllm/v1/spec_decode/metrics.py): accepted / draft tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servectl.verify import acceptance
from servectl.verify.health import run_checks
from servectl.vllmenv.tinymodel import ensure_tiny_model
from conftest import free_port
from waits import START_S, STOP_S

pytestmark = [pytest.mark.server]
DEPTH = 2
SERVECTL = [sys.executable, "-m", "servectl"]


@dataclass
class Server:
    url: str
    up: dict


def spec_counters(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=60).text):
        if family.name.startswith("vllm:spec_decode_num_"):
            for sample in family.samples:
                if sample.name.endswith("_total") and "position" not in sample.labels:
                    out[sample.name.removeprefix("vllm:spec_decode_").removesuffix("_total")] = sample.value
    return out


def chat(url: str, **extra) -> dict:
    body = {
        "model": "tiny-cpu",
        "messages": [{"role": "user", "content": "Who are you?"}],
        "max_tokens": 48,
        "temperature": 0,
        **extra,
    }
    reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=STOP_S)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture(scope="module", params=["scripted", "random"])
def speculating(request, tmp_path_factory):
    """`servectl up --speculative mtp:2` of one head (isolated state dir); `down` at the end."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path_factory.mktemp("state"))}
    name = f"mtp-{request.param}"
    res = subprocess.run(
        [
            *SERVECTL,
            "up",
            "tiny-cpu",
            "--model-path",
            str(ensure_tiny_model(request.param)),
            "--port",
            str(free_port()),
            "--name",
            name,
            "--detach",
            "--no-check",
            "--json",
            "--speculative",
            f"mtp:{DEPTH}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_S,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    up = json.loads(res.stdout)
    try:
        yield request.param, Server(up["endpoint"].removesuffix("/v1"), up)
    finally:
        subprocess.run([*SERVECTL, "down", name], env=env, capture_output=True, text=True, timeout=STOP_S)


def test_acceptance_follows_the_head(speculating):
    variant, server = speculating
    before = spec_counters(server.url)
    assert set(before) >= {"num_drafts", "num_draft_tokens", "num_accepted_tokens"}, before
    replies = [chat(server.url), chat(server.url, chat_template_kwargs={"enable_thinking": False})]
    after = spec_counters(server.url)
    drafted = after["num_draft_tokens"] - before["num_draft_tokens"]
    accepted = after["num_accepted_tokens"] - before["num_accepted_tokens"]
    assert drafted >= DEPTH * 2, after  # every decode step drafted DEPTH tokens
    # up turned prefix caching off (the CPU build's speculative state copy needs Triton) and the plan it
    # made beforehand, draft included, is what vLLM logged
    assert server.up["kv_cache_tokens_predicted"] == server.up["kv_cache_tokens_reported"], server.up
    if variant == "scripted":
        assert accepted / drafted >= 0.9, (accepted, drafted)
        # speculation is lossless: the reply is the script, as without a draft
        assert "I am a tiny test model" in (replies[1]["choices"][0]["message"]["content"] or "")
    else:
        assert accepted / drafted <= 0.2, (accepted, drafted)


def test_check_reports_acceptance_and_fails_when_nothing_is_accepted(speculating):
    variant, server = speculating
    report = run_checks(server.url, model="tiny-cpu")
    check = next(c for c in report.checks if c.name == "speculative")
    assert check.figures["draft_tokens"] > 0
    if variant == "scripted":
        assert check.status == "pass" and check.figures["acceptance_rate"] >= 0.9, check
    else:
        assert check.status == "fail" and check.figures["accepted_tokens"] == 0, check
        assert "none of" in check.detail and not report.passed


def test_check_skips_a_server_that_does_not_speculate():
    # vLLM registers the spec-decode counters only with a speculative config (SpecDecodingProm);
    # a real non-speculating CPU server's /metrics (captured) carries none
    result = acceptance.check((Path(__file__).parent / "data" / "vllm-0.32.0-cpu-metrics.txt").read_text())
    assert result.status == "skipped"
