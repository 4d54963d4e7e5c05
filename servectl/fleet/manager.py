"""The fleet at run time: each model's state, the requests waiting for it, and every start, wake-up, sleep and
stop, decided by placement (servectl.fleet.placement) under one lock so that two decisions never share the
same free memory.

States: stopped -> starting -> ready; ready -> stopping -> stopped | sleeping; sleeping -> waking -> ready.
Clients see stopped (also stopping), starting (also waking), ready and sleeping.

- A request for a model that is not ready waits (at most `queue.max_waiting` per model, each until its deadline)
  while one task brings the model up: concurrent requests for a cold model cause one start.
- Bringing up: placement decides; if idle models must make room they are put to sleep or stopped first (and the
  memory they held counts as held until they are done); if busy models hold the room, the start waits for a
  request to finish, re-deciding at every change. A start or wake that fails answers every request waiting for it
  with the diagnosis of the server's log; the next request tries again.
- A server that died is noticed (a ticker every half second, and before each request), its log diagnosed, its
  leftovers stopped and its record removed; the next request starts it again.
- Idle models sleep (vLLM's sleep mode) or stop after their TTL.
- Shutdown refuses waiting requests, cancels starts in progress and stops every server the fleet started.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servectl.errors import ServectlError
from servectl.fleet import backend, placement
from servectl.fleet.metrics import FleetMetrics
from servectl.fleet.sizing import Fleet, Member

TICK_S = 0.5
SLEEP_CALL_S = 300.0  # a sleep offloads the weights to host memory: seconds to minutes for a large model
WAKE_CALL_S = 300.0
SHOWN = {
    "stopped": "stopped",
    "stopping": "stopped",
    "starting": "starting",
    "waking": "starting",
    "ready": "ready",
    "sleeping": "sleeping",
}


class Refused(Exception):
    """A request the front door answers 503 (the message says why)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Model:
    """One model at run time."""

    member: Member
    state: placement.State = "stopped"
    busy: int = 0
    waiting: int = 0
    last_used: float = 0.0
    since: float = field(default_factory=time.monotonic)
    running: backend.Running | None = None
    proxy: Any = None  # servectl.proxy.app._Proxy to the running server
    task: asyncio.Task | None = None
    starting: Any = None  # (Launched, runner) of a start in progress
    last_error: str | None = None
    failures: int = 0  # failed starts so far (a waiting request compares it with what it saw)
    note: str = ""  # why a start waits
    preload_wanted: bool = False

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def shown(self) -> str:
        return SHOWN[self.state]


class Manager:
    def __init__(
        self,
        fleet: Fleet,
        executable: list[str],
        metrics: FleetMetrics,
        label: str,
        on_change: Callable[[], None] | None = None,
        ops: Any = backend,
    ):
        self.fleet = fleet
        self.ops = ops  # start / stop / diagnosis / log_tail of one server (servectl.fleet.backend)
        self.executable = executable
        self.metrics = metrics
        self.label = label  # what the servers' records name as their fleet
        self.on_change = on_change
        self.models = {name: Model(m) for name, m in fleet.members.items()}
        self.budgets = {pool: b.budget_mib for pool, b in fleet.budgets.items()}
        self.lock = asyncio.Lock()
        self.closing = False
        self._changed = asyncio.Event()
        self._cancel = threading.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(4, 2 * len(self.models)), thread_name_prefix="servectl-fleet"
        )
        self._ticker: asyncio.Task | None = None
        self._shutdown: asyncio.Task | None = None
        for name in self.models:
            metrics.declare(name)
        self._publish()

    # ------------------------------------------------------------------ bookkeeping

    def _set(self, m: Model, state: placement.State) -> None:
        if m.state != state:
            m.state, m.since = state, time.monotonic()

    def _publish(self) -> None:
        for m in self.models.values():
            self.metrics.set_state(m.name, m.shown)
        for pool, b in self.budgets.items():
            self.metrics.memory.labels(pool, "budget").set(b)
            self.metrics.memory.labels(pool, "used").set(placement.used(self.slots(), pool))

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._publish()
        if self.on_change is not None:
            self.on_change()

    async def _wait_change(self, timeout: float) -> None:
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout))
        except asyncio.TimeoutError:
            pass

    def slots(self) -> list[placement.Slot]:
        # Requests waiting for a ready model are about to be served by it: it is not idle (never evicted under them).
        return [
            placement.Slot(
                m.name,
                m.member.pool,
                m.member.share.awake_mib,
                m.member.share.asleep_mib,
                m.state,
                m.busy + (m.waiting if m.state == "ready" else 0),
                m.last_used,
                m.member.sleep,
            )
            for m in self.models.values()
        ]

    async def _thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------------ requests

    async def acquire(self, name: str, deadline: float) -> Model:
        """The model, ready and counted busy; Refused when it cannot be within the deadline (monotonic time)."""
        m = self.models[name]
        if m.state == "ready" and m.running is not None and m.running.alive() and not self.closing:
            m.busy += 1
            self.metrics.queue_seconds.labels(name).observe(0.0)
            return m
        if self.closing:
            raise Refused("shutting_down", "the fleet is shutting down")
        if m.waiting >= self.fleet.queue_max:
            raise Refused(
                "queue_full",
                f"{m.waiting} requests already wait for {name!r} (queue.max_waiting {self.fleet.queue_max}); retry later",
            )
        m.waiting += 1
        entered, failures = time.monotonic(), m.failures
        try:
            while True:
                if self.closing:
                    raise Refused("shutting_down", "the fleet is shutting down")
                if m.failures != failures:
                    raise Refused("start_failed", f"{name!r} could not be started: {m.last_error}")
                if m.state == "ready" and m.running is not None:
                    if m.running.alive():
                        m.busy += 1
                        self.metrics.queue_seconds.labels(name).observe(time.monotonic() - entered)
                        return m
                    self._died(m)
                    continue
                if m.task is None and m.state in ("stopped", "sleeping"):
                    m.task = asyncio.get_running_loop().create_task(self._bring_up(m))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Refused(
                        "deadline",
                        f"{name!r} was not ready within {time.monotonic() - entered:.0f} s: {self._why(m)}; retry later",
                    )
                await self._wait_change(left)
        finally:
            m.waiting -= 1

    def release(self, m: Model) -> None:
        m.busy -= 1
        m.last_used = time.monotonic()
        self.notify()

    def _why(self, m: Model) -> str:
        age = time.monotonic() - m.since
        if m.note:
            return m.note
        if m.state == "starting":
            return f"it is starting (for {age:.0f} s so far)"
        if m.state == "waking":
            return f"it is waking from sleep (for {age:.0f} s so far)"
        if m.state == "stopping":
            return "it is being stopped or put to sleep"
        return f"it is {m.shown}"

    # ------------------------------------------------------------------ bringing a model up

    async def _bring_up(self, m: Model) -> None:
        """One task per model: place it (waiting for room while requests want it), then wake or start it."""
        try:
            if self.lock.locked():
                m.note = "queued behind another model's start or swap"
                self.notify()
            async with self.lock:
                m.note = ""
                while True:
                    if self.closing or (m.waiting == 0 and not m.preload_wanted):
                        return
                    decision = placement.place(m.name, self.slots(), self.budgets)
                    if decision.outcome == "run":
                        break
                    if decision.outcome == "never":
                        self._failed(m, decision.reason)
                        return
                    note = f"waiting for room: {decision.reason}"
                    if note != m.note:
                        m.note = note
                        self.notify()
                    await self._wait_change(1.0)
                m.note = ""
                waking = m.state == "sleeping"
                self._set(m, "waking" if waking else "starting")
                evicted = [(self.models[e.name], e.action) for e in decision.evict]
                for other, _ in evicted:
                    self._set(other, "stopping")
                if evicted:
                    self.metrics.swaps.labels(m.name).inc()
                self.notify()
                await asyncio.gather(*(self._evict(other, action, "evicted") for other, action in evicted))
            if waking:
                if await self._wake(m):
                    return
                await self._stop(m, "wake_failed", final_state="starting")
            await self._start(m)
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave waiters hanging
            if m.state in ("starting", "waking"):
                self._set(m, "stopped")
            self._failed(m, f"internal error ({type(exc).__name__}: {exc})")
        finally:
            m.task = None
            self.notify()

    def _failed(self, m: Model, why: str) -> None:
        m.last_error = why
        m.failures += 1
        self.notify()

    async def _start(self, m: Model) -> None:
        spec = m.member.spec

        def on_started(launched, runner) -> None:
            m.starting = (launched, runner)

        try:
            result = await self._thread(
                self.ops.start, spec, self.executable, self.label, m.member.start_timeout_s, self._cancel, on_started
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the record name is held by a live deployment
            m.starting = None
            self._set(m, "stopped")
            self.metrics.start_failures.labels(m.name).inc()
            self._failed(m, exc.one_line() if isinstance(exc, ServectlError) else f"{type(exc).__name__}: {exc}")
            return
        m.starting = None
        if isinstance(result, backend.Failed):
            self._set(m, "stopped")
            self.metrics.start_failures.labels(m.name).inc()
            diagnosis = await self._thread(self.ops.diagnosis, result.log_text, spec)
            self._failed(m, f"{result.why}: {diagnosis} (log: {result.log_path})")
            return
        m.running = result
        m.proxy = self._proxy_for(m, result.url)
        m.last_used = time.monotonic()
        m.last_error = None
        self._set(m, "ready")
        self.metrics.starts.labels(m.name).inc()
        self.metrics.start_seconds.labels(m.name).observe(result.startup_s)
        self.notify()
        if self.closing:  # the fleet began stopping while this start finished
            await self._stop(m, "shutdown")

    def _proxy_for(self, m: Model, url: str):
        from servectl.proxy.app import build_app

        proxy = build_app(url, m.name, m.member.presets, auto=m.member.auto_presets, max_body=self.fleet.max_body)
        proxy.open()
        return proxy

    async def _call(self, m: Model, path: str, limit_s: float) -> str | None:
        """POST to the server's sleep API; None on success, else why not (a total deadline, a bounded body)."""
        import httpx

        run = m.running
        if run is None:
            return "the server is gone"

        async def post() -> str | None:
            async with httpx.AsyncClient(timeout=httpx.Timeout(limit_s)) as client:
                async with client.stream("POST", run.url + path) as resp:
                    body = b""
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > 65536:
                            break
                    return None if resp.status_code == 200 else f"HTTP {resp.status_code}: {body[:200]!r}"

        try:
            return await asyncio.wait_for(post(), limit_s)
        except (asyncio.TimeoutError, httpx.HTTPError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _wake(self, m: Model) -> bool:
        why = await self._call(m, "/wake_up", WAKE_CALL_S)
        if why is not None:
            m.last_error = f"wake-up failed ({why}); restarting it"
            return False
        m.last_used = time.monotonic()
        self._set(m, "ready")
        self.metrics.wakeups.labels(m.name).inc()
        self.notify()
        return True

    # ------------------------------------------------------------------ taking a model down

    async def _evict(self, m: Model, action: str, reason: str) -> None:
        """Put an idle model to sleep (falling back to stopping it) or stop it; its state is already `stopping`."""
        if reason == "evicted":
            self.metrics.evictions.labels(m.name, action).inc()
        if action == "sleep" and m.running is not None:
            why = await self._call(m, "/sleep?level=1", SLEEP_CALL_S)
            if why is None:
                self._set(m, "sleeping")
                self.notify()
                return
            m.last_error = f"sleep failed ({why}); stopped it instead"
        await self._stop(m, reason)

    async def _stop(self, m: Model, reason: str, final_state: placement.State = "stopped") -> None:
        run, proxy = m.running, m.proxy
        m.running = m.proxy = None
        if proxy is not None:
            proxy.close()
        if run is not None:
            await self._thread(self.ops.stop, run)
            self.metrics.stops.labels(m.name, reason).inc()
        self._set(m, final_state)
        self.notify()

    def _died(self, m: Model) -> None:
        """A server that is gone while ready or asleep: stopping, then diagnosed and cleaned up in the background."""
        if m.state not in ("ready", "sleeping") or m.running is None:
            return
        was = "asleep" if m.state == "sleeping" else "serving"
        run = m.running
        self._set(m, "stopping")
        self.notify()

        async def clean() -> None:
            text = await self._thread(self.ops.log_tail, run.launched.log_path)
            m.last_error = (
                f"died while {was}: "
                + await self._thread(self.ops.diagnosis, text, run.spec)
                + f" (log: {run.launched.log_path})"
            )
            await self._stop(m, "died")

        asyncio.get_running_loop().create_task(clean())

    async def _tick(self) -> None:
        """Every half second: servers that died, and idle models past their TTL."""
        while not self.closing:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for m in self.models.values():
                if m.state in ("ready", "sleeping") and m.running is not None and not m.running.alive():
                    self._died(m)
                elif (
                    m.member.ttl_s
                    and m.state == "ready"
                    and m.busy == 0
                    and m.waiting == 0
                    and now - m.last_used >= m.member.ttl_s
                    and not self.lock.locked()
                ):
                    async with self.lock:
                        if m.state == "ready" and m.busy == 0 and m.waiting == 0:
                            self._set(m, "stopping")
                            self.notify()
                            await self._evict(m, "sleep" if m.member.sleep else "stop", "ttl")

    # ------------------------------------------------------------------ the fleet's life

    async def begin(self) -> None:
        """Preload (in file order, each only where it fits beside those already up) and start the ticker."""
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        for m in self.models.values():
            if not m.member.preload or self.closing or m.task is not None or m.state != "stopped":
                continue
            decision = placement.place(m.name, self.slots(), self.budgets)
            if decision.outcome != "run" or decision.evict:
                m.note = ""
                m.last_error = (
                    f"not preloaded: {decision.reason}"
                    if decision.outcome != "run"
                    else "not preloaded: it would evict " + ", ".join(e.name for e in decision.evict)
                )
                self.notify()
                continue
            m.preload_wanted = True
            m.task = asyncio.get_running_loop().create_task(self._bring_up(m))
            await m.task
            m.preload_wanted = False

    def begin_shutdown(self) -> None:
        """Refuse waiting and new requests at once and cancel starts in progress (a signal arrived)."""
        if not self.closing:
            self.closing = True
            self._cancel.set()
            self.notify()

    async def shutdown(self, wait_s: float = 60.0) -> None:
        """Stop every server this fleet started; nothing is left running (a second call waits for the first)."""
        if self._shutdown is None:
            self._shutdown = asyncio.get_running_loop().create_task(self._stop_all(wait_s))
        await asyncio.shield(self._shutdown)

    async def _stop_all(self, wait_s: float) -> None:
        self.begin_shutdown()
        tasks = [m.task for m in self.models.values() if m.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=wait_s)
        if self._ticker is not None:
            self._ticker.cancel()
        await asyncio.gather(
            *(self._stop(m, "shutdown") for m in self.models.values() if m.running is not None), return_exceptions=True
        )
        for m in self.models.values():  # a start still in its first steps after the wait: its group too
            if m.starting is not None:
                launched, runner = m.starting
                await self._thread(runner.stop, launched, 5.0)
        self._executor.shutdown(wait=True, cancel_futures=False)

    def snapshot(self) -> list[dict[str, Any]]:
        """Each model as /v1/models and the live display show it."""
        out = []
        for m in self.models.values():
            run = m.running
            out.append(
                {
                    "name": m.name,
                    "state": m.shown,
                    "pool": m.member.pool,
                    "memory_mib": round(m.member.share.awake_mib, 1),
                    "busy": m.busy,
                    "waiting": m.waiting,
                    "since_s": round(time.monotonic() - m.since, 1),
                    "port": run.spec.port if run else None,
                    "pid": run.launched.pid if run else None,
                    "aliases": list(m.member.aliases),
                    "note": m.note or None,
                    "error": m.last_error,
                }
            )
        return out
