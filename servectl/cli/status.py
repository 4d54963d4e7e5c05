"""`servectl status [--json]`: the deployments, whether they run, and what they use."""

from __future__ import annotations

import click

from servectl.cli import options

from servectl.cli.app import emit_json, info, warn
from servectl.launch import state


def fmt_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    n = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@click.command()
@options.JSON("Keys: deployments, cleaned.")
def status(as_json) -> None:
    """Deployments: PID or container, port, model, uptime, memory. Gone ones are reported and removed;
    corrupt records are listed until `down` removes them."""
    live, stale = state.sweep()
    if as_json:
        emit_json({"deployments": [s.as_json() for s in live], "cleaned": [s.as_json() for s in stale]})
        return
    from rich.table import Table

    for gone in stale:
        warn(f"{gone.record.name}: process {gone.record.pid or gone.record.container_id} is gone; removed its record")
    if not live:
        info("no deployments running")
        return
    table = Table("name", "state", "pid/container", "endpoint", "model", "uptime", "memory (RSS)")
    for s in live:
        verdict = s.verdict
        if isinstance(s, state.CorruptStatus):
            what = (
                "`servectl down` stops what carries its marker and removes it"
                if verdict.state == "corrupt"
                else "`servectl down` removes the record and signals nothing"
            )
            warn(f"{s.entry.name}: {verdict.why}; {what}")
            table.add_row(s.entry.name, verdict.state, str(s.entry.pid or "?"), "-", "-", "-", "-")
            continue
        r = s.record
        if verdict.state in ("unverified", "orphaned"):
            warn(
                f"{r.name}: {verdict.state}: {verdict.why}; `servectl down {r.name}` "
                + ("stops them" if verdict.state == "orphaned" else "removes the record and signals nothing")
            )
        shown = verdict.state if verdict.state != "running" else ("ready" if r.ready else "starting")
        name = r.name if not r.fleet else f"{r.name} (fleet {r.fleet.split()[0]})"
        table.add_row(
            name,
            shown,
            str(r.pid or (r.container_id or "")[:12]),
            r.endpoint,
            r.served_model_name or r.model,
            fmt_duration(s.uptime_s),
            fmt_bytes(s.rss_bytes),
        )
    from servectl.cli.app import console

    console.print(table)
