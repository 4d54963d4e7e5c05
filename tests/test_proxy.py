"""The sampling-preset proxy against a small real HTTP backend on a loopback port (no mocks).

The backend echoes what reached it (method, path, query, headers, body), streams numbered SSE
chunks, fails on demand, and records when a streaming client went away.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time

import anyio
import httpx
import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from conftest import free_port
from servectl.catalog.presets import load_presets, select_presets
from servectl.proxy.app import ProxyThread, apply_preset
from servectl.proxy.auto import choose, split_auto

BACKEND_PORT = free_port()
PROXY_PORT = free_port()
CLIENT_WINS_PORT = free_port()
UNREACHABLE_PORT = free_port()
SHUTDOWN_PORT = free_port()
ONE_ANSWER_PORT = free_port()
AUTO_PORT = free_port()
SERVED = "tiny-cpu"


# --------------------------------------------------------------------------- the real local backend


class BackendState:
    def __init__(self):
        self.stream_closed = threading.Event()
        self.chunks_sent = 0
        self.hold_disconnected = threading.Event()


STATE = BackendState()


async def echo(request: Request):
    body = await request.body()
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": {k: v for k, v in request.headers.items()},
            "body": body.decode(errors="replace"),
            "json": parsed,
        },
        headers={"x-backend": "yes"},
    )


async def completions(request: Request):
    data = await request.json()
    if data.get("model") != SERVED:
        return JSONResponse(
            {
                "error": {
                    "message": f"The model `{data.get('model')}` does not exist.",
                    "type": "NotFoundError",
                    "param": "model",
                    "code": 404,
                }
            },
            status_code=404,
        )
    if data.get("stream"):
        n = int(data.get("max_tokens") or 5)
        delay = float(request.query_params.get("delay", "0.05"))

        async def gen():
            try:
                for i in range(n):
                    STATE.chunks_sent = i + 1
                    yield f"data: {json.dumps({'i': i, 't': time.monotonic()})}\n\n".encode()
                    await asyncio.sleep(delay)
                yield b"data: [DONE]\n\n"
            finally:
                STATE.stream_closed.set()

        return StreamingResponse(gen(), media_type="text/event-stream")
    return JSONResponse({"object": "chat.completion", "received": data})


async def models(request: Request):
    return JSONResponse(
        {
            "object": "list",
            "data": [{"id": SERVED, "object": "model", "owned_by": "vllm", "root": "/models/tiny", "max_model_len": 2048}],
        }
    )


BIG_CHUNK = bytes(range(256)) * 256  # 64 KiB


async def big(request: Request):
    """MiB of known bytes, streamed in 64 KiB chunks: more than the sockets buffer for a client that waits."""
    mib = int(request.query_params["mib"])

    async def gen():
        for _ in range(mib * 16):
            yield BIG_CHUNK

    return StreamingResponse(gen(), media_type="application/octet-stream")


async def broken_stream(request: Request):
    async def gen():
        yield b'data: {"i": 0}\n\n'
        await asyncio.sleep(0.05)
        raise RuntimeError("backend crashed mid-stream")

    return StreamingResponse(gen(), media_type="text/event-stream")


async def set_cookie(request: Request):
    resp = JSONResponse({"ok": True})
    resp.set_cookie("session", "user-a-secret")
    return resp


async def fail(request: Request):
    return Response(
        '{"error": {"message": "teapot", "code": 418}}',
        status_code=418,
        media_type="application/json",
        headers={"x-why": "short and stout"},
    )


async def hold(scope, receive, send):
    """Like vLLM's non-streaming replies: no headers until done; a client disconnect is noticed (with_cancellation)."""
    while (await receive()).get("more_body"):
        pass
    with anyio.move_on_after(10):
        if (await receive())["type"] == "http.disconnect":
            STATE.hold_disconnected.set()
            return
    await JSONResponse({"held": True})(scope, receive, send)


backend_app = Starlette(
    routes=[
        Mount("/hold", app=hold),
        Route("/v1/models", models),
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/fail", fail, methods=["GET", "POST"]),
        Route("/set-cookie", set_cookie),
        Route("/broken-stream", broken_stream),
        Route("/big", big),
        Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
)


def _serve_in_thread(app, port):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    end = time.monotonic() + 10
    while not server.started:
        assert t.is_alive() and time.monotonic() < end, f"backend did not start on port {port}"
        time.sleep(0.02)
    return server, t


@pytest.fixture(scope="module")
def backend():
    server, t = _serve_in_thread(backend_app, BACKEND_PORT)
    yield f"http://127.0.0.1:{BACKEND_PORT}"
    server.should_exit = True
    t.join(10)


@pytest.fixture(scope="module")
def proxy(backend):
    p = ProxyThread(backend, "127.0.0.1", PROXY_PORT, SERVED, select_presets("qwen3.5")).start()
    yield p.url
    p.stop()


@pytest.fixture(scope="module")
def auto_proxy(backend):
    p = ProxyThread(backend, "127.0.0.1", AUTO_PORT, SERVED, select_presets("qwen3.5"), auto=True).start()
    yield p.url
    p.stop()


@pytest.fixture(scope="module")
def client_wins_proxy(backend):
    p = ProxyThread(backend + "/v1/", "127.0.0.1", CLIENT_WINS_PORT, SERVED, select_presets("qwen3.5"), "client-wins").start()
    yield p.url
    p.stop()


# --------------------------------------------------------------------------- presets data


def test_shipped_presets_match_the_model_card():
    p = load_presets()
    assert set(select_presets("qwen3.5")) == {"thinking-general", "thinking-coding", "instruct-general", "instruct-reasoning"}
    assert p["thinking-coding"].sampling() == {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "repetition_penalty": 1.0,
    }
    assert (p["instruct-reasoning"].temperature, p["instruct-reasoning"].top_k, p["instruct-reasoning"].presence_penalty) == (
        1.0,
        40,
        2.0,
    )
    assert p["thinking-general"].enable_thinking is True and p["instruct-general"].enable_thinking is False


def test_recipes_name_an_existing_family(catalog):
    fams = {p.family for p in load_presets().values()}
    named = {r.sampling_presets for r in catalog.models.values() if r.sampling_presets}
    assert named and named <= fams


def test_user_presets_from_the_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"presets": {"precise": {"temperature": 0.2, "enable_thinking": False}, "thinking-coding": {"temperature": 0.3}}}
        )
    )
    monkeypatch.setenv("SERVECTL_CONFIG", str(cfg))
    p = load_presets()
    assert p["precise"].sampling() == {"temperature": 0.2} and p["precise"].family is None
    assert p["thinking-coding"].temperature == 0.3  # the user's replaces the shipped one
    assert "thinking-general" in p


@pytest.mark.parametrize(
    "text, words",
    [
        ("presets: {bad: {temperature: -1}}", "temperature"),
        ("presets: {bad: {tempreature: 1}}", "tempreature"),
        ("presets: [1, 2]", "mapping"),
        ("presets: {a: [", "not valid YAML"),
    ],
)
def test_bad_config_is_one_line_user_error(tmp_path, cli, monkeypatch, text, words):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    monkeypatch.setenv("SERVECTL_CONFIG", str(cfg))
    result = cli("presets", "list")
    assert result.exit_code == 2
    assert words in result.stderr and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_preset_name_suggests(cli):
    result = cli("proxy", "--backend", "http://127.0.0.1:1", "--presets", "thinking-codng")
    assert result.exit_code == 2 and "thinking-coding" in result.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--backend", "ftp://x"], "not an http(s) URL"),
        (["--backend", "http://127.0.0.1:1", "--listen", "127.0.0.1:notaport"], "HOST:PORT"),
        (["--backend", "http://127.0.0.1:1", "--listen", "99999"], "out of range"),
        (["--backend", "http://127.0.0.1:1"], "cannot reach the backend"),
        (["--backend", "http://127.0.0.1:1", "--api-key-env", "SERVECTL_TEST_UNSET_KEY"], "SERVECTL_TEST_UNSET_KEY"),
        (
            ["--backend", "http://127.0.0.1:1", "--presets", "auto,instruct-general"],
            "needs the presets instruct-reasoning, thinking-coding",
        ),
    ],
)
def test_proxy_cli_bad_input(cli, args, words):
    result = cli("proxy", *args)
    assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_apply_preset_policies():
    preset = load_presets()["instruct-general"]
    body = {
        "model": "tiny-cpu-instruct-general",
        "temperature": 0.1,
        "messages": [],
        "chat_template_kwargs": {"enable_thinking": True, "other": 1},
    }
    pw = apply_preset(body, preset, SERVED, chat=True, policy="preset-wins")
    cw = apply_preset(body, preset, SERVED, chat=True, policy="client-wins")
    assert pw["model"] == cw["model"] == SERVED
    assert pw["temperature"] == 0.7 and cw["temperature"] == 0.1
    assert pw["top_p"] == cw["top_p"] == 0.8  # the client did not set it
    assert pw["chat_template_kwargs"] == {"enable_thinking": False, "other": 1}
    assert cw["chat_template_kwargs"] == {"enable_thinking": True, "other": 1}
    assert body["model"] == "tiny-cpu-instruct-general"  # input untouched
    plain = apply_preset({"model": "x", "prompt": "hi"}, preset, SERVED, chat=False, policy="preset-wins")
    assert "chat_template_kwargs" not in plain


@pytest.mark.parametrize(
    "fields, preset",
    [
        ({"chat_template_kwargs": {"enable_thinking": False}}, "instruct-general"),
        ({"chat_template_kwargs": {"enable_thinking": True}}, "thinking-general"),
        ({"reasoning_effort": "none"}, "instruct-general"),
        ({"reasoning_effort": "low"}, "thinking-general"),  # any effort but none thinks, as vLLM renders it
        ({"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}}, "thinking-general"),  # the switch wins
        ({"metadata": {"task": "coding"}}, "thinking-coding"),
        ({"metadata": {"task": "coding"}, "reasoning_effort": "none"}, "instruct-general"),
        ({"metadata": {"task": "reasoning"}, "chat_template_kwargs": {"enable_thinking": False}}, "instruct-reasoning"),
        ({"metadata": {"task": "reasoning"}}, "thinking-general"),
        ({"metadata": {"task": "general"}}, None),
        ({"metadata": {"task": "poetry"}, "reasoning_effort": "high"}, "thinking-general"),  # an unknown task counts as none
        ({"temperature": 0.3}, None),  # says nothing: the model's own defaults
    ],
)
def test_auto_picks_the_preset_the_request_asks_for(fields, preset):
    body = {"model": SERVED, "messages": [], **fields}
    forwarded, chosen = choose(body)
    assert chosen == preset
    assert "task" not in forwarded.get("metadata", {}) and body["model"] == SERVED  # the hint is the proxy's; input untouched
    assert {k: v for k, v in forwarded.items() if k != "metadata"} == {k: v for k, v in body.items() if k != "metadata"}


def test_split_auto_from_the_presets_option():
    assert split_auto("auto") == (None, True)
    assert split_auto("qwen3.5, auto") == ("qwen3.5", True)
    assert split_auto("thinking-coding,instruct-general") == ("thinking-coding,instruct-general", False)
    assert split_auto(None) == (None, False)


# --------------------------------------------------------------------------- through the proxy


def test_auto_presets_on_the_real_model_name(auto_proxy):
    r = httpx.post(
        auto_proxy + "/v1/chat/completions",
        json={"model": SERVED, "messages": [], "reasoning_effort": "none", "metadata": {"task": "coding", "user": "u1"}},
    )
    got = r.json()["received"]
    assert got["model"] == SERVED and got["chat_template_kwargs"] == {"enable_thinking": False}
    assert (got["temperature"], got["top_p"], got["presence_penalty"]) == (0.7, 0.8, 1.5)  # instruct-general
    assert got["metadata"] == {"user": "u1"} and got["reasoning_effort"] == "none"
    assert r.headers["x-servectl-proxy"].startswith("preset=instruct-general; by=auto; ms=")
    coding = httpx.post(
        auto_proxy + "/v1/completions", json={"model": SERVED, "prompt": "def f(", "metadata": {"task": "coding"}}
    )
    got = coding.json()["received"]
    assert (got["temperature"], got["top_k"]) == (0.6, 20) and "metadata" not in got and "chat_template_kwargs" not in got
    assert coding.headers["x-servectl-proxy"].startswith("preset=thinking-coding; by=auto; ")
    silent = httpx.post(auto_proxy + "/v1/chat/completions", json={"model": SERVED, "messages": [], "temperature": 0.3})
    assert silent.json()["received"] == {"model": SERVED, "messages": [], "temperature": 0.3}
    assert silent.headers["x-servectl-proxy"].startswith("preset=none; by=auto; ")
    virtual = httpx.post(
        auto_proxy + "/v1/chat/completions",
        json={"model": f"{SERVED}-instruct-reasoning", "messages": [], "reasoning_effort": "high"},
    )
    assert virtual.json()["received"]["top_k"] == 40 and virtual.headers["x-servectl-proxy"].startswith(
        "preset=instruct-reasoning; by=model; "
    )


def test_models_lists_real_and_virtual_names(proxy):
    data = httpx.get(proxy + "/v1/models").json()
    ids = [m["id"] for m in data["data"]]
    assert ids[0] == SERVED
    assert set(ids[1:]) == {
        f"{SERVED}-{n}" for n in ("thinking-general", "thinking-coding", "instruct-general", "instruct-reasoning")
    }
    virt = next(m for m in data["data"] if m["id"] == f"{SERVED}-thinking-coding")
    assert virt["max_model_len"] == 2048 and virt["parent"] == SERVED


@pytest.mark.parametrize("path, chat", [("/v1/chat/completions", True), ("/v1/completions", False)])
def test_virtual_name_is_rewritten_with_the_preset(proxy, path, chat):
    body = {"model": f"{SERVED}-thinking-coding", "temperature": 1.3, "max_tokens": 3}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"})
    got = httpx.post(proxy + path, json=body).json()["received"]
    assert got["model"] == SERVED
    assert (got["temperature"], got["top_p"], got["top_k"], got["min_p"], got["presence_penalty"], got["repetition_penalty"]) == (
        0.6,
        0.95,
        20,
        0.0,
        0.0,
        1.0,
    )
    assert got["max_tokens"] == 3
    if chat:
        assert got["chat_template_kwargs"] == {"enable_thinking": True}
    else:
        assert "chat_template_kwargs" not in got


def test_client_wins_keeps_client_values(client_wins_proxy):
    body = {
        "model": f"{SERVED}-instruct-reasoning",
        "temperature": 0.25,
        "messages": [],
        "chat_template_kwargs": {"enable_thinking": True},
    }
    got = httpx.post(client_wins_proxy + "/v1/chat/completions", json=body).json()["received"]
    assert got["temperature"] == 0.25 and got["top_k"] == 40 and got["presence_penalty"] == 2.0
    assert got["chat_template_kwargs"] == {"enable_thinking": True}


def test_real_model_name_passes_untouched(proxy):
    body = {"model": SERVED, "messages": [], "temperature": 1.3}
    got = httpx.post(proxy + "/v1/chat/completions", json=body).json()["received"]
    assert got == body


def test_unknown_virtual_preset_is_404_in_openai_shape(proxy):
    r = httpx.post(proxy + "/v1/chat/completions", json={"model": f"{SERVED}-nope", "messages": []})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == 404 and err["param"] == "model" and "nope" in err["message"] and err["type"] == "NotFoundError"


def test_other_paths_pass_through_unchanged(proxy):
    raw = b"\x00not json at all\xff"
    r = httpx.put(
        proxy + "/some/path?x=1&y=%20two&x=3",
        content=raw,
        headers={
            "Authorization": "Bearer sk-secret-test",
            "X-Custom": "kept",
            "Connection": "keep-alive, X-Drop",
            "X-Drop": "gone",
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200 and r.headers["x-backend"] == "yes"
    got = r.json()
    assert got["method"] == "PUT" and got["path"] == "/some/path" and got["query"] == "x=1&y=%20two&x=3"
    assert got["body"] == raw.decode(errors="replace")
    assert got["headers"]["authorization"] == "Bearer sk-secret-test"
    assert got["headers"]["x-custom"] == "kept" and got["headers"]["content-type"] == "application/octet-stream"
    assert "x-drop" not in got["headers"]  # named by Connection: hop-by-hop
    assert got["headers"]["host"] == f"127.0.0.1:{BACKEND_PORT}"


def test_backend_cookies_reach_only_their_client(proxy):
    r = httpx.get(proxy + "/set-cookie")
    assert r.cookies.get("session") == "user-a-secret"  # relayed to the client that got it
    other = httpx.get(proxy + "/echo").json()  # a different client, no cookies of its own
    assert "cookie" not in other["headers"]
    assert "user-agent" in other["headers"] and other["headers"]["user-agent"].startswith("python-httpx")  # the client's own


def test_proxy_adds_no_headers_of_its_own(proxy):
    import socket

    with socket.create_connection(("127.0.0.1", PROXY_PORT)) as sock:
        sock.sendall(b"GET /bare HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {len(body)}".encode() in head.lower()  # the backend's length, relayed
    got = json.loads(body)["headers"]
    assert not {"accept", "accept-encoding", "user-agent", "cookie"} & set(got), got


def test_authorization_reaches_the_backend_on_rewritten_requests(proxy):
    r = httpx.post(
        proxy + "/v1/chat/completions?delay=0",
        json={"model": f"{SERVED}-thinking-general", "messages": []},
        headers={"Authorization": "Bearer sk-abc"},
    )
    assert r.status_code == 200
    got = httpx.get(proxy + "/whoami", headers={"Authorization": "Bearer sk-abc"}).json()
    assert got["headers"]["authorization"] == "Bearer sk-abc"


def test_backend_errors_propagate_with_status_and_body(proxy):
    for method in ("GET", "POST"):
        r = httpx.request(method, proxy + "/fail")
        assert r.status_code == 418 and r.json() == {"error": {"message": "teapot", "code": 418}}
        assert r.headers["x-why"] == "short and stout"
    r = httpx.post(proxy + "/v1/chat/completions", json={"model": "other-model", "messages": []})
    assert r.status_code == 404 and "other-model" in r.json()["error"]["message"]


def test_backend_breaking_off_mid_stream_cuts_the_client_stream(proxy):
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("GET", proxy + "/broken-stream") as r:
            for line in r.iter_lines():
                got.append(line)
    assert got[:1] == ['data: {"i": 0}']  # what came before the break was relayed


def test_unreachable_backend_is_502():
    # port 1 on loopback: nothing listens, the connection is refused
    p = ProxyThread("http://127.0.0.1:1", "127.0.0.1", UNREACHABLE_PORT, SERVED, select_presets("qwen3.5")).start()
    try:
        r = httpx.get(p.url + "/v1/models")
        chat = httpx.post(p.url + "/v1/chat/completions", json={"model": f"{SERVED}-thinking-coding", "messages": []})
    finally:
        p.stop()
    assert r.status_code == 502 and r.json()["error"]["code"] == 502
    assert chat.status_code == 502 and "127.0.0.1:1" in chat.json()["error"]["message"]


def test_stopping_the_proxy_cuts_open_streams_without_a_traceback(backend):
    p = ProxyThread(backend, "127.0.0.1", SHUTDOWN_PORT, SERVED, select_presets("qwen3.5")).start()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    STATE.stream_closed.clear()
    got: list[str] = []

    def consume():
        body = {"model": f"{SERVED}-thinking-general", "messages": [], "stream": True, "max_tokens": 1000}
        try:
            with httpx.stream("POST", p.url + "/v1/chat/completions?delay=0.05", json=body, timeout=30) as r:
                got.extend(r.iter_lines())
        except httpx.HTTPError as exc:
            got.append(type(exc).__name__)

    client = threading.Thread(target=consume)
    try:
        client.start()
        end = time.monotonic() + 10
        while not got and time.monotonic() < end:
            time.sleep(0.02)
        p.stop()  # the stream outlives uvicorn's grace period and is cancelled
        client.join(15)
    finally:
        logger.removeHandler(handler)
        p.stop()
    assert got and got[0].startswith("data: ") and "data: [DONE]" not in got
    assert got[-1] == "RemoteProtocolError"  # a cut stream, not one that looks finished
    assert STATE.stream_closed.wait(10), "the backend kept streaming after the proxy stopped"
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]


def test_streaming_arrives_chunk_by_chunk(proxy):
    body = {"model": f"{SERVED}-instruct-general", "messages": [], "stream": True, "max_tokens": 6}
    arrivals = []
    with httpx.stream("POST", proxy + "/v1/chat/completions?delay=0.15", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: {"):
                arrivals.append((json.loads(line[6:])["i"], STATE.chunks_sent))
    assert [i for i, _ in arrivals] == list(range(6))
    # Each chunk reached the client before the backend produced the one after next (no buffering).
    assert all(sent <= i + 2 for i, sent in arrivals), arrivals


def test_client_disconnect_cancels_the_upstream_stream(proxy):
    STATE.stream_closed.clear()
    body = {"model": f"{SERVED}-thinking-general", "messages": [], "stream": True, "max_tokens": 1000}
    with httpx.stream("POST", proxy + "/v1/chat/completions?delay=0.05", json=body) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    # closing the client's response drops the connection; the backend's generator must end early
    assert STATE.stream_closed.wait(10), "the backend kept streaming after the client went away"
    assert STATE.chunks_sent < 1000


def test_client_disconnect_before_the_reply_cancels_upstream(proxy):
    # A non-streaming chat reply has no headers until generation ends; a client that gives up
    # before that must still cancel the backend's work.
    STATE.hold_disconnected.clear()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(proxy + "/hold/on", json={"model": SERVED}, timeout=httpx.Timeout(10, read=0.5))
    assert STATE.hold_disconnected.wait(8), "the backend never saw the client go away"


def test_answers_to_the_rewritten_paths_say_the_preset_and_the_proxys_own_time(proxy):
    def info(r) -> dict[str, str]:
        return dict(part.split("=", 1) for part in r.headers["x-servectl-proxy"].split("; "))

    virtual = info(httpx.post(proxy + "/v1/chat/completions", json={"model": f"{SERVED}-thinking-coding", "messages": []}))
    assert (virtual["preset"], virtual["by"]) == ("thinking-coding", "model") and float(virtual["ms"]) >= 0
    real = info(httpx.post(proxy + "/v1/completions", json={"model": SERVED, "prompt": "hi"}))
    assert (real["preset"], real["by"]) == ("none", "model") and float(real["ms"]) >= 0
    assert "x-servectl-proxy" not in httpx.get(proxy + "/echo").headers  # other paths: as the backend sent them


def test_a_client_that_reads_slowly_gets_every_byte(proxy):
    # The proxy holds the backend while the client's side is full, then carries on where it stopped.
    with httpx.stream("GET", proxy + "/big?mib=48", timeout=60) as r:
        time.sleep(1)  # sockets and the proxy's buffers fill meanwhile
        got = b"".join(r.iter_raw())
    assert len(got) == 48 * 1024 * 1024 and got == BIG_CHUNK * (48 * 16)


def test_head_requests_pass_and_the_next_request_still_works(proxy):
    r = httpx.head(proxy + "/echo")
    assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0
    assert httpx.get(proxy + "/echo").json()["method"] == "GET"


@pytest.mark.parametrize("close", ["on-the-next-request", "when-idle"])
def test_a_keep_alive_connection_the_backend_dropped_is_retried_on_a_new_one(close):
    """A backend that answers one request per connection and closes the connection when the second
    arrives (as a server whose keep-alive timeout ran out at that moment), or right after answering:
    the proxy's reused connection fails before any answer and the request goes again on a fresh
    connection, or the pool drops the closed one; nothing is logged either way."""
    import socket
    import socketserver

    seen = {"connections": 0, "requests": 0}
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("asyncio").addHandler(handler)

    class OneAnswer(socketserver.BaseRequestHandler):
        def handle(self):
            seen["connections"] += 1
            sock = self.request
            buf = b""
            while b"\r\n\r\n" not in buf:
                if not (data := sock.recv(65536)):
                    return
                buf += data
            seen["requests"] += 1
            body = json.dumps({"request": seen["requests"]}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            if close == "on-the-next-request":
                sock.recv(65536)  # dropped unanswered
            sock.shutdown(socket.SHUT_RDWR)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server(("127.0.0.1", ONE_ANSWER_PORT), OneAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = ProxyThread(
        f"http://127.0.0.1:{ONE_ANSWER_PORT}", "127.0.0.1", UNREACHABLE_PORT, SERVED, select_presets("qwen3.5")
    ).start()
    try:
        answers = [httpx.get(p.url + "/anything") for _ in range(3)]
    finally:
        p.stop()
        server.shutdown()
        server.server_close()
        gc.collect()  # a connection and its parser hold each other: an unretrieved error shows when they go
        logging.getLogger("asyncio").removeHandler(handler)
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.json()["request"] for r in answers] == [1, 2, 3] and seen["connections"] == 3
    assert not records, [r.getMessage() for r in records]


# --------------------------------------------------------------------------- rendered deployments with the proxy


def test_render_compose_with_proxy_is_valid_compose(cli, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    result = cli(
        "render", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--format", "compose", "--with-proxy", "--proxy-port", "9001"
    )
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    proxy_svc = doc["services"]["proxy"]
    cmd = proxy_svc["command"]
    assert cmd[:2] == ["servectl", "proxy"] and cmd[cmd.index("--backend") + 1] == "http://vllm:8000"
    assert cmd[cmd.index("--presets") + 1] == "qwen3.5" and proxy_svc["ports"] == ["127.0.0.1:9001:8001"]
    assert proxy_svc["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    path = tmp_path / "docker-compose.yaml"
    path.write_text(result.stdout)
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    check = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # the check can fail: a service with a misspelt key is rejected by the same schema
    proxy_svc["depends_onn"] = proxy_svc.pop("depends_on")
    path.write_text(yaml.safe_dump(doc))
    assert subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True).returncode != 0


def test_render_systemd_with_proxy_writes_a_second_unit(cli, tmp_path):
    import shutil
    import subprocess

    result = cli(
        "render", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--format", "systemd", "--with-proxy", "-o", str(tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    unit = (tmp_path / "qwen3.5-35b-a3b-nvfp4-proxy.service").read_text()
    assert "BindsTo=qwen3.5-35b-a3b-nvfp4.service" in unit and "After=qwen3.5-35b-a3b-nvfp4.service" in unit
    assert "--backend http://127.0.0.1:8000 --listen 127.0.0.1:8001" in unit
    assert (tmp_path / "qwen3.5-35b-a3b-nvfp4.service").is_file()
    if shutil.which("systemd-analyze"):
        out = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(tmp_path / "qwen3.5-35b-a3b-nvfp4-proxy.service")],
            capture_output=True,
            text=True,
        )
        assert "Unknown key" not in out.stderr and "Unknown section" not in out.stderr, out.stderr


def test_with_proxy_rejects_other_formats(cli):
    result = cli("render", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--format", "docker", "--with-proxy")
    assert result.exit_code == 2 and "--with-proxy" in result.stderr


def test_up_proxy_with_detach_is_refused(cli):
    result = cli("up", "tiny-cpu", "--proxy", "--detach")
    assert result.exit_code == 2 and "--with-proxy" in result.stderr


def test_proxy_helpers_for_renderers(catalog):
    from servectl.spec.resolve import Request as DeployRequest
    from servectl.spec.resolve import resolve
    from servectl.proxy.app import compose_service, systemd_unit
    from servectl.spec.models import LaunchOptions

    spec = resolve(
        DeployRequest(
            catalog.model("qwen3.5-35b-a3b-nvfp4"),
            catalog.gpu("rtx-5090"),
            [],
            options=LaunchOptions(port=8000, host="127.0.0.1"),
        )
    )
    svc = compose_service(spec, 9005)
    assert svc["ports"] == ["127.0.0.1:9005:8001"]
    cmd = svc["command"]
    assert cmd[cmd.index("--model") + 1] == spec.served_model_name and cmd[cmd.index("--presets") + 1] == "qwen3.5"
    unit = systemd_unit(spec, 9005, "/usr/local/bin/servectl")
    assert unit.splitlines()[0] == "[Unit]"
    assert "ExecStart=/usr/local/bin/servectl proxy --backend http://127.0.0.1:8000 --listen 127.0.0.1:9005" in unit


def test_presets_list_json_and_table(cli):
    result = cli("presets", "list", "--json")
    assert result.exit_code == 0, result.stderr
    data = __import__("json").loads(result.stdout)
    assert data["thinking-coding"] == {
        "name": "thinking-coding",
        "family": "qwen3.5",
        "description": data["thinking-coding"]["description"],
        "enable_thinking": True,
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "repetition_penalty": 1.0,
    }
    table = cli("presets", "list").stdout
    assert all(name in table for name in data)  # whole names, not cut off with an ellipsis


def test_proxy_command_discovers_the_model_and_serves(backend):
    import signal
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servectl",
            "proxy",
            "--backend",
            backend + "/v1",
            "--listen",
            f"127.0.0.1:{port}",
            "--presets",
            "thinking-coding,instruct-general",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ids = None
        end = time.monotonic() + 30
        while ids is None and time.monotonic() < end and proc.poll() is None:
            try:
                ids = [m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).json()["data"]]
            except httpx.TransportError:
                time.sleep(0.1)
        assert ids == [SERVED, f"{SERVED}-thinking-coding", f"{SERVED}-instruct-general"], (
            proc.stderr.read() if proc.poll() is not None else ids
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert f"{SERVED}-thinking-coding" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
