"""Network and process reads for `servectl top`, each bounded: a total deadline (the call returns by then,
whatever the other side does) and, for HTTP, a body limit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")

MAX_METRICS_BYTES = 16 * 2**20  # vLLM's /metrics is ~50 KB per engine; LoRA labels and many engines stay far below


class FetchError(Exception):
    """One line saying why a read failed (shown in top's state column)."""


def within(deadline_s: float, work: Callable[[Callable[[Callable[[], None]], None]], T], what: str) -> T:
    """Run `work` in a worker thread and return its result by `deadline_s`, else raise FetchError. `work` gets a
    function to register a way to abort itself (closing its connection), called when the deadline passes."""
    result: dict[str, object] = {}
    aborts: list[Callable[[], None]] = []

    def run() -> None:
        try:
            result["value"] = work(aborts.append)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name=f"servectl-top-{what}")
    worker.start()
    worker.join(deadline_s)
    if worker.is_alive():
        for abort in aborts:
            try:
                abort()
            except (OSError, RuntimeError, httpx.HTTPError):  # closing a stuck connection: the FetchError below says it
                pass
        raise FetchError(f"{what}: no answer within {deadline_s:g} s")
    if "error" in result:
        exc = result["error"]
        if isinstance(exc, FetchError):
            raise exc
        if isinstance(exc, httpx.HTTPError):
            raise FetchError(f"{what}: {type(exc).__name__}: {exc}") from None
        raise exc  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def get_text(client: httpx.Client, url: str, deadline_s: float = 5.0, max_bytes: int = MAX_METRICS_BYTES) -> str:
    """GET url: the body as text; FetchError on a non-200 answer, a body over max_bytes, or no answer by the deadline."""

    def work(on_abort: Callable[[Callable[[], None]], None]) -> str:
        with client.stream("GET", url) as response:
            on_abort(response.close)
            if response.status_code != 200:
                raise FetchError(f"GET {url} answered {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"GET {url}: body of {declared} bytes is over the {max_bytes} byte limit")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"GET {url}: body over the {max_bytes} byte limit")
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", errors="replace")

    return within(deadline_s, work, "metrics")
