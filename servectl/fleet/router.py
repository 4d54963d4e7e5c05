"""The front door: one OpenAI-compatible endpoint in front of the fleet's servers (an ASGI app on uvicorn).

- GET /v1/models: every model with its state (stopped, starting, ready, sleeping), its aliases and the sampling
  presets as virtual names (`<model>-<preset>`, servectl.proxy), whether it runs or not; /v1/models/{id} one;
- GET /health: the front door itself (200 while it serves; each model's state in the body);
- GET /metrics: Prometheus text (servectl.fleet.metrics); GET /metrics/models: vLLM's own metrics of every server
  that is up, labelled by model (servectl.fleet.metrics.relay; each read bounded in time and size);
- any request whose JSON body names a `model` on an inference path (/v1/..., /tokenize, /detokenize, /pooling,
  /classify, /score, /rerank, /invocations) is routed by that name: the model is made ready if it is not (the
  request waits, bounded), then the preset proxy of that server relays it (aliases and presets rewritten,
  streams passed through chunk by chunk, a client that leaves cancels the generation). Everything else is 404:
  vLLM's administrative endpoints (sleep, wake-up, weights, profiling) are never reachable from outside.

Refusals are OpenAI-shaped JSON errors: 400 (no model named, body not JSON), 404 (unknown model or path), 413
(body above `max_body_mib`), 503 with Retry-After (queue full, not ready within the queue timeout, start failed,
shutting down: the message says which and why).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from servectl.fleet.manager import Manager, Refused
from servectl.fleet.metrics import CONTENT_TYPE, RELAY_PATH, FleetMetrics, relay
from servectl.fleet.sizing import Fleet
from servectl.proxy.app import _declared_length, _read_body, _reply, _TooLarge, openai_error_body

FORWARD_EXACT = frozenset({"/tokenize", "/detokenize", "/pooling", "/classify", "/score", "/rerank", "/invocations"})
FORWARD_PREFIXES = ("/v1/", "/v2/")
NEVER_FORWARDED = frozenset({"/v1/load_lora_adapter", "/v1/unload_lora_adapter"})  # server administration
RETRY_AFTER = {"queue_full": 2, "deadline": 10, "start_failed": 30, "shutting_down": 30}
RELAY_TIMEOUT_S = 5.0  # each server's /metrics, read in parallel: within Prometheus' default 10 s scrape timeout
RELAY_MAX_BYTES = 16 << 20  # vLLM's exposition is ~100 KB; a server answering more is not read
_JSON = [(b"content-type", b"application/json")]


def routable(path: str) -> bool:
    return (
        path not in NEVER_FORWARDED
        and not path.startswith("/v1/models")
        and (path in FORWARD_EXACT or path.startswith(FORWARD_PREFIXES))
    )


class FrontDoor:
    """The ASGI app; its lifespan begins the fleet (preloads, timers) and ends it (every server stopped)."""

    def __init__(self, fleet: Fleet, manager: Manager, metrics: FleetMetrics):
        self.fleet, self.manager, self.metrics = fleet, manager, metrics
        self.created = int(time.time())
        self._begin: asyncio.Task | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    self._begin = asyncio.get_running_loop().create_task(self.manager.begin())
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await self.manager.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        if method in ("GET", "HEAD"):
            if path == "/health":
                return await self._json(
                    send,
                    200,
                    {
                        "status": "shutting down" if self.manager.closing else "ok",
                        "models": {m["name"]: m["state"] for m in self.manager.snapshot()},
                    },
                )
            if path == "/metrics":
                return await _reply(send, 200, self.metrics.text(), [(b"content-type", CONTENT_TYPE)])
            if path == RELAY_PATH:
                return await _reply(send, 200, await self.relayed(), [(b"content-type", CONTENT_TYPE)])
            if path == "/v1/models":
                return await self._json(send, 200, {"object": "list", "data": self.model_list()})
            if path.startswith("/v1/models/"):
                wanted = path[len("/v1/models/") :]
                entry = next((e for e in self.model_list() if e["id"] == wanted), None)
                if entry is None:
                    return await self._error(send, 404, f"The model `{wanted}` does not exist.", "NotFoundError", "model")
                return await self._json(send, 200, entry)
        if not routable(path):
            return await self._error(
                send,
                404,
                f"{method} {path} is not served by the front door "
                "(inference paths that name a model in a JSON body, /v1/models, /health, /metrics, "
                f"{RELAY_PATH})",
                "NotFoundError",
            )
        declared = _declared_length(scope["headers"])
        try:
            if declared is not None and declared > self.fleet.max_body:
                raise _TooLarge
            body = await _read_body(receive, self.fleet.max_body)
        except _TooLarge:
            return await self._error(
                send,
                413,
                f"Request body too large: the front door accepts at most {self.fleet.max_body} "
                "bytes (max_body_mib in the fleet file).",
                "invalid_request_error",
                extra=[(b"connection", b"close")],
            )
        if body is None:
            return
        try:
            data = json.loads(body) if body else None
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            data = None
        asked = data.get("model") if isinstance(data, dict) else None
        if not isinstance(asked, str):
            return await self._error(
                send,
                400,
                "Name a model: the front door routes by the `model` field of a JSON body "
                f"({', '.join(self.fleet.members)}; GET /v1/models lists every name).",
                "invalid_request_error",
                "model",
            )
        route = self.fleet.routes.get(asked)
        if route is None:
            shown = asked if len(asked) <= 200 else asked[:200] + "..."
            return await self._error(
                send,
                404,
                f"The model `{shown}` does not exist (GET /v1/models lists the fleet's models, aliases and preset names).",
                "NotFoundError",
                "model",
            )
        name, preset = route
        model = await self._acquire(name, receive, send)
        if model is None:
            return
        try:
            self.metrics.requests.labels(name).inc()
            wanted = name if preset is None else f"{name}-{preset}"
            if wanted == asked:
                await model.proxy.forward(scope, receive, send, body, started)
            else:  # an alias, or a preset under an alias: the server knows only its own name
                assert isinstance(data, dict)  # it named the model
                await model.proxy.forward(scope, receive, send, None, started, data={**data, "model": wanted})
        finally:
            self.manager.release(model)

    async def _acquire(self, name: str, receive: Any, send: Any):
        """The model ready and counted busy; None after answering 503, or when the client left while it waited."""
        deadline = time.monotonic() + self.fleet.queue_timeout_s
        loop = asyncio.get_running_loop()
        acquiring = loop.create_task(self.manager.acquire(name, deadline))
        gone = loop.create_task(_disconnect(receive))
        try:
            await asyncio.wait({acquiring, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not acquiring.done():  # the client went away while it waited: it no longer waits
            acquiring.cancel()
            try:
                await acquiring
            except (asyncio.CancelledError, Refused):
                pass
            else:
                self.manager.release(acquiring.result())
            return None
        try:
            return acquiring.result()
        except Refused as exc:
            self.metrics.rejected.labels(name, exc.reason).inc()
            retry = str(RETRY_AFTER.get(exc.reason, 10)).encode()
            await self._error(send, 503, exc.message, "ServiceUnavailable", "model", extra=[(b"retry-after", retry)])
            return None

    async def relayed(self) -> bytes:
        """vLLM's /metrics of every server that is up (ready or asleep), merged and labelled by model."""
        up = {
            m.name: m.running.url
            for m in self.manager.models.values()
            if m.state in ("ready", "sleeping") and m.running is not None
        }
        texts = await asyncio.gather(*(_read_metrics(url + "/metrics") for url in up.values()))
        return relay(dict(zip(up, texts)))

    def model_list(self) -> list[dict[str, Any]]:
        """Every model (state, memory, aliases, error), then its aliases and preset names (parent = the model)."""
        out, extra = [], []
        for snap in self.manager.snapshot():
            member = self.fleet.members[snap["name"]]
            base = {
                "object": "model",
                "created": self.created,
                "owned_by": "servectl",
                "root": member.spec.model,
                "state": snap["state"],
            }
            out.append(
                {
                    "id": snap["name"],
                    **base,
                    "parent": None,
                    "recipe": member.spec.recipe,
                    "pool": snap["pool"],
                    "memory_mib": snap["memory_mib"],
                    "aliases": snap["aliases"],
                    "error": snap["error"],
                }
            )
            for public, (owner, preset) in self.fleet.routes.items():
                if owner == snap["name"] and public != owner and (preset is None or public.startswith(owner + "-")):
                    extra.append({"id": public, **base, "parent": owner, "preset": preset})
        return out + extra

    async def _json(self, send: Any, status: int, data: Any) -> None:
        await _reply(send, status, json.dumps(data).encode(), _JSON)

    async def _error(
        self,
        send: Any,
        status: int,
        message: str,
        kind: str,
        param: str | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        await _reply(send, status, openai_error_body(status, message, kind, param), [*_JSON, *(extra or [])])


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_metrics(url: str) -> str | None:
    """A server's Prometheus text, or None: not 200, larger than RELAY_MAX_BYTES, or not within RELAY_TIMEOUT_S."""
    import httpx

    async def read() -> str | None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(RELAY_TIMEOUT_S)) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    return None
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > RELAY_MAX_BYTES:
                        return None
                return body.decode("utf-8", errors="replace")

    try:
        return await asyncio.wait_for(read(), RELAY_TIMEOUT_S)
    except (asyncio.TimeoutError, httpx.HTTPError):
        return None
