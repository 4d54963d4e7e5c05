"""Any checkpoint, served for real: `servectl up DIR` and `servectl up REPO` on the vLLM CPU build with the recipe
servectl derives, then `servectl check` (tool calls included where the recipe sets a tool parser, skipped where it
does not), for checkpoints of several families: the Qwen3-Next tiny model, scripted tiny Llama and Granite
checkpoints (tests/tiny_family_gen.py). Each start costs a few minutes on two cores: four in all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from waits import START_S, STOP_S
from hubfixtures import HubServer
from servectl.vllmenv.location import find_vllm_python

pytestmark = [pytest.mark.server, pytest.mark.slow]
SERVECTL = [sys.executable, "-m", "servectl"]


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    find_vllm_python()  # fails (not skips) without the vLLM CPU environment: scripts/test bootstraps it
    return Path(ensure_tiny_model(variant="scripted"))


@pytest.fixture()
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    e.update(XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"), HF_HOME=str(tmp_path / "hf"))
    return e


def sc(env, *args, timeout=START_S):
    return subprocess.run([*SERVECTL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def checks(doc) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["checks"]}


def test_up_directory_then_check(env, tiny_dir):
    """A checkpoint directory as MODEL: derived recipe (family Qwen3-Next: qwen3 reasoning, hermes tools; KV in
    bytes on CPU), started, checked by `up` and again by `servectl check` from another shell, benchmarked by name."""
    port = free_port()
    res = sc(env, "up", str(tiny_dir), "--gpu", "cpu", "--port", str(port), "--detach", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    up = json.loads(res.stdout)
    try:
        assert up["health_passed"] is True
        got = checks(up["health"])
        assert got["reasoning"] == "pass" and got["tools"] == "pass" and got["chat"] == "pass"
        assert up["kv_cache_tokens_reported"] == up["kv_cache_tokens_predicted"]  # the derived recipe is planned exactly
        again = sc(env, "check", up["endpoint"].removesuffix("/v1"), "--json", "--timeout", "600")
        assert again.returncode == 0, again.stderr
        doc = json.loads(again.stdout)
        assert doc["recipe"] == tiny_dir.name.lower() and checks(doc)["tools"] == "pass"
        # bench by deployment name, as for a curated recipe: the record names the recipe and the tokenizer
        out = Path(env["XDG_STATE_HOME"]) / "bench.json"
        bench = sc(
            env,
            "bench",
            up["name"],
            "--concurrency",
            "1",
            "--num-prompts",
            "2",
            "--input-len",
            "16",
            "--output-len",
            "8",
            "-o",
            str(out),
            timeout=600,
        )
        assert bench.returncode == 0, bench.stderr[-2000:]
        result = json.loads(out.read_text())
        assert result["recipe"] == tiny_dir.name.lower() and result["results"][0]["completed"] == 2
    finally:
        sc(env, "down", up["name"], timeout=STOP_S)


def test_up_repo_pulls_first_then_serves_from_the_cache(env, tiny_dir):
    """A hub repo as MODEL, from a server speaking the Hub's protocol: `up` pulls the files vLLM loads into the HF
    cache, then vLLM starts offline from it. The chat template of this copy has no tool calls, so the recipe sets
    no tool parser and `check` skips tools (it still checks reasoning)."""
    files = {p.name: p.read_bytes() for p in tiny_dir.iterdir() if p.is_file()}
    template = files["chat_template.jinja"].decode()
    files["chat_template.jinja"] = template.replace("<tool_call>", "<call>").replace("</tool_call>", "</call>").encode()
    files["pytorch_model.bin"] = b"\0" * 4096  # vLLM would not load it next to safetensors: never downloaded
    repo = "acme/tiny-thinker"
    with HubServer({repo: files}) as hub:
        port = free_port()
        res = sc({**env, "HF_ENDPOINT": hub.url}, "up", repo, "--gpu", "cpu", "--port", str(port), "--detach", "--json")
        assert res.returncode == 0, res.stderr[-3000:]
        up = json.loads(res.stdout)
        try:
            got = checks(up["health"])
            assert got["reasoning"] == "pass" and got["tools"] == "skipped" and up["health_passed"] is True
            snap = Path(env["HF_HOME"]) / "hub" / "models--acme--tiny-thinker" / "snapshots"
            assert list(snap.glob("*/model.safetensors")) and not list(snap.glob("*/pytorch_model.bin"))
            assert not [r for r in hub.requests if r[1].endswith("pytorch_model.bin") and r[0] == "GET"]
            # vLLM itself (through transformers) never asked the Hub: it started offline from the pulled cache
            assert not [a for a in hub.agents if "transformers" in a or "vllm" in a.lower()], hub.agents
            status = json.loads(sc(env, "status", "--json", timeout=STOP_S).stdout)
            dep = next(d for d in status["deployments"] if d["name"] == up["name"])
            assert dep["model"] == repo and dep["recipe"] == "tiny-thinker"
        finally:
            sc(env, "down", up["name"], timeout=STOP_S)


@pytest.mark.parametrize(
    "family,parsers",
    [
        ("llama", {"reasoning": "qwen3", "tool_call": "hermes"}),  # a Llama with a ChatML template: the template's rules
        ("granite", {"reasoning": None, "tool_call": "granite4"}),  # the Granite 4.0 family row
    ],
)
def test_up_family_checkpoint_then_check(env, family, parsers):
    from tiny_checkpoints import ensure_tiny_family

    path = ensure_tiny_family(family)
    shown = sc(env, "models", "show", str(path), "--json", timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["parsers"] == parsers
    res = sc(env, "up", str(path), "--gpu", "cpu", "--port", str(free_port()), "--detach", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    up = json.loads(res.stdout)
    try:
        got = checks(up["health"])
        assert up["health_passed"] is True and got["tools"] == "pass" and got["sanity"] == "pass"
        assert got["reasoning"] == ("pass" if parsers["reasoning"] else "skipped")
        assert up["kv_cache_tokens_reported"] == up["kv_cache_tokens_predicted"]
    finally:
        sc(env, "down", up["name"], timeout=STOP_S)
