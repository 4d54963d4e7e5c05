"""Bounded HTTP: every request servectl makes has a total deadline and a body limit.

httpx's timeouts are per socket operation: a server that sends one byte a second never trips a read
timeout, and a body that never ends is read into memory. The clients made here close both holes:

- sync (`client`): the transport's network streams take their timeout from the request's deadline, so
  connect, sending, the response head and every body read together stay within `total_s` (a server
  dripping bytes is cut off at the deadline, wherever it drips);
- async (`async_client`): the request runs under `asyncio.timeout`, and every body chunk under the same
  deadline;
- both count body bytes and stop at `body_limit` (BodyTooLarge, an httpx.ReadError).

Errors are httpx's own kinds (a passed deadline is an httpx.ReadTimeout), so `except httpx.HTTPError`
catches them. `json_of(response)` parses a body strictly (no NaN / Infinity, no 1e400).
Reuse: `with netio.client(5) as http: http.get(url)`; `openai.OpenAI(http_client=netio.client(...))`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Iterator

import httpcore
import httpx

from servectl.fsutil import MIB, loads_strict

BODY_LIMIT = 16 * MIB  # vLLM's JSON answers and /metrics are kilobytes; a completion of 32k tokens ~ 1 MiB


class BodyTooLarge(httpx.ReadError):
    """The response body passed the client's limit."""


def _deadline_passed(total_s: float) -> str:
    return f"no complete answer within the total deadline of {total_s:g} s"


class _Deadline:
    """The deadline the network streams of one transport read against (set per request, per body chunk)."""

    def __init__(self, total_s: float):
        self.total_s = total_s
        self.at = time.monotonic() + total_s

    def left(self, timeout: float | None) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise httpcore.ReadTimeout(_deadline_passed(self.total_s))
        return remaining if timeout is None else min(timeout, remaining)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline):
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> "_Stream":
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, self._deadline.left(timeout)), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, deadline: _Deadline):
        self._inner, self._deadline = inner, deadline

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None
    ) -> _Stream:
        stream = self._inner.connect_tcp(host, port, self._deadline.left(timeout), local_address, socket_options)
        return _Stream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(path, self._deadline.left(timeout), socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _LimitedBody(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, shared: _Deadline, at: float, limit: int):
        self._inner, self._shared, self._at, self._limit = inner, shared, at, limit

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        chunks = iter(self._inner)
        while True:
            self._shared.at = self._at  # this response's deadline, also when another request ran in between
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            seen += len(chunk)
            if seen > self._limit:
                raise BodyTooLarge(f"the answer is larger than {self._limit // MIB} MiB")
            yield chunk

    def close(self) -> None:
        self._inner.close()


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport with a total deadline per request and a body limit (see the module doc)."""

    def __init__(self, total_s: float, body_limit: int = BODY_LIMIT, **kw: Any):
        super().__init__(**kw)
        self.total_s, self.body_limit = total_s, body_limit
        self._deadline = _Deadline(total_s)
        # httpcore builds every connection from this backend; ours bounds each socket operation by the deadline
        self._pool._network_backend = _Backend(self._pool._network_backend, self._deadline)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        at = time.monotonic() + self.total_s
        self._deadline.at = at
        response = super().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _LimitedBody(response.stream, self._deadline, at, self.body_limit)
        return response


class _LimitedAsyncBody(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, at: float, total_s: float, limit: int):
        self._inner, self._at, self._total_s, self._limit = inner, at, total_s, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        chunks = self._inner.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(self._at):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise httpx.ReadTimeout(_deadline_passed(self._total_s)) from None
            seen += len(chunk)
            if seen > self._limit:
                raise BodyTooLarge(f"the answer is larger than {self._limit // MIB} MiB")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class AsyncDeadlineTransport(httpx.AsyncHTTPTransport):
    """The asyncio flavour: each request, head and body, within `total_s`; the body within `body_limit`."""

    def __init__(self, total_s: float, body_limit: int = BODY_LIMIT, **kw: Any):
        super().__init__(**kw)
        self.total_s, self.body_limit = total_s, body_limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        at = time.monotonic() + self.total_s
        try:
            async with asyncio.timeout_at(at):
                response = await super().handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout(_deadline_passed(self.total_s), request=request) from None
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _LimitedAsyncBody(response.stream, at, self.total_s, self.body_limit)
        return response


def client(
    total_s: float, *, body_limit: int = BODY_LIMIT, headers: dict[str, str] | None = None, follow_redirects: bool = False
) -> httpx.Client:
    """A sync client whose every request finishes (head and body) within `total_s` and reads at most `body_limit`."""
    return httpx.Client(
        transport=DeadlineTransport(total_s, body_limit), timeout=total_s, headers=headers, follow_redirects=follow_redirects
    )


def async_client(
    total_s: float, *, body_limit: int = BODY_LIMIT, headers: dict[str, str] | None = None, connections: int = 10
) -> httpx.AsyncClient:
    """An asyncio client with the same bounds; `connections` concurrent requests at most."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        transport=AsyncDeadlineTransport(total_s, body_limit, limits=limits), timeout=total_s, headers=headers
    )


def json_of(response: httpx.Response) -> Any:
    """The response body as strict JSON; ValueError when it is not (NaN, Infinity, 1e400 included)."""
    return loads_strict(response.content)


def get(url: str, total_s: float, *, body_limit: int = BODY_LIMIT, headers: dict[str, str] | None = None) -> httpx.Response:
    """One GET within the bounds (a fresh connection)."""
    with client(total_s, body_limit=body_limit, headers=headers) as http:
        return http.get(url)
