"""The sampling-preset proxy in front of the real vLLM CPU server, driven by the real openai client.

vLLM runs with --enable-log-requests, so the SamplingParams it logs for each request prove which
values reached the engine.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import free_port
from waits import START_S, STOP_S, wait_for
from servectl.catalog.presets import select_presets
from servectl.proxy.app import ProxyThread

pytestmark = [pytest.mark.server, pytest.mark.slow]

PROXY_PORT = free_port()
AUTO_PROXY_PORT = free_port()
MESSAGES = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def vllm(tiny_server):
    """The run's shared tiny server: it logs each request with the SamplingParams that reached the engine."""
    return tiny_server


@pytest.fixture(scope="module")
def proxy(vllm):
    p = ProxyThread(vllm.url, "127.0.0.1", PROXY_PORT, vllm.model, select_presets("qwen3.5")).start()
    yield p
    p.stop()


@pytest.fixture()
def client(proxy):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


def logged_sampling(vllm, since: int, request_id: str | None = None) -> dict[str, str]:
    """key=value pairs of the SamplingParams(...) vLLM logged after byte offset `since`."""
    deadline = time.monotonic() + STOP_S
    while time.monotonic() < deadline:
        text = Path(vllm.log_path).read_bytes()[since:].decode(errors="replace")
        lines = [ln for ln in text.splitlines() if "SamplingParams(" in ln and (request_id is None or request_id in ln)]
        if lines:
            inner = lines[-1].split("SamplingParams(", 1)[1]
            return dict(re.findall(r"(\w+)=([^,()\[\]]+)", inner))
        time.sleep(0.1)
    raise AssertionError(f"no SamplingParams logged:\n{vllm.log_tail()}")


def log_size(vllm) -> int:
    return Path(vllm.log_path).stat().st_size


def test_models_through_the_proxy(client):
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == "tiny-cpu" and "tiny-cpu-thinking-coding" in ids and len(ids) == 5


@pytest.mark.parametrize(
    "preset, expected",
    [
        (
            "thinking-coding",
            {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0, "presence_penalty": 0.0, "repetition_penalty": 1.0},
        ),
        (
            "instruct-reasoning",
            {"temperature": 1.0, "top_p": 1.0, "top_k": 40, "min_p": 0.0, "presence_penalty": 2.0, "repetition_penalty": 1.0},
        ),
    ],
)
def test_vllm_logs_the_presets_sampling_params(vllm, client, preset, expected):
    since = log_size(vllm)
    resp = client.chat.completions.create(model=f"tiny-cpu-{preset}", messages=MESSAGES, max_tokens=8)
    assert resp.model == "tiny-cpu"
    logged = logged_sampling(vllm, since)
    for key, value in expected.items():
        assert float(logged[key]) == pytest.approx(value), (key, logged)


def test_completions_endpoint_gets_the_preset(vllm, client):
    since = log_size(vllm)
    client.completions.create(model="tiny-cpu-instruct-general", prompt="Hello", max_tokens=4)
    logged = logged_sampling(vllm, since)
    assert (float(logged["temperature"]), float(logged["top_p"]), int(logged["top_k"]), float(logged["presence_penalty"])) == (
        0.7,
        0.8,
        20,
        1.5,
    )


def test_real_name_is_not_given_a_preset(vllm, client):
    since = log_size(vllm)
    client.chat.completions.create(model="tiny-cpu", messages=MESSAGES, max_tokens=4, temperature=0.33)
    logged = logged_sampling(vllm, since)
    assert float(logged["temperature"]) == pytest.approx(0.33)


def _reasoning(msg) -> str | None:
    extra = msg.model_extra or {}
    return extra.get("reasoning") or extra.get("reasoning_content")


def test_thinking_and_instruct_presets_switch_the_chat_template(client):
    # greedy-like: the scripted model follows its script whatever the sampling; ask for enough tokens
    thinking = (
        client.chat.completions.create(
            model="tiny-cpu-thinking-coding", messages=MESSAGES, max_tokens=200, extra_body={"top_k": 1}
        )
        .choices[0]
        .message
    )
    instruct = (
        client.chat.completions.create(
            model="tiny-cpu-instruct-general", messages=MESSAGES, max_tokens=200, extra_body={"top_k": 1}
        )
        .choices[0]
        .message
    )
    assert _reasoning(thinking), thinking
    assert "user asked" in _reasoning(thinking)
    assert instruct.content and "tiny test model" in instruct.content
    assert not _reasoning(instruct), instruct


def test_streaming_arrives_as_several_chunks_in_order(client):
    stream = client.chat.completions.create(
        model="tiny-cpu-instruct-general", messages=MESSAGES, max_tokens=40, stream=True, extra_body={"top_k": 1}
    )
    pieces, stamps = [], []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            stamps.append(time.monotonic())
    assert len(pieces) >= 5
    text = "".join(pieces)
    assert text.startswith("I am a tiny test model")
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]  # arrived over time, not in one read


def test_auto_preset_from_reasoning_effort_reaches_the_engine(vllm):
    """`--presets auto`: the real model name with reasoning_effort "none" gets instruct-general."""
    p = ProxyThread(vllm.url, "127.0.0.1", AUTO_PROXY_PORT, vllm.model, select_presets("qwen3.5"), auto=True).start()
    try:
        client = openai.OpenAI(base_url=p.url + "/v1", api_key="unused", max_retries=0)
        since = log_size(vllm)
        raw = client.chat.completions.with_raw_response.create(
            model="tiny-cpu", messages=MESSAGES, max_tokens=200, reasoning_effort="none"
        )
        msg = raw.parse().choices[0].message
    finally:
        p.stop()
    assert raw.headers["x-servectl-proxy"].startswith("preset=instruct-general; by=auto; ms=")
    logged = logged_sampling(vllm, since)
    assert (float(logged["temperature"]), float(logged["top_p"]), int(logged["top_k"]), float(logged["presence_penalty"])) == (
        0.7,
        0.8,
        20,
        1.5,
    )
    assert msg.content and "tiny test model" in msg.content and not _reasoning(msg)  # thinking off reached the template


def running_requests(vllm) -> float:
    text = httpx.get(vllm.url + "/metrics").text
    values = [float(m) for m in re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.e+-]+)$", text, re.M)]
    return sum(values)


def test_client_disconnect_mid_stream_aborts_upstream(vllm, proxy):
    """The request is held in vLLM whatever the host's speed: its engine processes are stopped
    (SIGSTOP) before the request is sent, so not one token can be generated while the client holds
    the stream and hangs up; they resume afterwards and must find the request aborted."""
    import psutil

    since = log_size(vllm)
    body = {"model": "tiny-cpu-thinking-general", "messages": MESSAGES, "stream": True, "max_tokens": 64, "ignore_eos": True}
    engine = psutil.Process(vllm.proc.pid).children(recursive=True)  # EngineCore (and its helpers); not the API server
    assert engine
    for p in engine:
        p.suspend()
    try:
        with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body, timeout=STOP_S) as r:
            assert r.status_code == 200
            # vLLM's API server has the request (it logs it) and the engine cannot have run it
            deadline = time.monotonic() + STOP_S
            while time.monotonic() < deadline and "Received request" not in log_text(vllm, since):
                time.sleep(0.1)
            assert "Received request" in log_text(vllm, since)
        # the client is gone: the proxy drops its upstream stream and vLLM's API server aborts the request, which
        # it logs without the engine (a fixed pause here raced both on a busy machine)
        wait_for(lambda: re.search(r"abort", log_text(vllm, since), re.I))
    finally:
        for p in engine:
            p.resume()
    deadline = time.monotonic() + STOP_S
    while time.monotonic() < deadline and not re.search(r"abort", log_text(vllm, since), re.I):
        time.sleep(0.1)
    assert re.search(r"abort", log_text(vllm, since), re.I), log_text(vllm, since)[-2000:]
    while time.monotonic() < deadline and running_requests(vllm) > 0:
        time.sleep(0.1)
    assert running_requests(vllm) == 0


def log_text(vllm, since: int) -> str:
    return Path(vllm.log_path).read_bytes()[since:].decode(errors="replace")


def test_up_with_proxy_serves_the_presets_and_stops_on_ctrl_c(tmp_path, tiny_model):
    """`servectl up tiny-cpu --with-proxy`: the proxy comes up beside the server; Ctrl-C ends both."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    port, proxy_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servectl",
            "up",
            "tiny-cpu",
            "--model-path",
            str(tiny_model),
            "--port",
            str(port),
            "--with-proxy",
            "--proxy-port",
            str(proxy_port),
            "--no-check",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_S
        ids: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ids = [m["id"] for m in httpx.get(f"http://127.0.0.1:{proxy_port}/v1/models", timeout=2).json()["data"]]
                break
            except (httpx.TransportError, ValueError, KeyError):
                time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert "tiny-cpu-thinking-coding" in ids and "tiny-cpu" in ids
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="unused", max_retries=0)
        resp = client.chat.completions.create(
            model="tiny-cpu-instruct-general", messages=MESSAGES, max_tokens=40, extra_body={"top_k": 1}
        )
        assert resp.model == "tiny-cpu" and "tiny test model" in (resp.choices[0].message.content or "")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=STOP_S)
        assert proc.returncode == 130, err[-2000:]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{proxy_port}/v1/models", timeout=2)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if proc.poll() is None:  # a failed assertion: stop it the clean way, so vLLM goes too
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=STOP_S)
