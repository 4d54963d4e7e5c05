"""`servectl top [NAME|URL ...]`: a live view of what vLLM is doing, from its /metrics."""

from __future__ import annotations

import time

import click

from servectl.cli import options

from servectl.cli.values import FiniteFloat
from servectl.console import console, emit_json
from servectl.errors import EXIT_CHECK_FAILED, UserError


def _key_pressed(timeout_s: float) -> str | None:
    """A key typed within timeout_s (stdin in cbreak mode), else None after sleeping that long."""
    import select
    import sys

    ready, _, _ = select.select([sys.stdin], [], [], timeout_s)
    return sys.stdin.read(1) if ready else None


def _live(monitor, interval: float, window: float) -> None:
    import sys
    import termios
    import tty

    from rich.console import Console
    from rich.live import Live

    from servectl.observe.view import table

    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    try:
        if fd is not None:
            tty.setcbreak(fd)
        with Live(console=Console(markup=False, highlight=False), auto_refresh=False) as live:
            while True:
                monitor.poll()
                history = {w.target.name: w.history for w in monitor.watched}
                live.update(table(monitor.rows(), history, interval, window), refresh=True)
                if fd is None:
                    time.sleep(interval)
                elif _key_pressed(interval) in ("q", "Q"):
                    return
    finally:
        if fd is not None and saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command()
@click.argument("targets", nargs=-1)
@click.option(
    "--interval", type=FiniteFloat(0.2, 3600, low_open=False), default=2.0, show_default=True, help="Seconds between scrapes."
)
@click.option(
    "--window",
    type=FiniteFloat(1, 86400, low_open=False),
    default=60.0,
    show_default=True,
    help="Seconds of history for the latency percentiles, prefix-cache hit rate and acceptance.",
)
@options.TIMEOUT("One scrape may take this long: connect, answer and body.", default=5.0)
@click.option(
    "--once", is_flag=True, help="Scrape twice, --interval apart, print one snapshot and exit (1 when a server is down)."
)
@options.JSON("With --once: the snapshot (keys: time, interval_s, window_s, servers).")
def top(targets: tuple[str, ...], interval: float, window: float, timeout: float, once: bool, as_json: bool) -> None:
    """Watch vLLM servers live: requests running and waiting, tokens/s, TTFT and inter-token latency
    percentiles, KV cache use, preemptions, prefix-cache hits, speculative acceptance, memory.

    \b
    servectl top                          every deployment servectl started
    servectl top my-model http://10.0.0.5:8000
    servectl top --once --json            one snapshot for scripts

    A server that stops answering stays listed as down and is retried every round; a restarted one
    is shown as such and its figures start afresh.
    """
    from servectl.observe.targets import resolve
    from servectl.observe.top import DOWN, Monitor

    if as_json and not once:
        raise UserError("--json prints one snapshot: use it with --once", "servectl top --once --json")
    monitor = Monitor(resolve(list(targets)), window_s=window, deadline_s=timeout)
    try:
        if not once:
            _live(monitor, interval, window)
            return
        monitor.poll()
        time.sleep(interval)
        monitor.poll()
        rows = monitor.rows()
    finally:
        monitor.close()
    if as_json:
        from servectl.observe.top import strict_json

        emit_json(strict_json({"time": round(time.time(), 3), "interval_s": interval, "window_s": window, "servers": rows}))
    else:
        from servectl.observe.view import table

        console.print(table(rows, {w.target.name: w.history for w in monitor.watched}, interval, window))
    if any(r["state"] == DOWN for r in rows):
        raise SystemExit(EXIT_CHECK_FAILED)
