"""`servectl logs [NAME] [-f] [-n N]`: a deployment's server log, escaped and with secrets masked."""

from __future__ import annotations

import time
from pathlib import Path

import click

from servectl.cli.app import echo
from servectl.errors import UserError
from servectl.fsutil import iter_lines, open_regular, read_tail
from servectl.launch import startup, state


def _latest_log(name: str) -> Path | None:
    rec = state.load(name)
    if rec is not None:
        return Path(rec.log_path)
    logs = sorted(state.logs_dir().glob(f"{state.valid_name(name)}-*.log"))
    return logs[-1] if logs else None


@click.command()
@click.argument("name", required=False)
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep printing new output until the server stops (or Ctrl-C).")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=0, help="Only the last N lines (0: all).")
def logs(name, follow_, lines) -> None:
    """Print a deployment's server log (also the last log of a stopped or failed one). Lines are printed
    escaped (control characters as \\xNN) with secrets masked; the log is streamed, never held whole."""
    if name is None:
        name = state.resolve_name(None).name
    path = _latest_log(name)
    if path is None or not path.exists():
        raise UserError(f"no log for {name!r}", "`servectl status` lists deployments")
    with open_regular(path, f"log of {name}") as fh:
        if lines:
            for line in startup.tail(read_tail(path), lines).splitlines():
                echo(line)
        else:
            for line in iter_lines(fh):
                echo(line)
        offset = fh.seek(0, 2)
    if not follow_:
        return
    follower = startup.LogFollower(path, offset)
    while True:
        for line in follower.read_lines():
            echo(line)
        rec = state.load(name)
        if rec is None or not state.is_alive(rec):
            for line in follower.read_lines():
                echo(line)
            return
        time.sleep(0.2)
