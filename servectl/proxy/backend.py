"""The proxy's connections to its backend: HTTP/1.1 on asyncio protocols, parsed by httptools (llhttp, C).

Why not an HTTP client library: a token stream is thousands of small chunks per second, and a
client library hands each one through its stream reader, a future and a task switch before the
proxy can pass it on (about 20 us of CPU per chunk, benchmarks/proxy_overhead.py). Here the
parser's body callback hands each chunk to a sink the caller attached, on the same stack that read
it from the socket; the sink writes it to the client. The chunked framing is undone by the parser
and the client's server frames the body again, so nothing is parsed per chunk in Python.

One BackendPool per proxy: idle keep-alive connections are reused for at most IDLE_SECONDS, below
uvicorn's default keep-alive timeout (5 s, which vLLM's API server keeps), so the backend rarely
closes one as it is being reused; a reused connection that closes before any byte of the answer
came is retried once on a fresh one (the backend saw no request, or dropped it unanswered).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

IDLE_SECONDS = 4.0
CONNECT_TIMEOUT = 10.0
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})

Sink = Callable[[bytes], None]


class BackendError(Exception):
    """The backend could not be reached, broke the protocol, or broke off mid-answer."""


class _Closed(BackendError):
    """The connection closed before any byte of the answer (retried once when it was a reused one)."""


class Connection(asyncio.Protocol):
    """One keep-alive connection to the backend, carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._loop = asyncio.get_running_loop()
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        self.got_bytes = False
        self.head_only = False
        self.in_flight = False  # a request was sent and its answer is not complete
        self._sink: Sink | None = None
        self._chunks: list[bytes] = []  # body parsed from the latest read (or before a sink was attached)
        self._head: asyncio.Future[None] = self._loop.create_future()
        self._event: asyncio.Future[None] | None = None
        self.error: BackendError | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's transport (create_connection)

    def _open_transport(self) -> asyncio.Transport:
        """The transport, which connection_made set before any data or request."""
        assert self.transport is not None
        return self.transport

    def data_received(self, data: bytes) -> None:
        if not self.in_flight:  # bytes nobody asked for (say, a 408 before an idle close): drop the connection
            self.lost = True
            self._open_transport().close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not (self.head_only and self.status):  # a HEAD answer's length names a body that never comes
                self._fail(BackendError(f"bad HTTP from the backend: {exc}"))
                self._open_transport().close()
        if self._chunks and self._sink is not None:
            self._flush(self._sink)

    def _flush(self, sink: Sink) -> None:
        # what one read brought goes on as one piece: a client write (a syscall) per read, not per SSE event
        chunks, self._chunks = self._chunks, []
        sink(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.complete or not self.in_flight:
            return  # an idle connection the backend closed: the pool drops it
        if self._head.done() and self.status and not self._has_length():
            self._message_done()  # an answer delimited by the connection's end
            return
        what = "closed the connection" if exc is None else f"{type(exc).__name__}: {exc}"
        self._fail(_Closed(f"the backend {what}") if not self.got_bytes else BackendError(f"the backend {what} mid-answer"))

    # ------------------------------------------------------------------ httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): the real head follows
            self.headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self._head.set_result(None)
        if self.head_only:
            self.keep_alive = False
            self._message_done()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self.status and not self.complete:
            self._message_done()

    # ------------------------------------------------------------------ for the pool and the relay

    def _has_length(self) -> bool:
        return any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def _message_done(self) -> None:
        self.complete = True
        self.in_flight = False
        self._wake()

    def _fail(self, error: BackendError) -> None:
        if self.error is None:
            self.error = error
        if not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._event is not None and not self._event.done():
            self._event.set_result(None)

    def send_request(self, data: bytes, head_only: bool) -> None:
        self.head_only = head_only
        self.in_flight = True
        self._open_transport().write(data)

    async def head(self) -> None:
        await self._head

    def attach(self, sink: Sink) -> None:
        """From now on the body goes to `sink` as it is read, each read's worth in one call (what came already first)."""
        self._sink = sink
        if self._chunks:
            self._flush(sink)

    def detach(self) -> None:
        self._sink = None

    async def wait(self) -> None:
        """Until the answer is complete, the connection failed, or wake() is called (back-pressure)."""
        if self.complete or self.error:
            return
        self._event = self._loop.create_future()
        try:
            await self._event
        finally:
            self._event = None

    wake = _wake

    def pause_reading(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()

    def reusable(self) -> bool:
        return (
            self.complete and self.keep_alive and not self.lost and self.error is None and not self._open_transport().is_closing()
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # the backend sees the connection go: vLLM aborts the request

    def recycle(self) -> None:
        self._reset()


class BackendResponse:
    """A backend answer, head read, body not yet; `release()` it when done (it is then closed unless read to its end)."""

    def __init__(self, pool: BackendPool, conn: Connection):
        self._pool = pool
        self.conn: Connection | None = conn  # None once released (back to the pool, or closed)
        self.status = conn.status
        self.headers = conn.headers
        self.head_at = time.perf_counter()

    async def relay(self, sink: Sink) -> None:
        """Hand each body chunk to `sink` as it is parsed, until the answer ends (BackendError when it breaks off).

        A sink may have an async `catch_up()`: it is awaited whenever the sink calls wake(), for
        work that cannot be done on the parser's stack (see servectl.proxy.app._BodySender)."""
        conn = self._held()
        catch_up = getattr(sink, "catch_up", None)
        conn.attach(sink)
        try:
            while True:
                if catch_up is not None:
                    await catch_up()
                if conn.complete:
                    return
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        finally:
            conn.detach()

    async def read(self, limit: int = 16 * 2**20) -> bytes:
        """The whole body, at most `limit` bytes: a longer one closes the connection (BackendError)."""
        chunks: list[bytes] = []
        seen = 0
        over = False

        def take(chunk: bytes) -> None:
            nonlocal seen, over
            if over:
                return
            seen += len(chunk)
            if seen > limit:  # called on the parser's stack: stop here, let the loop see the closed connection
                over = True
                chunks.clear()
                self._held().close()
                return
            chunks.append(chunk)

        try:
            await self.relay(take)
        except BackendError:
            if not over:
                raise
        if over:
            raise BackendError(f"the answer is larger than {limit // 2**20} MiB")
        return b"".join(chunks)

    def _held(self) -> Connection:
        """The connection this answer is read from (a released answer has none: a caller's error)."""
        assert self.conn is not None, "the answer was released"
        return self.conn

    def wake(self) -> None:
        self._held().wake()

    def pause_reading(self) -> None:
        self._held().pause_reading()

    def resume_reading(self) -> None:
        self._held().resume_reading()

    def release(self) -> None:
        """Back to the pool when the answer was read to its end; otherwise the connection is closed."""
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        if conn.reusable():
            self._pool.put(conn)
        else:
            conn.close()


class BackendPool:
    """Keep-alive connections to one backend (http or https)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        host_header = host if default_port else f"{host}:{self.port}"
        self.host_header = host_header.encode() if host_header.isascii() else host_header.encode("idna")
        self._ssl = ssl.create_default_context() if self.tls else None
        self._idle: list[tuple[Connection, float]] = []

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    Connection, self.host, self.port, ssl=self._ssl, server_hostname=self.host if self.tls else None
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        return conn

    def _take_idle(self) -> Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn, since = self._idle.pop()
            if now - since < IDLE_SECONDS and not conn.lost and not conn._open_transport().is_closing():
                return conn
            conn.close()
        return None

    def put(self, conn: Connection) -> None:
        conn.recycle()
        self._idle.append((conn, asyncio.get_running_loop().time()))

    def encode_request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        out = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        if body or method in _BODY_METHODS:
            out.append(b"content-length: %d\r\n" % len(body))
        out += (b"\r\n", body)
        return b"".join(out)

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> BackendResponse:
        """Send the request; return once the answer's head is read. BackendError when that fails."""
        data = self.encode_request(method, target, headers, body)
        conn = self._take_idle()
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect()
            conn.send_request(data, head_only=method == b"HEAD")
            try:
                await conn.head()
            except _Closed:
                conn.close()
                if not reused:
                    raise
                conn, reused = None, False  # a stale keep-alive connection: once more on a new one
                continue
            except BaseException:
                conn.close()
                raise
            return BackendResponse(self, conn)

    def close(self) -> None:
        for conn, _ in self._idle:
            conn.close()
        self._idle.clear()
