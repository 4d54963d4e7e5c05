"""Network and process reads for `servectl top`, each bounded: a total deadline (the call returns by then,
whatever the other side does) and, for HTTP, a body limit (servectl.netio's client: one way to read the
network). `within` bounds a blocking call that has no deadline of its own (the Docker SDK's stats)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import httpx

from servectl import netio

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


class MetricsReader:
    """GETs of Prometheus text through one servectl.netio client: every request answered (head and body) within
    `deadline_s` and at most `max_bytes` read, whatever the server does; failures are FetchError lines."""

    def __init__(self, deadline_s: float = 5.0, max_bytes: int = MAX_METRICS_BYTES):
        self.deadline_s, self.max_bytes = deadline_s, max_bytes
        self._http = netio.client(deadline_s, body_limit=max_bytes, headers={"accept": "text/plain"})

    def get_text(self, url: str) -> str:
        """The body of GET url as text; FetchError on a non-200 answer, a body over the limit or no answer in time."""
        try:
            response = self._http.get(url)
        except netio.BodyTooLarge:
            raise FetchError(f"GET {url}: body over the {self.max_bytes} byte limit") from None
        except httpx.TimeoutException:
            raise FetchError(f"metrics: no answer within {self.deadline_s:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"metrics: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise FetchError(f"GET {url} answered {response.status_code}")
        return response.content.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "MetricsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
