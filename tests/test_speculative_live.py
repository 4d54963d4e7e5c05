"""Speculative decoding with the tiny model's MTP head on a real vLLM CPU server.

The scripted head drafts the script's next tokens, so vLLM must accept nearly every draft; the
random head drafts noise, so nearly every draft is rejected. Acceptance is read from vLLM's own
counters on /metrics (vllm/v1/spec_decode/metrics.py): accepted / draft tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servectl.verify import acceptance
from servectl.verify.health import run_checks
from servectl.vllmenv.tinymodel import ensure_tiny_model
from conftest import VllmServer, free_port

DEPTH = 2
# Prefix caching (on by default for hybrid models from vLLM 0.28) runs a Triton kernel for
# speculative mamba state copies (v1/worker/mamba_utils.py precopy_mamba_align_fused_kernel); the CPU
# build has no Triton, so the first request kills the engine. Off, the CPU server speculates fine.
SPEC_FLAGS = ("--no-enable-prefix-caching", "--speculative-config",
              json.dumps({"method": "mtp", "num_speculative_tokens": DEPTH}))


def spec_counters(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        if family.name.startswith("vllm:spec_decode_num_"):
            for sample in family.samples:
                if sample.name.endswith("_total") and "position" not in sample.labels:
                    out[sample.name.removeprefix("vllm:spec_decode_").removesuffix("_total")] = sample.value
    return out


def chat(url: str, **extra) -> dict:
    body = {"model": "tiny-cpu", "messages": [{"role": "user", "content": "Who are you?"}],
            "max_tokens": 48, "temperature": 0, **extra}
    reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture(scope="module", params=["scripted", "random"])
def speculating(request):
    server = VllmServer(ensure_tiny_model(request.param), free_port(), extra=SPEC_FLAGS).wait_ready()
    try:
        yield request.param, server
    finally:
        server.stop()


def test_acceptance_follows_the_head(speculating):
    variant, server = speculating
    before = spec_counters(server.url)
    assert set(before) >= {"num_drafts", "num_draft_tokens", "num_accepted_tokens"}, before
    replies = [chat(server.url), chat(server.url, chat_template_kwargs={"enable_thinking": False})]
    after = spec_counters(server.url)
    drafted = after["num_draft_tokens"] - before["num_draft_tokens"]
    accepted = after["num_accepted_tokens"] - before["num_accepted_tokens"]
    assert drafted >= DEPTH * 2, after  # every decode step drafted DEPTH tokens
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
