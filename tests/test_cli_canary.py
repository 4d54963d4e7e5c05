"""One way out for text: a canary secret and terminal escape sequences fed through every command (arguments,
environment, files, deployment records, logs, server replies) appear in no output and no written file.

The canary travels as an environment variable's value (HF_TOKEN, an --api-key-env variable with a carriage
return in it), as URL credentials, as the value of vLLM's secret options however argparse accepts them
(`--api-key`, `--api_key=`, the abbreviation `--api-ke`, `--hf-token`), in vLLM's own log line of its
non-default args, and in a bench result file. The escapes (a screen clear, a title change, an 8-bit CSI, a
bidi override) travel in names, values, GPU names, log lines and a server's replies. Every run's stdout,
stderr and every file it wrote are searched for the canary and for any control character other than a
newline or a tab.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from servectl.cli import main
from servectl.console import has_raw_control
from servectl.launch import ownership, state

CANARY = "c4n4ry" + secrets.token_hex(8)
ESC = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"
SECRET_ENV = {"HF_TOKEN": CANARY, "SERVECTL_CANARY_API_KEY": CANARY + "\r", "SOME_PASSWORD": CANARY}


class Hostile(BaseHTTPRequestHandler):
    """An OpenAI-shaped server whose every reply carries escapes (and one echoes what it was sent)."""

    def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, b"")
        elif self.path == "/v1/models":
            self._send(200, json.dumps({"data": [{"id": f"m{ESC}", "root": f"/models/{ESC}", "max_model_len": 64}]}).encode())
        elif self.path == "/metrics":
            self._send(200, f'vllm:kv_cache_usage_perc{{model_name="{ESC}"}} 0.5\n'.encode(), "text/plain")
        else:
            self._send(404, json.dumps({"error": {"message": f"no {self.path} {ESC}"}}).encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        reply = {
            "choices": [{"message": {"role": "assistant", "content": f"hello {ESC} {self.headers.get('Authorization')}"}}],
            "usage": {"completion_tokens": 3},
        }
        self._send(200, json.dumps(reply).encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hostile_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture()
def tree(tmp_path, monkeypatch):
    for var in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("SERVECTL_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    log = (
        f"# servectl: vllm serve /m --api-key {CANARY} --served-model-name {ESC}\n"
        f"(APIServer pid=1) INFO 01-01 00:00:00 [utils.py:1] non-default args: {{'api_key': ['{CANARY}'], 'hf_token': '{CANARY}'}}\n"
        f"ERROR 01-01 00:00:01 [core.py:1] token {CANARY} {ESC}\n"
        f"ValueError: bad value {ESC} Authorization: Bearer {CANARY} http://user:{CANARY}@host/x\n"
    )
    (inputs / "vllm.log").write_text(log)
    (inputs / "gpus.csv").write_text(
        f"name, memory.total [MiB], memory.free [MiB], driver_version\n"
        f"NVIDIA {ESC} GeForce RTX 5090, 32607 MiB, 30000 MiB, 575.51\n"
    )
    result = {
        "format": 1,
        "model": f"m{ESC}",
        "flags": ["--api-key", CANARY],
        "results": [{"concurrency": 1, "request_throughput": 1.0, "output_throughput": 2.0, "ttft_ms": {"p50": 1, "p99": 2}}],
    }
    (inputs / "a.json").write_text(json.dumps(result))
    (inputs / "config.yaml").write_text(f'presets:\n  "p{ESC}": {{temperature: 0.5}}\n')
    monkeypatch.setenv("SERVECTL_CONFIG", str(inputs / "config.yaml"))
    # a deployment record and log carrying both, as a damaged or planted one could
    mark = ownership.new_marker("dep")
    state.deployments_dir().mkdir(parents=True)
    state.logs_dir().mkdir(parents=True)
    dep_log = state.logs_dir() / "dep-20260101-000000.log"
    dep_log.write_text(log)
    (state.deployments_dir() / "dep.json").write_text(
        json.dumps(
            {
                "name": "dep",
                "runtime": "local",
                "recipe": f"r{ESC}",
                "profile": "cpu",
                "model": f"/m/{ESC}{CANARY}",
                "served_model_name": f"s{ESC}",
                "host": "127.0.0.1",
                "port": 8000,
                "pid": None,
                "create_time": None,
                "marker": mark,
                "log_path": str(dep_log),
                "argv": ["vllm", "--api-key", CANARY],
                "started_at": time.time(),
                "owner_pid": os.getpid(),
                "owner_create_time": None,
            }
        )
    )
    return tmp_path


def commands(inputs: Path, url: str) -> list[list[str]]:
    creds = f"http://user:{CANARY}@{url.removeprefix('http://')}"
    log = str(inputs / "vllm.log")
    return [
        ["diagnose", log],
        ["diagnose", log, "--json"],
        ["diagnose", log, "--model", ESC + CANARY],
        ["gpus", "--from", str(inputs / "gpus.csv")],
        ["gpus", "--from", str(inputs / "gpus.csv"), "--json"],
        ["calibrate", "tiny-cpu", "--gpu", "cpu", "--log", log],
        ["bench", "compare", str(inputs / "a.json"), str(inputs / "a.json")],
        ["bench", "compare", str(inputs / "a.json"), str(inputs / "a.json"), "--json"],
        ["check", url],
        ["check", url, "--json"],
        ["check", creds, "--json"],
        ["check", url, "--api-key-env", "SERVECTL_CANARY_API_KEY"],
        ["check", url, "--model", ESC + CANARY, "--level", "full", "--max-num-seqs", "1"],
        ["check", creds + ESC],
        ["render", "tiny-cpu", "--gpu", "cpu", "--", "--api-ke", CANARY],
        ["render", "tiny-cpu", "--gpu", "cpu", "--", f"--api_key={CANARY}"],
        ["render", "tiny-cpu", "--gpu", "cpu", "--", "--hf-token", CANARY],
        ["render", "tiny-cpu", "--gpu", "cpu", "--", "--served-model-name", ESC],
        ["render", "tiny-cpu", "--gpu", "cpu", "--name", ESC],
        ["render", "tiny-cpu", "--gpu", "cpu", "--format", "compose", "-o", "out", "--", "--chat-template", f"x {CANARY}"],
        ["plan", "tiny-cpu", "--gpu", "cpu", "--api-key", CANARY],
        ["plan", "tiny-cpu", "--gpu", "cpu", "--json", "--api-ke", CANARY],
        ["plan", ESC + CANARY],
        ["plan", "tiny-cpu", "--gpu", ESC],
        ["up", "tiny-cpu", "--python", "/nonexistent/python", "--", "--api-key", CANARY],
        ["up", "tiny-cpu", "--python", f"/nonexistent/{ESC}{CANARY}"],
        ["status"],
        ["status", "--json"],
        ["logs", "dep"],
        ["logs", "dep", "-n", "2"],
        ["proxy", "--backend", f"http://user:{CANARY}@127.0.0.1:1"],
        ["proxy", "--backend", ESC],
        ["presets", "list"],
        ["presets", "list", "--json"],
        ["profiles", "show", ESC + CANARY],
        ["models", "show", ESC + CANARY],
        ["patch", "check", "--site-packages", f"/nonexistent/{ESC}"],
        ["down", "dep"],
        ["down", "--all"],
    ]


def written(root: Path) -> dict[Path, str]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and "inputs" not in p.parts and p.suffix not in (".pickle", ".lock"):
            out[p] = p.read_bytes().decode("utf-8", "replace")
    return out


def test_no_canary_and_no_control_character_reaches_any_output_or_file(tree, hostile_url):
    runner = CliRunner()
    before = written(tree)
    seen = 0
    for argv in commands(tree / "inputs", hostile_url):
        result = runner.invoke(main, argv, catch_exceptions=True)
        shown = f"servectl {' '.join(map(repr, argv))} -> exit {result.exit_code}"
        assert result.exit_code in (0, 1, 2) and "Traceback" not in result.output, shown + "\n" + result.output[-1500:]
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            assert CANARY not in text, f"{shown}: the canary in {stream}:\n{text[-1500:]}"
            assert not has_raw_control(text), f"{shown}: a raw control character in {stream}: {text[-600:]!r}"
        for path, text in written(tree).items():
            if before.get(path) == text:
                continue
            assert CANARY not in text, f"{shown}: the canary in {path}"
            assert not has_raw_control(text), f"{shown}: a raw control character in {path}"
        before = written(tree)
        seen += 1
    assert seen == len(commands(tree / "inputs", hostile_url))


def test_redaction_covers_every_spelling_of_a_secret():
    from servectl.redact import redact, redact_argv

    for text in [
        f"--api-key {CANARY}",
        f"--api_key={CANARY}",
        f"--api-ke {CANARY}",
        f"--hf-token {CANARY}",
        f"vllm serve m --api-key a {CANARY} --port 1",
        f"{{'api_key': ['{CANARY}']}}",
        f'"hf_token": "{CANARY}"',
        f"http://u:{CANARY}@h",
        f"Authorization: Bearer {CANARY}",
        f"X-Api-Key: {CANARY}",
        f"VLLM_API_KEY={CANARY}",
        f"the token {CANARY} leaked",
    ]:
        assert CANARY not in redact(text), text
    assert CANARY not in " ".join(redact_argv(["vllm", "--api-ke", CANARY, "--x", f"--hf_token={CANARY}"]))
    # ordinary flags keep their values
    assert (
        redact("--max-num-batched-tokens 8192 --tokenizer t --api-server-count 2")
        == "--max-num-batched-tokens 8192 --tokenizer t --api-server-count 2"
    )


def test_plain_escapes_every_control_character_and_keeps_text():
    from servectl.console import plain, plain_block

    raw = "a\x1b[2J\x07\x9b\x7f\u202e\u2028b\té中🙂\n"
    assert plain(raw) == "a\\x1b[2J\\x07\\x9b\\x7f\\u202e\\u2028b\\té中🙂\\n"
    assert plain_block(raw) == "a\\x1b[2J\\x07\\x9b\\x7f\\u202e\\u2028b\té中🙂\n"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", plain_block(raw))
