"""Each model's state while `servectl serve` runs: a live table on a terminal (rich), plain lines otherwise
(one per change, for logs and journald). Every value from outside (names, errors from vLLM's log) is printed
through servectl.console's escaping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from servectl.console import info, plain


def _mib(v: float) -> str:
    return f"{v / 1024:.1f} GiB" if v >= 1024 else f"{v:.0f} MiB"


class Display:
    def __init__(
        self, snapshot: Callable[[], list[dict[str, Any]]], memory: Callable[[], dict[str, tuple[float, float]]], live: bool
    ):
        self.snapshot, self.memory, self.live = snapshot, memory, live
        self._seen: dict[str, tuple[str, str | None]] = {}
        self._live: Any = None

    def start(self) -> None:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                get_renderable=self._table,
                console=Console(stderr=True, markup=False, highlight=False),
                refresh_per_second=2,
                transient=False,
            )
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def changed(self) -> None:
        """A model changed state: print what changed (plain), or let the live table show it."""
        for snap in self.snapshot():
            key = (snap["state"], snap["error"])
            if self._seen.get(snap["name"]) == key:
                continue
            before = self._seen.get(snap["name"])
            self._seen[snap["name"]] = key
            stamp = time.strftime("%H:%M:%S")
            if self._live is not None:  # the table shows states; a failure's diagnosis is printed above it, whole
                if snap["error"] and (before is None or before[1] != snap["error"]):
                    from rich.text import Text

                    self._live.console.print(Text(plain(f"{stamp} {snap['name']}: {snap['error']}"), style="red"))
                continue
            if before is None or before[0] != snap["state"]:
                where = f" (port {snap['port']}, pid {snap['pid']})" if snap["state"] == "ready" and snap["port"] else ""
                info(plain(f"{stamp} {snap['name']}: {snap['state']}{where}"))
            if snap["error"] and (before is None or before[1] != snap["error"]):
                info(plain(f"{stamp} {snap['name']}: {snap['error']}"), style="red")
        if self._live is not None:
            self._live.refresh()

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table("model", "state", "for", "busy", "waiting", "memory", "port", "note", expand=False)
        colours = {"ready": "green", "starting": "yellow", "sleeping": "blue", "stopped": "dim"}
        for s in self.snapshot():
            note = s["note"] or s["error"] or ""
            table.add_row(
                Text(plain(s["name"])),
                Text(s["state"], style=colours.get(s["state"], "")),
                f"{s['since_s']:.0f} s",
                str(s["busy"]),
                str(s["waiting"]),
                _mib(s["memory_mib"]),
                str(s["port"] or "-"),
                Text(plain(note)[:160], style="red" if s["error"] and not s["note"] else "dim"),
            )
        caption = "; ".join(
            f"{plain(pool)}: {_mib(used)} of {_mib(budget)} held" for pool, (used, budget) in self.memory().items()
        )
        table.caption = caption
        return table
