"""The sampling-preset proxy: Qwen's sampling presets as virtual model names in front of one vLLM server.

An ASGI app (starlette, served by uvicorn) with one shared pool of backend connections (httpx's
transport API on aiohttp's client, httpx-aiohttp):

- GET /v1/models lists the backend's models plus `<served>-<preset>` for every preset;
- POST /v1/chat/completions and /v1/completions naming a virtual model get the real model name
  and the preset's sampling values (and, for chat, chat_template_kwargs.enable_thinking); with
  policy "preset-wins" the preset overrides values the client also set, with "client-wins" the
  client's values stay;
- a name `<served>-<unknown>` is a 404 in the OpenAI error shape;
- everything else passes through unchanged (method, path, query, body, headers including
  Authorization; hop-by-hop headers dropped); backend errors keep their status and body;
- responses stream chunk by chunk as the backend sends them (no buffering of SSE), and a client
  that goes away closes the upstream request, which makes vLLM abort the generation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import aiohttp
import anyio
import httpx
import uvicorn
from httpx_aiohttp import AiohttpTransport
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from servectl.errors import UserError
from servectl.specs import SamplingPreset

Policy = Literal["preset-wins", "client-wins"]
POLICIES: tuple[str, ...] = ("preset-wins", "client-wins")
REWRITE_PATHS = {"/v1/chat/completions": True, "/v1/completions": False}  # path -> is chat

# RFC 9110 7.6.1 hop-by-hop headers, plus the ones the client library recomputes (host, content-length).
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
}
_REQUEST_DROP = _HOP_BY_HOP | {"host", "content-length"}
# Relayed bodies are the raw bytes (aiter_raw), so the backend's Content-Length stays true; a body
# the proxy rewrites (/v1/models) is re-encoded and gets its own length.
_RESPONSE_DROP = _HOP_BY_HOP
_REWRITTEN_DROP = _HOP_BY_HOP | {"content-length", "content-encoding"}


def normalize_backend(url: str) -> str:
    """http://host:port[/v1][/] -> http://host:port (the proxy forwards the client's full path)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"backend {url!r} is not an http(s) URL", "e.g. --backend http://127.0.0.1:8000")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def openai_error(status: int, message: str, type_: str, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": status}}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def apply_preset(body: dict[str, Any], preset: SamplingPreset, real_model: str, *, chat: bool, policy: Policy) -> dict[str, Any]:
    """The request body with the real model name and the preset's values (pure; returns a new dict)."""
    out = dict(body)
    out["model"] = real_model
    client_wins = policy == "client-wins"
    for key, value in preset.sampling().items():
        if client_wins and out.get(key) is not None:
            continue
        out[key] = value
    if chat and preset.enable_thinking is not None:
        kwargs = dict(out.get("chat_template_kwargs") or {})
        if not (client_wins and kwargs.get("enable_thinking") is not None):
            kwargs["enable_thinking"] = preset.enable_thinking
        out["chat_template_kwargs"] = kwargs
    return out


def _forward_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    named = set()
    for k, v in headers:
        if k.lower() == b"connection":
            named |= {t.strip().lower() for t in v.decode("latin-1").split(",")}
    return [(k, v) for k, v in headers if (lk := k.decode("latin-1").lower()) not in _REQUEST_DROP and lk not in named]


def _response_headers(headers: httpx.Headers) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers.raw if k.decode("latin-1").lower() not in _RESPONSE_DROP]


# No read/write/pool limit: a long generation may take minutes between chunks of a non-streaming reply.
_TIMEOUT = {"connect": 10.0, "read": None, "write": None, "pool": None}


@functools.lru_cache(maxsize=1024)
def _backend_url(backend: str, target: bytes) -> httpx.URL:
    return httpx.URL(backend + target.decode("latin-1"))


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


class _Proxy:
    """The per-request path is plain ASGI (no routing, no Request objects): it runs for every token stream."""

    def __init__(self, backend_url: str, served_model: str, presets: Mapping[str, SamplingPreset], policy: Policy):
        if policy not in POLICIES:
            raise UserError(f"unknown policy {policy!r}", f"use one of {', '.join(POLICIES)}")
        self.backend = normalize_backend(backend_url)
        self.served = served_model
        self.presets = dict(presets)
        self.virtual = {f"{served_model}-{name}": p for name, p in self.presets.items()}
        self.policy: Policy = policy
        self.transport: httpx.AsyncBaseTransport | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # httpx's API on aiohttp's connection pool and C HTTP parser (httpx-aiohttp): httpx's own
        # pure-Python transport (httpcore + h11) cost ~1.4x the proxy CPU per request here
        # (2.6 vs 1.8 ms measured on a 2-core machine; encode/httpx#3215).
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=30.0)
        # A transparent proxy adds no headers of its own: aiohttp would add Accept, Accept-Encoding
        # (then relay a compressed body the client never asked for) and User-Agent.
        def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry)
            return aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False,
                                         skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"))

        transport = self.transport = AiohttpTransport(client=session)
        try:
            yield
        finally:
            self.transport = None
            await transport.aclose()  # closes the pool's connections

    # ------------------------------------------------------------------ request handling

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # websockets: vLLM's realtime endpoints are not proxied
        body = await _read_body(receive)
        if body is None:
            return
        method, path = scope["method"], scope["path"]
        reply: Response | None = None
        if method == "POST" and path in REWRITE_PATHS and body:
            rewritten = self.rewrite(body, chat=REWRITE_PATHS[path])
            if isinstance(rewritten, Response):
                reply = rewritten
            else:
                body = rewritten
        if reply is not None:
            await reply(scope, receive, send)
            return
        # One task group for the whole exchange: a client that disconnects while vLLM is still
        # working (a non-streaming reply has no headers until it is complete) or while we relay a
        # stream cancels it, and closing the upstream response makes vLLM abort the request.
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            if method == "GET" and path == "/v1/models":
                await self.models(scope, body, send)
            else:
                await self.relay(scope, body, send)
            tg.cancel_scope.cancel()

    def rewrite(self, raw: bytes, *, chat: bool) -> bytes | Response:
        try:
            data = json.loads(raw)
        except ValueError:
            return raw  # not JSON: the backend says what is wrong
        if not isinstance(data, dict) or not isinstance(model := data.get("model"), str):
            return raw
        preset = self.virtual.get(model)
        if preset is None:
            if model.startswith(self.served + "-"):
                known = ", ".join(sorted(self.virtual)) or "none"
                return openai_error(404, f"The model `{model}` does not exist: no sampling preset "
                                    f"{model[len(self.served) + 1:]!r} (known: {known}).", "NotFoundError", "model")
            return raw
        return json.dumps(apply_preset(data, preset, self.served, chat=chat, policy=self.policy)).encode()

    async def open_upstream(self, scope: Scope, body: bytes) -> httpx.Response | Response:
        """Send the request to the backend and return its response, headers read, body not yet.

        It goes to the transport (the connection pool) directly, not through httpx.AsyncClient:
        a client shared by all users would keep the backend's Set-Cookie and send it on with other
        users' requests, and would add its own default headers; building the URL once per target
        also saves httpx's URL merging, the largest per-request cost of the client layer.
        """
        assert self.transport is not None, "the proxy app was not started (lifespan)"
        target = scope.get("raw_path") or scope["path"].encode()
        if query := scope.get("query_string"):
            target += b"?" + query
        req = httpx.Request(scope["method"], _backend_url(self.backend, target), headers=_forward_headers(scope["headers"]),
                            content=body, extensions={"timeout": _TIMEOUT})
        try:
            return await self.transport.handle_async_request(req)
        except httpx.HTTPError as exc:
            return openai_error(502, f"backend {self.backend} failed: {type(exc).__name__}: {exc}", "BadGateway")

    async def relay(self, scope: Scope, body: bytes, send: Send) -> None:
        """Forward the request and relay the response chunk by chunk (aiter_raw: no decoding, no buffering)."""
        up = await self.open_upstream(scope, body)
        if isinstance(up, Response):
            await up(scope, _no_receive, send)
            return
        try:
            await send({"type": "http.response.start", "status": up.status_code, "headers": _response_headers(up.headers)})
            async for chunk in up.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we were sending
            pass
        except httpx.HTTPError:
            # The backend broke off mid-body: return without ending the response, so the server
            # closes the client's connection too and the client sees a cut stream, not a whole one.
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await up.aclose()

    async def models(self, scope: Scope, body: bytes, send: Send) -> None:
        """The backend's model list plus one entry per virtual name (copying the real model's fields)."""
        up = await self.open_upstream(scope, body)
        if isinstance(up, Response):
            await up(scope, _no_receive, send)
            return
        try:
            raw = await up.aread()
        finally:
            with anyio.CancelScope(shield=True):
                await up.aclose()
        try:
            data = json.loads(raw) if up.status_code == 200 else None
        except ValueError:
            data = None
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):  # an error, or not a model list: relay as it came
            headers = {k: v for k, v in up.headers.items() if k.lower() not in _REWRITTEN_DROP}
            await Response(raw, status_code=up.status_code, headers=headers)(scope, _no_receive, send)
            return
        real = next((m for m in entries if isinstance(m, dict) and m.get("id") == self.served), None)
        base = dict(real) if real else {"object": "model", "owned_by": "vllm"}
        for name in self.virtual:
            entry = {k: v for k, v in base.items() if k != "permission"}
            entry.update(id=name, parent=self.served)
            entries.append(entry)
        headers = {k: v for k, v in up.headers.items() if k.lower() not in _REWRITTEN_DROP}
        await Response(json.dumps(data), status_code=200, headers=headers)(scope, _no_receive, send)


async def _no_receive() -> Any:
    raise RuntimeError("the request body was already read")


def build_app(backend_url: str, served_model: str, presets: Mapping[str, SamplingPreset], policy: Policy = "preset-wins") -> Starlette:
    """The proxy as an ASGI app (the httpx client opens and closes with the app's lifespan)."""
    proxy = _Proxy(backend_url, served_model, presets, policy)
    app = Starlette(routes=[Mount("/", app=proxy)], lifespan=proxy.lifespan)
    app.state.proxy = proxy
    return app


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    # The backend's Date/Server headers are relayed; uvicorn must not add second copies.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          server_header=False, date_header=False, lifespan="on", timeout_graceful_shutdown=3)


def serve_proxy(backend_url: str, listen_host: str, listen_port: int, served_model: str,
                presets: Mapping[str, SamplingPreset], policy: Policy = "preset-wins") -> None:
    """Serve the proxy in the foreground until interrupted."""
    app = build_app(backend_url, served_model, presets, policy)
    uvicorn.Server(uvicorn_config(app, listen_host, listen_port)).run()


class ProxyThread:
    """The proxy on a background thread (used by `servectl up --proxy` and tests); stop() ends it."""

    def __init__(self, backend_url: str, listen_host: str, listen_port: int, served_model: str,
                 presets: Mapping[str, SamplingPreset], policy: Policy = "preset-wins"):
        self.url = f"http://{listen_host}:{listen_port}"
        app = build_app(backend_url, served_model, presets, policy)
        self.server = uvicorn.Server(uvicorn_config(app, listen_host, listen_port))
        self.thread = threading.Thread(target=self.server.run, name="servectl-proxy", daemon=True)

    def start(self, timeout: float = 10.0) -> ProxyThread:
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise UserError(f"the proxy could not start on {self.url}", "is the port free?")
            if time.monotonic() > end:
                self.stop()
                raise UserError(f"the proxy did not start on {self.url} within {timeout:.0f} s", "is the port free?")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)


def discover_served_model(backend_url: str, api_key: str | None = None, timeout: float = 10.0) -> str:
    """The backend's served model name (its only entry in /v1/models)."""
    url = normalize_backend(backend_url) + "/v1/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach the backend at {url}: {type(exc).__name__}", "start it first, or check --backend") from None
    if resp.status_code != 200:
        raise UserError(f"{url} answered HTTP {resp.status_code}", "check --backend (and the API key), or pass --model")
    try:
        ids = [m["id"] for m in resp.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{url} did not return an OpenAI model list", "check --backend, or pass --model") from None
    if len(ids) != 1:
        raise UserError(f"the backend serves {len(ids)} models ({', '.join(ids) or 'none'})", "pass --model NAME")
    return ids[0]


def start_for_deployment(backend_url: str, served_model: str, family: str | None, host: str, port: int) -> ProxyThread:
    """The proxy for a server `servectl up` started: the recipe's preset family (all presets when it names none)."""
    from servectl.presets import select_presets

    return ProxyThread(backend_url, host, port, served_model, select_presets(family)).start()


def compose_service(spec: Any, port: int, image: str | None = None) -> dict[str, Any]:
    """The proxy as a Compose service for `spec` (a LaunchSpec), published on `port` (see servectl.render.proxy)."""
    from servectl.render import proxy as rendered

    return rendered.compose_service(spec, port, image or rendered.DEFAULT_IMAGE)


def systemd_unit(spec: Any, port: int, servectl_bin: str | None = None) -> str:
    """The proxy's systemd unit for `spec`, bound to the vLLM unit (see servectl.render.proxy)."""
    from servectl.render import proxy as rendered

    return rendered.systemd_unit(spec, port, servectl_bin or rendered.DEFAULT_SERVECTL_BIN)
