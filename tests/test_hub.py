"""Hub repos as MODEL: the real huggingface_hub code path against a pre-populated HF cache in offline mode, and
against a small local server speaking the Hub's protocol (HF_ENDPOINT) for the online paths: gated, missing,
revision, no network, ranged header reads, pull with its skip list and disk check. No client is mocked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from hubfixtures import COMMIT, HubServer, checkpoint_files, populate_cache, qwen3_config, safetensors_bytes

SERVECTL = [sys.executable, "-m", "servectl"]
REPO = "acme/Qwen3-Tiny"


@pytest.fixture()
def env(tmp_path):
    """A private HF cache, servectl cache and config; no token, no endpoint from the caller's shell."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    e.update(
        HF_HOME=str(tmp_path / "hf"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        SERVECTL_HUB_TIMEOUT="30",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    return e


def hub_cache(env) -> "os.PathLike":
    from pathlib import Path

    return Path(env["HF_HOME"]) / "hub"


def sc(env, *args, timeout=180):
    return subprocess.run([*SERVECTL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(res) -> str:
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- offline, from the cache


def test_offline_cache_models_show_derives_from_real_hf_cache(env):
    files = checkpoint_files(generation={"temperature": 0.6, "top_p": 0.95, "top_k": 20, "do_sample": True})
    populate_cache(hub_cache(env), REPO, files)
    res = sc({**env, "HF_HUB_OFFLINE": "1"}, "models", "show", REPO, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["source"] == "repo" and doc["name"] == "qwen3-tiny" and doc["repo"] == REPO
    assert doc["parsers"] == {"reasoning": "qwen3", "tool_call": "hermes"}
    assert doc["sampling_defaults"] == {"temperature": 0.6, "top_p": 0.95, "top_k": 20.0}
    assert doc["derivation"]["commit"] == COMMIT
    # weights from the cached file's header: 256x64 + 64x64 + 64 bf16 values
    assert abs(doc["weights_gib"] * 2**30 - (256 * 64 + 64 * 64 + 64) * 2) < 8
    choices = {c["setting"]: c for c in doc["derivation"]["choices"]}
    assert "generation_config.json" in choices["sampling_defaults"]["reason"]
    assert set(doc["profiles"]) == {"rtx-5090", "rtx-pro-6000-blackwell", "dgx-spark", "rocm-4gpu"}
    assert "head size 16" in choices["profiles.cpu"]["reason"]  # the fixture's head: vLLM's CPU attention has no kernel for it


def test_offline_revision_by_branch_and_commit(env):
    populate_cache(hub_cache(env), REPO, checkpoint_files(), refs=("main", "v1"))
    for rev in ("v1", COMMIT):
        res = sc({**env, "HF_HUB_OFFLINE": "1"}, "models", "show", f"{REPO}@{rev}", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["revision"] == rev
    res = sc({**env, "HF_HUB_OFFLINE": "1"}, "render", f"{REPO}@v1", "--gpu", "rtx-5090")
    assert res.returncode == 0, res.stderr
    assert "--revision v1" in res.stdout and f"vllm serve {REPO} " in res.stdout


def test_offline_nothing_cached_is_one_line(env):
    res = sc({**env, "HF_HUB_OFFLINE": "1"}, "plan", "acme/Nothing-Here", "--gpu", "rtx-5090")
    assert res.returncode == 2
    line = one_line_error(res)
    assert "HF_HUB_OFFLINE" in line and "servectl pull acme/Nothing-Here" in line


def test_offline_config_cached_but_no_headers_is_one_line(env):
    files = checkpoint_files()
    del files["model.safetensors"]
    populate_cache(hub_cache(env), REPO, files)
    res = sc({**env, "HF_HUB_OFFLINE": "1"}, "models", "show", REPO)
    assert res.returncode == 2
    assert "safetensors headers" in one_line_error(res)


# --------------------------------------------------------------------------- online, a local server speaking the Hub's protocol


def test_online_headers_by_ranged_reads_then_offline_from_servectl_cache(env):
    weights = {"model.embed_tokens.weight": ("BF16", [4096, 64]), "model.norm.weight": ("BF16", [64])}
    files = checkpoint_files(weights=weights)
    with HubServer({REPO: files}) as hub:
        res = sc({**env, "HF_ENDPOINT": hub.url}, "models", "show", REPO, "--json")
        assert res.returncode == 0, res.stderr
        ranges = hub.bytes_sent_for("model.safetensors")
        # the header came by a ranged read; the weights (512 KiB here) were never fetched whole
        assert ranges and all(r and r.startswith("bytes=") for r in ranges)
        assert not (hub_cache(env) / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / "model.safetensors").exists()
    # the Hub is gone now: the cached config and servectl's header cache still answer, offline
    res = sc({**env, "HF_HUB_OFFLINE": "1"}, "plan", REPO, "--gpu", "rtx-5090", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["max_model_len"] == 40960


def test_online_gated_repo_is_one_line(env):
    with HubServer({REPO: checkpoint_files()}, gated={REPO}) as hub:
        res = sc({**env, "HF_ENDPOINT": hub.url}, "models", "show", REPO)
        assert res.returncode == 2
        line = one_line_error(res)
        assert "gated" in line and "HF_TOKEN" in line and hub.url in line
        res = sc({**env, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "x" * 30}, "models", "show", REPO)
        line = one_line_error(res)
        assert "the token in HF_TOKEN has no access" in line and "x" * 30 not in res.stderr + res.stdout


def test_online_missing_repo_and_revision_are_one_line(env):
    with HubServer({REPO: checkpoint_files()}) as hub:
        res = sc({**env, "HF_ENDPOINT": hub.url}, "render", "acme/No-Such-Model", "--gpu", "cpu")
        assert res.returncode == 2
        assert "no model repo acme/No-Such-Model" in one_line_error(res)
        res = sc({**env, "HF_ENDPOINT": hub.url}, "models", "show", f"{REPO}@nope")
        assert res.returncode == 2
        assert "has no revision 'nope'" in one_line_error(res)


def test_no_network_and_no_cache_is_one_line(env):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    res = sc({**env, "HF_ENDPOINT": dead}, "models", "show", REPO)
    assert res.returncode == 1
    line = one_line_error(res)
    assert "cannot reach" in line and dead in line


def test_pull_downloads_what_vllm_loads_and_skips_the_rest(env):
    shard = {"model.embed_tokens.weight": ("BF16", [256, 64])}
    files = checkpoint_files(
        extra={
            "model.safetensors.index.json": json.dumps(
                {"weight_map": {"model.embed_tokens.weight": "model.safetensors"}}
            ).encode(),
            "consolidated.safetensors": safetensors_bytes(shard),  # a duplicate the index does not name
            "pytorch_model.bin": b"\0" * 1000,
            "original/consolidated.00.pth": b"\0" * 1000,
            "tokenizer.json": b"{}",
        }
    )
    with HubServer({REPO: files}) as hub:
        dry = sc({**env, "HF_ENDPOINT": hub.url}, "pull", REPO, "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert set(plan["skipped"]) == {"consolidated.safetensors", "pytorch_model.bin", "original/consolidated.00.pth"}
        assert {"config.json", "model.safetensors", "tokenizer.json", "model.safetensors.index.json"} <= set(plan["files"])
        res = sc({**env, "HF_ENDPOINT": hub.url}, "pull", REPO, "--json")
        assert res.returncode == 0, res.stderr
        snap = json.loads(res.stdout)["snapshot"]
        from pathlib import Path

        assert (Path(snap) / "model.safetensors").read_bytes() == files["model.safetensors"]
        assert not (Path(snap) / "pytorch_model.bin").exists() and not (Path(snap) / "original").exists()
        again = json.loads(sc({**env, "HF_ENDPOINT": hub.url}, "pull", REPO, "--dry-run", "--json").stdout)
        assert again["to_fetch_bytes"] == 0 and again["cached_bytes"] == again["total_bytes"]


def test_pull_refuses_when_the_disk_is_too_small(env, tmp_path):
    """The pre-flight compares with the free space of the filesystem holding the cache: a repo whose declared
    weights exceed it is refused before a byte is written."""
    import shutil

    free = shutil.disk_usage(tmp_path).free
    big = {"model.embed_tokens.weight": ("U8", [1])}
    files = checkpoint_files(weights=big)

    class Sized(dict):
        pass

    with HubServer({REPO: files}) as hub:
        # the tree listing says how large each file is; make the weights larger than the disk
        original = hub.httpd.RequestHandlerClass._tree

        def big_tree(self, repo, rev):
            body = json.dumps(
                [
                    {
                        "type": "file",
                        "path": p,
                        "size": (free + (2 << 30)) if p.endswith(".safetensors") else len(d),
                        "oid": "0" * 40,
                    }
                    for p, d in sorted(files.items())
                ]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        hub.httpd.RequestHandlerClass._tree = big_tree
        try:
            res = sc({**env, "HF_ENDPOINT": hub.url}, "pull", REPO)
        finally:
            hub.httpd.RequestHandlerClass._tree = original
        assert res.returncode == 1
        assert "GB more in" in one_line_error(res)
        assert not [r for r in hub.requests if r[0] == "GET" and r[1].endswith("model.safetensors") and r[2] is None]


def test_hub_timeout_is_a_total_deadline(env):
    """A server that accepts the connection and never answers: the one-line refusal comes after the deadline."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"
        res = sc({**env, "HF_ENDPOINT": url, "SERVECTL_HUB_TIMEOUT": "3"}, "models", "show", REPO, timeout=120)
        assert res.returncode == 1
        line = one_line_error(res)
        assert "did not answer within 3 s" in line or "cannot reach" in line
    finally:
        srv.close()


def test_config_json_too_large_is_refused(env):
    files = checkpoint_files()
    files["config.json"] = b'{"a": "' + b"x" * (5 << 20) + b'"}'
    populate_cache(hub_cache(env), REPO, files)
    res = sc({**env, "HF_HUB_OFFLINE": "1"}, "models", "show", REPO)
    assert res.returncode == 2
    assert "larger than 4 MiB" in one_line_error(res)


def test_qwen3_config_helper_is_public_shape():
    assert qwen3_config()["model_type"] == "qwen3"
