"""The sampling-preset proxy: Qwen's sampling presets as virtual model names in front of one vLLM server.

A plain ASGI app (served by uvicorn on uvloop + httptools) with its own keep-alive connections to
the backend (servectl.proxy.backend: asyncio protocols and httptools' C parser):

- GET /v1/models lists the backend's models plus `<served>-<preset>` for every preset;
- POST /v1/chat/completions and /v1/completions naming a virtual model get the real model name
  and the preset's sampling values (and, for chat, chat_template_kwargs.enable_thinking); with
  policy "preset-wins" the preset overrides values the client also set, with "client-wins" the
  client's values stay; with `auto`, a request naming the real model gets the preset its own
  fields ask for (servectl.proxy.auto);
- the answers to those two paths carry `x-servectl-proxy: preset=NAME; by=model|auto; ms=T`
  (preset=none when none applied; T = the proxy's own time before it relayed the head, without
  the backend's);
- a name `<served>-<unknown>` is a 404 in the OpenAI error shape;
- GET /proxy/metrics answers the proxy's own counters (servectl.proxy.metrics) in Prometheus text;
- everything else passes through unchanged (method, path, query, body, headers including
  Authorization; hop-by-hop headers dropped); backend errors keep their status and body;
- response bodies are relayed chunk by chunk as the backend sends them (no buffering of SSE),
  and a client that goes away closes the upstream connection, which makes vLLM abort the
  generation.

Per request: one JSON parse and dump of the request on the two rewritten paths, one task to
notice a client that leaves. Per body chunk: the backend's parser hands it to the client's send on
the same call stack (_BodySender), no task switch and no parsing in Python.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import types
from collections.abc import Callable, Coroutine, Generator, Mapping
from typing import Any

import httpx
import uvicorn

from servectl.errors import UserError
from servectl.catalog.preset_schema import SamplingPreset
from servectl.proxy.auto import check_auto, choose
from servectl.proxy.backend import BackendError, BackendPool, BackendResponse
from servectl.proxy.metrics import CONTENT_TYPE, METRICS_PATH, ProxyMetrics
from servectl.proxy.policy import POLICIES, Policy

REWRITE_PATHS = {"/v1/chat/completions": True, "/v1/completions": False}  # path -> is chat
INFO_HEADER = b"x-servectl-proxy"

# RFC 9110 7.6.1 hop-by-hop headers; host and content-length are the proxy's to set for the
# backend; expect: the proxy has read the whole body already, the backend must not wait for it.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_DROP = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# The proxy reads and rewrites the /v1/models answer: it asks for it unencoded.
_MODELS_REQUEST_DROP = _REQUEST_DROP | {b"accept-encoding"}
# Relayed bodies are the raw bytes (no decompression), so the backend's Content-Length stays true;
# a body the proxy rewrites (/v1/models) is re-encoded and gets its own length.
_RESPONSE_DROP = _HOP_BY_HOP
_REWRITTEN_DROP = _HOP_BY_HOP | {b"content-length", b"content-encoding"}
_JSON = [(b"content-type", b"application/json")]
# Request bodies are read whole (the preset is applied to the JSON): cap them so a client cannot make
# the proxy buffer without bound. 32 MiB leaves room for long prompts and base64 images.
DEFAULT_MAX_BODY = 32 * 2**20
# The one answer the proxy reads whole (to add the virtual names): bounded in size and time. Relayed
# answers are never held: each chunk goes on as it comes, and a client that leaves ends the relay.
MODELS_BODY_LIMIT = 16 * 2**20
MODELS_DEADLINE_S = 30.0


def normalize_backend(url: str) -> str:
    """http://host:port[/v1][/] -> http://host:port (the proxy forwards the client's full path)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"backend {url!r} is not an http(s) URL", "e.g. --backend http://127.0.0.1:8000")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def openai_error_body(status: int, message: str, type_: str, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": status}}).encode()


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


def _kept_headers(headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """`headers` without those in `drop` or named by their own Connection header (RFC 9110 7.6.1);
    serves both ways: the client's headers for the backend and the backend's for the client."""
    for k, v in headers:
        if k.lower() == b"connection":
            drop = drop | {t.strip().lower() for t in v.split(b",")}
    return [(k, v) for k, v in headers if k.lower() not in drop]


class _TooLarge(Exception):
    pass


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None when the client went away first; _TooLarge past `limit` bytes."""
    msg = await receive()
    if msg["type"] == "http.disconnect":
        return None
    if not msg.get("more_body"):
        body = msg.get("body", b"")
        if len(body) > limit:
            raise _TooLarge
        return body
    chunks, size = [msg.get("body", b"")], len(msg.get("body", b""))
    while True:
        if size > limit:
            raise _TooLarge
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunks.append(msg.get("body", b""))
        size += len(chunks[-1])
        if not msg.get("more_body"):
            if size > limit:
                raise _TooLarge
            return b"".join(chunks)


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for k, v in headers:
        if k.lower() == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


async def _reply(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = _JSON) -> None:
    """A whole response the proxy makes itself (errors, the rewritten model list)."""
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], pending: Any) -> Generator[Any, None, None]:
    """The rest of a coroutine that yielded `pending` (what it awaits) when it was stepped by hand."""
    try:
        yield pending  # the awaiting task waits for it, as it would have for the coroutine itself
    except BaseException:
        coro.close()
        raise
    yield from coro


class _BodySender:
    """Hands each body chunk, as the backend's parser delivers it, to the ASGI send without a task switch.

    The server's send for a body chunk writes to the client's transport and returns without
    waiting unless the client reads too slowly (uvicorn then waits for its transport to drain).
    So each send coroutine is stepped on the spot; when it has to wait, the backend connection
    stops reading and the relaying task finishes that send and the chunks parsed meanwhile
    (catch_up), then reads on. A send that fails is re-raised in the relaying task.
    """

    __slots__ = ("send", "up", "waiting", "backlog", "error")

    def __init__(self, send: Any, up: BackendResponse):
        self.send = send
        self.up = up
        self.waiting: Any = None
        self.backlog: list[bytes] = []
        self.error: BaseException | None = None

    def __call__(self, chunk: bytes) -> None:
        if self.waiting is not None or self.error is not None:
            self.backlog.append(chunk)
            return
        coro = self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        try:
            pending = coro.send(None)
        except StopIteration:
            return  # written
        except BaseException as exc:  # noqa: BLE001 - handed to the relaying task
            self.error = exc
        else:
            self.waiting = _resume(coro, pending)
            self.up.pause_reading()
        self.up.wake()

    async def catch_up(self) -> None:
        if self.error is not None:
            raise self.error
        if self.waiting is None:
            return
        await self.waiting
        while self.backlog:
            await self.send({"type": "http.response.body", "body": self.backlog.pop(0), "more_body": True})
        self.waiting = None
        self.up.resume_reading()


class _Proxy:
    """The ASGI app: lifespan opens and closes the backend connection pool; http requests are proxied."""

    def __init__(
        self,
        backend_url: str,
        served_model: str,
        presets: Mapping[str, SamplingPreset],
        policy: Policy,
        auto: bool = False,
        max_body: int | None = None,
    ):
        if policy not in POLICIES:
            raise UserError(f"unknown policy {policy!r}", f"use one of {', '.join(POLICIES)}")
        if auto:
            check_auto(presets)
        self.backend = normalize_backend(backend_url)
        self.served = served_model
        self.presets = dict(presets)
        self.virtual = {f"{served_model}-{name}": p for name, p in self.presets.items()}
        self.policy: Policy = policy
        self.auto = auto
        self.max_body = DEFAULT_MAX_BODY if max_body is None else max_body
        self.pool: BackendPool | None = None
        self.metrics = ProxyMetrics()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        # websockets: vLLM's realtime endpoints are not proxied (uvicorn answers 403)

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.open()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def open(self) -> None:
        """Open the backend connection pool (the lifespan does it; an app embedding the proxy calls it)."""
        self.pool = BackendPool(self.backend)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    # ------------------------------------------------------------------ request handling

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        declared = _declared_length(scope["headers"])
        try:
            if declared is not None and declared > self.max_body:
                raise _TooLarge  # refused before reading a byte of it
            body = await _read_body(receive, self.max_body)
        except _TooLarge:
            self.metrics.rejected["body_too_large"] += 1
            await _reply(
                send,
                413,
                openai_error_body(
                    413,
                    f"Request body too large: the proxy accepts at most {self.max_body} bytes (servectl proxy --max-body-mib).",
                    "invalid_request_error",
                ),
                [*_JSON, (b"connection", b"close")],
            )
            return
        if body is None:
            return
        await self.forward(scope, receive, send, body, started)

    async def forward(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        body: bytes | None,
        started: float,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Proxy a request whose body was read already: `body` as received, or None with `data` (its JSON, parsed
        and changed by the caller: servectl.fleet's front door routes by `model` and rewrites aliases)."""
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == METRICS_PATH:
            await _reply(send, 200, self.metrics.text(), [(b"content-type", CONTENT_TYPE)])
            return
        info = None
        if method == "POST" and (body is None or body) and path in REWRITE_PATHS:
            rewritten = self.rewrite(body, chat=REWRITE_PATHS[path], data=data)
            if isinstance(rewritten[0], int):
                self.metrics.rejected["unknown_preset"] += 1
                await _reply(send, *rewritten)
                return
            body, info = rewritten
            self.metrics.requested(info)
        elif body is None:
            body = json.dumps(data).encode()
        # A client that disconnects while vLLM is still working (a non-streaming reply has no
        # headers until it is complete) or while a stream is relayed must cancel the upstream
        # request: uvicorn's send() after a disconnect returns silently, so only receive() tells.
        # One watcher task per request cancels this one; closing the upstream connection in the
        # cancelled code makes vLLM abort the generation.
        me = asyncio.current_task()
        assert me is not None  # called from uvicorn's request task
        state = {"done": False, "gone": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state["done"]:
                state["gone"] = True
                me.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            if method == "GET" and path == "/v1/models":
                await self.models(scope, body, send)
            else:
                await self.relay(scope, body, send, info, started)
        except asyncio.CancelledError:
            if not state["gone"]:
                raise  # the server is shutting down, not the client leaving
            me.uncancel()
        finally:
            state["done"] = True
            watcher.cancel()

    def rewrite(self, raw: bytes | None, *, chat: bool, data: Any = None) -> tuple[bytes, bytes | None] | tuple[int, bytes]:
        """(body for the backend, x-servectl-proxy info or None), or (status, error body) for an unknown preset.
        `raw` None: the body is `data` (already parsed), sent re-encoded."""
        if raw is not None:
            try:
                data = json.loads(raw)
            except ValueError:
                return raw, None  # not JSON: the backend says what is wrong
        else:
            raw = json.dumps(data).encode()
        if not isinstance(data, dict) or not isinstance(model := data.get("model"), str):
            return raw, None
        preset = self.virtual.get(model)
        if preset is not None:
            out = apply_preset(data, preset, self.served, chat=chat, policy=self.policy)
            return json.dumps(out).encode(), b"preset=%s; by=model" % preset.name.encode()
        if model.startswith(self.served + "-"):
            known = ", ".join(sorted(self.virtual)) or "none"
            return 404, openai_error_body(
                404,
                f"The model `{model}` does not exist: no sampling preset {model[len(self.served) + 1 :]!r} (known: {known}).",
                "NotFoundError",
                "model",
            )
        if not (self.auto and model == self.served):
            return raw, b"preset=none; by=model"
        data, name = choose(data)
        if name is None:
            return json.dumps(data).encode(), b"preset=none; by=auto"
        out = apply_preset(data, self.presets[name], self.served, chat=chat, policy=self.policy)
        return json.dumps(out).encode(), b"preset=%s; by=auto" % name.encode()

    async def open_upstream(self, scope: dict[str, Any], body: bytes, send: Any) -> BackendResponse | None:
        """Send the request to the backend and return its answer, head read, body not yet;
        on failure answer the client 502 and return None."""
        assert self.pool is not None, "the proxy app was not started (lifespan)"
        target = scope.get("raw_path") or scope["path"].encode()
        if query := scope.get("query_string"):
            target += b"?" + query
        try:
            drop = _MODELS_REQUEST_DROP if scope["path"] == "/v1/models" else _REQUEST_DROP
            headers = _kept_headers(scope["headers"], drop)
            return await self.pool.request(scope["method"].encode(), target, headers, body)
        except BackendError as exc:
            await self.bad_gateway(send, exc)
            return None

    async def bad_gateway(self, send: Any, exc: BaseException) -> None:
        self.metrics.backend_errors += 1
        await _reply(send, 502, openai_error_body(502, f"backend {self.backend} failed: {exc}", "BadGateway"))

    async def relay(self, scope: dict[str, Any], body: bytes, send: Any, info: bytes | None, started: float) -> None:
        """Forward the request and relay the answer: its head (hop-by-hop headers dropped), then the
        body chunk by chunk as it arrives (raw bytes, no buffering)."""
        forwarded = time.perf_counter()
        up = await self.open_upstream(scope, body, send)
        if up is None:
            return
        try:
            headers = _kept_headers(up.headers, _RESPONSE_DROP)
            if info is not None:
                own_ms = (forwarded - started + time.perf_counter() - up.head_at) * 1000
                headers.append((INFO_HEADER, b"%s; ms=%.3f" % (info, own_ms)))
            await send({"type": "http.response.start", "status": up.status, "headers": headers})
            await up.relay(_BodySender(send, up))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BackendError:
            # The backend broke off mid-body: return without ending the response, so the server
            # closes the client's connection too and the client sees a cut stream, not a whole one.
            pass
        finally:
            # An answer read to its end goes back to the pool; otherwise (the client left, the
            # backend broke off) this closes the backend connection.
            up.release()

    async def models(self, scope: dict[str, Any], body: bytes, send: Any) -> None:
        """The backend's model list plus one entry per virtual name (copying the real model's fields)."""
        up = await self.open_upstream(scope, body, send)
        if up is None:
            return
        try:
            raw = await asyncio.wait_for(up.read(MODELS_BODY_LIMIT), MODELS_DEADLINE_S)
        except (BackendError, asyncio.TimeoutError) as exc:
            await self.bad_gateway(
                send,
                exc if isinstance(exc, BackendError) else BackendError(f"no whole model list within {MODELS_DEADLINE_S:g} s"),
            )
            return
        finally:
            up.release()
        headers = _kept_headers(up.headers, _REWRITTEN_DROP)
        try:
            data = json.loads(raw) if up.status == 200 else None
        except ValueError:
            data = None
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):  # an error, or not a model list: relay as it came
            await _reply(send, up.status, raw, headers)
            return
        real = next((m for m in entries if isinstance(m, dict) and m.get("id") == self.served), None)
        base = dict(real) if real else {"object": "model", "owned_by": "vllm"}
        for name in self.virtual:
            entry = {k: v for k, v in base.items() if k != "permission"}
            entry.update(id=name, parent=self.served)
            entries.append(entry)
        await _reply(send, 200, json.dumps(data).encode(), headers)


def build_app(
    backend_url: str,
    served_model: str,
    presets: Mapping[str, SamplingPreset],
    policy: Policy = "preset-wins",
    auto: bool = False,
    max_body: int | None = None,
) -> _Proxy:
    """The proxy as an ASGI app (its backend connection pool opens and closes with the lifespan)."""
    return _Proxy(backend_url, served_model, presets, policy, auto, max_body)


class _ShutdownCutsAreExpected(logging.Filter):
    """Streams outlive a Ctrl-C: after the grace period uvicorn cancels them and logs each one as
    "Exception in ASGI application" with a CancelledError traceback. The client sees its stream
    cut, which is what a shutdown means; the traceback says nothing, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


_SHUTDOWN_FILTER = _ShutdownCutsAreExpected()


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    # The backend's Date/Server headers are relayed; uvicorn must not add second copies.
    # proxy_headers=False: the app never reads the client address, so uvicorn need not rewrite it
    # from X-Forwarded-For on every request; the header itself is still forwarded.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    logging.getLogger("uvicorn.error").addFilter(_SHUTDOWN_FILTER)  # after Config, which sets up uvicorn's loggers
    return config


def serve_proxy(
    backend_url: str,
    listen_host: str,
    listen_port: int,
    served_model: str,
    presets: Mapping[str, SamplingPreset],
    policy: Policy = "preset-wins",
    auto: bool = False,
    max_body: int | None = None,
    on_bound: Callable[[int], None] | None = None,
) -> None:
    """Serve the proxy in the foreground until interrupted. UserError (one line) when the backend is the
    proxy's own address or the port is taken: the socket is bound here, before uvicorn starts, and `on_bound`
    gets the port it has (the one the OS chose for port 0)."""
    refuse_self(backend_url, listen_host, listen_port)
    sock = bind_listen(listen_host, listen_port)
    if on_bound is not None:
        on_bound(sock.getsockname()[1])
    app = build_app(backend_url, served_model, presets, policy, auto, max_body)
    uvicorn.Server(uvicorn_config(app, listen_host, listen_port)).run(sockets=[sock])


def _addresses(host: str, port: int) -> set[str]:
    import socket

    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError, ValueError):
        return set()


def refuse_self(backend_url: str, listen_host: str, listen_port: int) -> None:
    """A proxy whose backend is itself would forward every request to itself, without end."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(normalize_backend(backend_url))
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UserError(f"--backend {backend_url!r} is not an http(s) URL", "e.g. --backend http://127.0.0.1:8000") from None
    if port != listen_port or not parts.hostname:
        return
    backend = _addresses(parts.hostname, port)
    listen = _addresses(listen_host, listen_port)
    wildcard = any(ipaddress.ip_address(a.split("%")[0]).is_unspecified for a in listen)
    local = any(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in backend)
    if backend & listen or (wildcard and local):
        raise UserError(
            f"the backend {backend_url} is this proxy's own address ({listen_host}:{listen_port})",
            "point --backend at the vLLM server, or --listen on another port",
        )


def bind_listen(host: str, port: int):
    """The proxy's listening socket, bound now (SO_REUSEADDR as uvicorn sets it): a taken port is one line, exit 2."""
    import socket

    infos = _addresses(host, port)
    if not infos:
        raise UserError(f"cannot resolve --listen host {host!r}", "use an address such as 127.0.0.1")
    addr = sorted(infos)[0]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((addr, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", "another process holds that port: pick another --listen"
        ) from None
    sock.set_inheritable(True)
    return sock


class ProxyThread:
    """The proxy on a background thread (used by `servectl up --proxy` and tests); stop() ends it."""

    def __init__(
        self,
        backend_url: str,
        listen_host: str,
        listen_port: int,
        served_model: str,
        presets: Mapping[str, SamplingPreset],
        policy: Policy = "preset-wins",
        auto: bool = False,
        max_body: int | None = None,
    ):
        self.url = f"http://{listen_host}:{listen_port}"
        refuse_self(backend_url, listen_host, listen_port)
        sock = bind_listen(listen_host, listen_port)
        app = build_app(backend_url, served_model, presets, policy, auto, max_body)
        self.server = uvicorn.Server(uvicorn_config(app, listen_host, listen_port))
        self.thread = threading.Thread(target=lambda: self.server.run(sockets=[sock]), name="servectl-proxy", daemon=True)

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
    from servectl import netio

    try:
        resp = netio.get(url, timeout, body_limit=MODELS_BODY_LIMIT, headers=headers)
    except httpx.HTTPError as exc:
        raise UserError(
            f"cannot reach the backend at {url}: {type(exc).__name__}", "start it first, or check --backend"
        ) from None
    if resp.status_code != 200:
        raise UserError(f"{url} answered HTTP {resp.status_code}", "check --backend (and the API key), or pass --model")
    try:
        ids = [m["id"] for m in netio.json_of(resp)["data"]]
        if not all(isinstance(i, str) for i in ids):
            raise TypeError("model ids are not strings")
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{url} did not return an OpenAI model list", "check --backend, or pass --model") from None
    if len(ids) != 1:
        raise UserError(f"the backend serves {len(ids)} models ({', '.join(ids) or 'none'})", "pass --model NAME")
    return ids[0]


def start_for_deployment(backend_url: str, served_model: str, family: str | None, host: str, port: int) -> ProxyThread:
    """The proxy for a server `servectl up` started: the recipe's preset family (all presets when it names none)."""
    from servectl.catalog.presets import select_presets

    return ProxyThread(backend_url, host, port, served_model, select_presets(family)).start()


def compose_service(spec: Any, port: int, image: str | None = None) -> dict[str, Any]:
    """The proxy as a Compose service for `spec` (a LaunchSpec), published on `port` (see servectl.render.proxy)."""
    from servectl.render import proxy as rendered

    return rendered.compose_service(spec, port, image or rendered.DEFAULT_IMAGE)


def systemd_unit(spec: Any, port: int, servectl_bin: str | None = None) -> str:
    """The proxy's systemd unit for `spec`, bound to the vLLM unit (see servectl.render.proxy)."""
    from servectl.render import proxy as rendered

    return rendered.systemd_unit(spec, port, servectl_bin or rendered.DEFAULT_SERVECTL_BIN)
