"""The proxy's edges: hop-by-hop response headers (RFC 9110 7.6.1), a request body limit answered
413 in OpenAI's error shape, and a compressed backend model list (against a real loopback backend)."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conftest import free_port
from servectl.catalog.presets import select_presets
from servectl.proxy.app import ProxyThread

BACKEND_PORT, PROXY_PORT = free_port(), free_port()
SERVED = "tiny-cpu"
LIMIT = 4096


async def hop(request: Request):
    return Response(
        b"ok", headers={"Connection": "X-Backend-Hop", "X-Backend-Hop": "secret", "Keep-Alive": "timeout=5", "X-Kept": "yes"}
    )


async def echo_size(request: Request):
    return JSONResponse({"size": len(await request.body())})


async def models(request: Request):
    body = json.dumps({"object": "list", "data": [{"id": SERVED, "object": "model", "owned_by": "vllm"}]}).encode()
    if "gzip" in request.headers.get("accept-encoding", ""):  # as a server behind compression middleware would
        return Response(gzip.compress(body), media_type="application/json", headers={"Content-Encoding": "gzip"})
    return Response(body, media_type="application/json")


backend_app = Starlette(
    routes=[Route("/hop", hop), Route("/v1/models", models), Route("/v1/chat/completions", echo_size, methods=["POST"])]
)


@pytest.fixture(scope="module")
def proxy():
    server = uvicorn.Server(uvicorn.Config(backend_app, host="127.0.0.1", port=BACKEND_PORT, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    p = ProxyThread(
        f"http://127.0.0.1:{BACKEND_PORT}", "127.0.0.1", PROXY_PORT, SERVED, select_presets("qwen3.5"), max_body=LIMIT
    ).start()
    yield p
    p.stop()
    server.should_exit = True
    t.join(10)


def test_headers_the_backend_names_in_connection_are_not_relayed(proxy):
    r = httpx.get(proxy.url + "/hop")
    assert r.text == "ok" and r.headers["x-kept"] == "yes"
    assert "x-backend-hop" not in r.headers and "keep-alive" not in r.headers


def test_a_body_over_the_limit_is_413_in_openai_shape(proxy):
    ok = httpx.post(proxy.url + "/v1/chat/completions", content=b"x" * LIMIT)
    assert ok.status_code == 200 and ok.json() == {"size": LIMIT}
    big = httpx.post(proxy.url + "/v1/chat/completions", content=b"x" * (LIMIT + 1))
    assert big.status_code == 413
    err = big.json()["error"]
    assert err["code"] == 413 and err["type"] == "invalid_request_error" and str(LIMIT) in err["message"]


def test_a_chunked_body_over_the_limit_is_413_without_reading_it_all(proxy):
    def chunks():
        for _ in range(64):
            yield b"y" * 1024  # 64 KiB in all, no Content-Length

    r = httpx.post(proxy.url + "/v1/chat/completions", content=chunks())
    assert r.status_code == 413 and r.json()["error"]["code"] == 413


def test_a_declared_length_over_the_limit_is_refused_before_the_body(proxy):
    with socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )  # a gigabyte announced, not one byte of it sent
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413")


def test_the_model_list_is_read_even_when_the_client_accepts_gzip(proxy):
    r = httpx.get(proxy.url + "/v1/models", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    ids = [m["id"] for m in r.json()["data"]]
    assert SERVED in ids and f"{SERVED}-thinking-general" in ids
