"""Each CPU-reproducible diagnosis rule on a real failed start of the vLLM CPU build.

vLLM is started once per mistake (tests/vllm_failing_starts.py: vLLM's own `vllm serve` entry point, forked from
one interpreter that imported vLLM once, one start at a time) and `servectl diagnose --json` reads each real log.
Most cases fail in seconds (argument parsing, config validation); the KV cache cases start the engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import free_port
from waits import START_S
from servectl.verify.diagnose import log_lines

pytestmark = [pytest.mark.server, pytest.mark.slow]

HERE = Path(__file__).parent


def _variant(base: Path, root: Path, name: str, **changes) -> str:
    """A copy of the tiny model whose config.json differs (an unknown architecture, custom code, a quantization)."""
    out = root / name
    shutil.copytree(base, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(changes)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return str(out)


# name -> (extra flags, extra env, model variant or None); every start also gets the base flags below.
CASES: dict[str, tuple[list[str], dict[str, str], str | None]] = {
    "tool-parser-unknown": (["--enable-auto-tool-choice", "--tool-call-parser", "nosuch"], {}, None),
    "reasoning-parser-unknown": (["--reasoning-parser", "nosuch"], {}, None),
    "auto-tool-choice-without-parser": (["--enable-auto-tool-choice"], {}, None),
    "log-outputs-without-log-requests": (["--enable-log-outputs"], {}, None),
    "batched-below-max-model-len": (["--max-num-batched-tokens", "512", "--no-enable-chunked-prefill"], {}, None),
    "batched-below-max-num-seqs": (["--max-num-batched-tokens", "64", "--max-num-seqs", "128"], {}, None),
    "tp-not-dividing-heads": (["--tensor-parallel-size", "3"], {}, None),
    "max-model-len-above-derived": (["--max-model-len", "100000"], {}, None),
    "model-dir-missing": ([], {}, "/nonexistent/models/tiny"),
    "chat-template-missing": (["--chat-template", "/nonexistent/template.jinja"], {}, None),
    "port-in-use": ([], {}, None),
    "host-not-local": (["--host", "10.255.255.1"], {}, None),
    "unknown-flag": (["--no-such-flag", "3"], {}, None),
    "invalid-choice": (["--kv-cache-dtype", "fp7"], {}, None),
    "speculative-config-not-json": (["--speculative-config", "{bad"], {}, None),
    "quantization-not-in-checkpoint": (["--quantization", "awq"], {}, None),
    "quantization-contradicts-checkpoint": (["--quantization", "awq"], {}, "gptq"),
    "gpu-memory-utilization-above-one": (["--gpu-memory-utilization", "1.5"], {}, None),
    "max-num-seqs-zero": (["--max-num-seqs", "0"], {}, None),
    "lora-cpu-loras-below-loras": (["--enable-lora", "--max-loras", "4", "--max-cpu-loras", "2"], {}, None),
    "offline-repo-not-cached": ([], {}, "Qwen/Qwen3-0.6B"),
    "architecture-unknown": ([], {}, "unknown-arch"),
    "model-type-unknown": ([], {}, "unknown-type"),
    "custom-code-needs-trust": ([], {}, "custom-code"),
    "tokenizer-dir-missing": (["--tokenizer", "/nonexistent/tokenizer"], {}, None),
    "model-dir-without-config": ([], {}, "empty"),
    "speculative-ngram-without-tokens": (["--speculative-config", '{"method": "ngram"}'], {}, None),
    "structured-outputs-unknown-backend": (["--structured-outputs-config", '{"backend": "nosuch"}'], {}, None),
    "max-model-len-not-a-number": (["--max-model-len", "lots"], {}, None),
    # these two start the engine (about a minute each: the engine and worker processes are spawned, as vLLM does)
    "kv-cache-below-one-block": (["--kv-cache-memory-bytes", "1k"], {}, None),
    "kv-cache-below-context": (
        ["--kv-cache-memory-bytes", "32M", "--max-model-len", "500000"],
        {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"},
        None,
    ),
}


@pytest.fixture(scope="module")
def starts(tmp_path_factory):
    """Every case's real failed start: name -> (log path, exit code, the start's port and argv)."""
    from servectl.vllmenv.tinymodel import ensure_tiny_model
    from servectl.vllmenv.location import find_vllm_python

    python = find_vllm_python()
    tiny = Path(ensure_tiny_model("scripted"))
    root = tmp_path_factory.mktemp("failed-starts")
    variants = {
        "gptq": _variant(
            tiny,
            root,
            "gptq",
            quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True},
        ),
        "unknown-arch": _variant(tiny, root, "unknown-arch", architectures=["NoSuchModelForCausalLM"]),
        "unknown-type": _variant(tiny, root, "unknown-type", model_type="no_such_type"),
        "empty": str(root / "empty"),
        "custom-code": _variant(
            tiny,
            root,
            "custom-code",
            model_type="tiny_custom",
            architectures=["TinyForCausalLM"],
            auto_map={"AutoConfig": "configuration_tiny.TinyConfig", "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"},
        ),
    }
    (root / "empty").mkdir()
    busy = socket.socket()  # held for the whole run: the port-in-use case starts on it
    busy.bind(("127.0.0.1", free_port()))
    busy.listen()
    port = free_port()
    env = {"VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cases, meta = [], {}
    for name, (flags, extra_env, model) in CASES.items():
        model = variants.get(model, model) if model else str(tiny)
        p = busy.getsockname()[1] if name == "port-in-use" else port
        base = [
            "--enforce-eager",
            "--dtype",
            "bfloat16",
            "--kv-cache-memory-bytes",
            "64M",
            "--max-model-len",
            "2048",
            "--host",
            "127.0.0.1",
            "--port",
            str(p),
        ]
        argv = ["serve", model, *_without(base, flags), *flags]
        log = root / f"{name}.log"
        cases.append({"name": name, "argv": argv, "env": {**env, **extra_env}, "log": str(log), "timeout": START_S})
        meta[name] = {"log": log, "port": p, "argv": argv}
    try:
        res = subprocess.run(
            [str(python), str(HERE / "vllm_failing_starts.py")],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            timeout=3600,
            env={**os.environ, **env},
        )
    finally:
        busy.close()
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    for name, r in results.items():
        meta[name].update(r)
    return meta


def _without(base: list[str], flags: list[str]) -> list[str]:
    """Base flags minus those the case sets itself (a flag and its value)."""
    out, skip = [], False
    for i, tok in enumerate(base):
        if skip:
            skip = False
            continue
        if tok in flags:
            skip = i + 1 < len(base) and not base[i + 1].startswith("--")
            continue
        out.append(tok)
    return out


def diagnose_json(log: Path, *args: str) -> tuple[int, dict]:
    """`servectl diagnose LOG --json` (in-process)."""
    from click.testing import CliRunner

    from servectl.cli import main

    res = CliRunner().invoke(main, ["diagnose", str(log), "--json", *args])
    return res.exit_code, json.loads(res.output)


def _model_config() -> dict:
    from servectl.vllmenv.tinymodel import ensure_tiny_model

    return json.loads((Path(ensure_tiny_model("scripted")) / "config.json").read_text())


def _recipe_parsers():
    from servectl.catalog.load import load_catalog

    return load_catalog().model("tiny-cpu").parsers


def _listed(log_text: str, name: str) -> bool:
    return re.search(rf"[\s{{,']{re.escape(name)}[\s,}}']", log_text) is not None


# name -> (rule, fix or a function of (log text, start) giving the expected fix)
EXPECTED = {
    "tool-parser-unknown": ("tool-call-parser-unknown", lambda t, s: [f"--tool-call-parser {_recipe_parsers().tool_call}"]),
    "reasoning-parser-unknown": ("reasoning-parser-unknown", lambda t, s: [f"--reasoning-parser {_recipe_parsers().reasoning}"]),
    "auto-tool-choice-without-parser": (
        "auto-tool-choice-without-parser",
        lambda t, s: [f"--tool-call-parser {_recipe_parsers().tool_call}"],
    ),
    "log-outputs-without-log-requests": ("log-outputs-without-log-requests", ["--enable-log-requests"]),
    "batched-below-max-model-len": ("batched-tokens-below-max-model-len", ["--max-num-batched-tokens 2048"]),
    "batched-below-max-num-seqs": ("batched-tokens-below-max-num-seqs", ["--max-num-batched-tokens 2048"]),
    # the largest tensor-parallel size at most 3 dividing the model's heads
    "tp-not-dividing-heads": (
        "tensor-parallel-not-dividing-heads",
        lambda t, s: [f"--tensor-parallel-size {max(d for d in (1, 2, 3) if _model_config()['num_attention_heads'] % d == 0)}"],
    ),
    "max-model-len-above-derived": (
        "max-model-len-above-derived",
        lambda t, s: [f"--max-model-len {_model_config()['max_position_embeddings']}"],
    ),
    "model-dir-missing": ("model-path-missing", []),
    "chat-template-missing": ("chat-template-missing", []),
    "port-in-use": ("port-in-use", None),
    "host-not-local": ("host-not-local", ["--host 127.0.0.1"]),
    "unknown-flag": ("argument-unrecognized", []),
    "invalid-choice": ("argument-invalid-choice", ["--kv-cache-dtype fp8"]),
    "speculative-config-not-json": ("config-json-invalid", []),
    "quantization-not-in-checkpoint": ("quantization-config-missing", []),
    "quantization-contradicts-checkpoint": ("quantization-method-mismatch", ["--quantization gptq"]),
    "gpu-memory-utilization-above-one": ("gpu-memory-utilization-above-one", ["--gpu-memory-utilization 0.9"]),
    "max-num-seqs-zero": ("pydantic-bound", ["--max-num-seqs 1"]),
    "lora-cpu-loras-below-loras": ("lora-max-cpu-loras-below-max-loras", ["--max-cpu-loras 4"]),
    "offline-repo-not-cached": ("hf-offline-not-cached", ["HF_HUB_OFFLINE=0"]),
    "architecture-unknown": ("architecture-not-supported", []),
    "model-type-unknown": ("model-type-unknown-to-transformers", []),
    "custom-code-needs-trust": ("trust-remote-code", ["--trust-remote-code"]),
    "tokenizer-dir-missing": ("model-path-missing", []),
    "model-dir-without-config": ("model-path-missing", []),
    "speculative-ngram-without-tokens": ("speculative-tokens-missing", []),
    # no listed backend is close to "nosuch": the first one listed (vLLM's default)
    "max-model-len-not-a-number": ("argument-invalid-value", []),
    "structured-outputs-unknown-backend": ("pydantic-literal", ["--structured-outputs-config.backend auto"]),
    "kv-cache-below-one-block": ("kv-cache-explicit-no-blocks", None),
    "kv-cache-below-context": ("kv-cache-explicit-too-small-for-context", None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_live_failed_start_is_diagnosed(starts, name):
    start = starts[name]
    assert not start["timed_out"] and start["rc"] not in (0, None), f"{name}: vLLM did not fail: {start}"
    text = start["log"].read_bytes().decode(errors="replace")  # as written: no newline translation of its \r
    # vLLM rejects --enable-auto-tool-choice before it logs the model: the recipe is named, as `servectl up` knows it
    code, out = diagnose_json(start["log"], *(["--model", "tiny-cpu"] if name == "auto-tool-choice-without-parser" else []))
    assert set(out) == {"cause", "remedy", "fix", "evidence", "rule", "root_error"}
    rule, fix = EXPECTED[name]
    assert code == 0 and out["rule"] == rule, (name, out, text[-2000:])
    # the root error is the failing process's own exception line, never a wrapper
    root = out["root_error"]
    lines = log_lines(text)  # numbered as a pager numbers them (newlines; a progress bar's last rewrite)
    # the message as printed on that line (pydantic's constraint errors are rebuilt as "Config.field: constraint")
    pieces = [p.strip() for p in re.split(r"[;(]|: ", root["message"]) if len(p.strip()) > 12]
    assert any(p[:60] in lines[root["line"] - 1] for p in pieces), (root, lines[root["line"] - 1])
    assert "Engine core initialization failed" not in root["message"]
    assert out["evidence"]["text"] == lines[out["evidence"]["line"] - 1].strip()[:500]
    if callable(fix):
        fix = fix(text, start)
    if fix is not None:
        assert out["fix"] == fix
    if name == "tool-parser-unknown":  # the parser chosen is one the message listed
        assert _listed(root["message"], out["fix"][0].split()[-1])


def test_without_the_model_no_parser_is_guessed(starts):
    code, out = diagnose_json(starts["auto-tool-choice-without-parser"]["log"])
    assert code == 0 and out["rule"] == "auto-tool-choice-without-parser" and out["fix"] == []


def test_port_fix_is_a_free_port_near_the_busy_one(starts):
    start = starts["port-in-use"]
    code, out = diagnose_json(start["log"])
    new = int(out["fix"][0].split()[-1])
    assert out["fix"][0].startswith("--port ") and new != start["port"] and 0 < new - start["port"] < 50
    assert f"port {start['port']} is already in use" in out["cause"]


def test_kv_fix_holds_the_requested_context(starts):
    """The explicit KV size: vLLM's own figure of what the context needs (rounded up), not --gpu-memory-utilization."""
    text = starts["kv-cache-below-context"]["log"].read_text(errors="replace")
    need = float(re.search(r"\(([0-9.]+) GiB KV cache is needed", text).group(1))
    _, out = diagnose_json(starts["kv-cache-below-context"]["log"])
    (flag,) = out["fix"]
    assert flag.startswith("--kv-cache-memory-bytes ") and flag.endswith("M")
    assert int(flag.split()[-1][:-1]) >= need * 1024 and "gpu-memory-utilization" not in " ".join(out["fix"])
    _, small = diagnose_json(starts["kv-cache-below-one-block"]["log"])
    assert small["fix"][0].startswith("--kv-cache-memory-bytes ")
