"""`servectl serve FLEET.yaml`: the front door on uvicorn, its fleet, the live display, and a shutdown that leaves
nothing running.

SIGTERM and SIGINT (uvicorn's handlers) first refuse every waiting request and cancel starts in progress, then,
once open connections closed (3 s grace for streams), every server the fleet started is stopped (SIGTERM to its
process group, SIGKILL after the grace) and its record removed: also after a second Ctrl-C, which makes uvicorn
skip its own lifespan shutdown. If the front door is killed outright, each server's watchdog stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading

import uvicorn

from servectl.console import info, plain
from servectl.errors import UserError
from servectl.fleet import placement
from servectl.fleet.display import Display
from servectl.fleet.manager import Manager
from servectl.fleet.metrics import FleetMetrics
from servectl.fleet.router import FrontDoor
from servectl.fleet.sizing import Fleet
from servectl.launch.ports import base_url
from servectl.proxy.app import uvicorn_config

HANDLED = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the fleet at once when a signal asks it to stop, and cleaning up the fleet before
    it returns (uvicorn would re-raise the signal afterwards, ending the process before any code after it ran)."""

    def __init__(self, config: uvicorn.Config, manager: Manager):
        super().__init__(config)
        self.manager = manager
        self.signalled: int | None = None

    def handle_exit(self, sig: int, frame) -> None:
        super().handle_exit(sig, frame)
        self.signalled = sig
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self.manager.begin_shutdown)

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        with self.capture_signals():
            try:
                await self._serve(sockets)
            finally:
                await self.manager.shutdown()

    _loop: asyncio.AbstractEventLoop | None = None


def bind(host: str, port: int) -> socket.socket:
    """The front door's socket (port 0: the OS picks one); UserError when the address is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"cannot resolve the listen host {host!r}", "use an address such as 127.0.0.1") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "pick another `listen` (or --listen)") from None
    sock.set_inheritable(True)
    return sock


def refuse_a_second_copy(fleet: Fleet) -> None:
    """Another `servectl serve` of a fleet with this name owns servers now: their records would collide."""
    from servectl.launch import state

    for rec in state.list_records():
        if rec.fleet and rec.fleet.split()[0] == fleet.name and state.is_alive(rec):
            raise UserError(
                f"fleet {fleet.name} is already served ({' '.join(rec.fleet.split()[1:])}; its server {rec.name} runs)",
                "stop that `servectl serve` first, or give this file another `name:`",
            )


def serve(fleet: Fleet, executable: list[str], live: bool) -> int | None:
    """Run the front door until a signal; returns the signal that stopped it (None if it stopped otherwise)."""
    refuse_a_second_copy(fleet)
    sock = bind(fleet.host, fleet.port)
    port = sock.getsockname()[1]
    url = base_url(fleet.host, port)
    metrics = FleetMetrics()
    display: Display | None = None

    def changed() -> None:
        if display is not None:
            display.changed()

    manager = Manager(fleet, executable, metrics, f"{fleet.name} {url}", on_change=changed)

    def memory() -> dict[str, tuple[float, float]]:
        slots = manager.slots()
        return {pool: (placement.used(slots, pool), b) for pool, b in manager.budgets.items()}

    display = Display(manager.snapshot, memory, live)
    app = FrontDoor(fleet, manager, metrics)
    server = _Server(uvicorn_config(app, fleet.host, port), manager)
    info(
        plain(
            f"fleet {fleet.name}: {url}/v1  ({len(fleet.members)} models: {', '.join(fleet.members)}); "
            "Ctrl-C stops it and every model it started"
        ),
        style="bold",
    )
    for note in fleet.notes:
        info(plain(f"note: {note}"))
    display.start()
    display.changed()
    try:
        server.run(sockets=[sock])
    finally:
        display.stop()
        sock.close()
    return server.signalled
