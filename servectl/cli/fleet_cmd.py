"""`servectl serve FLEET.yaml [--plan [--json]]` and `servectl render --fleet`: thin commands over servectl.fleet."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from servectl.cli.app import echo, emit_json, info
from servectl.console import plain, safe
from servectl.errors import EXIT_BAD_INPUT, CheckFailed, UserError


def load_or_exit(path: Path, **kw):
    """The sized fleet; a file with mistakes prints one line per mistake and exits 2."""
    from servectl.fleet.config import FleetFileError
    from servectl.fleet.sizing import load

    try:
        return load(path, **kw)
    except FleetFileError as exc:
        for line in exc.problems:
            click.echo(f"error: {safe(line)}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


@click.command()
@click.argument("fleet_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plan", "plan_only", is_flag=True, help="Print the placement the front door would make and why; start nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --plan: the placement as JSON.")
@click.option("--listen", help="HOST:PORT of the front door (overrides the file's `listen`; port 0: chosen by the OS).")
@click.option("--python", "python", help="Interpreter of the vLLM environment (overrides the file's `python`).")
def serve(fleet_file, plan_only, as_json, listen, python) -> None:
    """Serve the models of FLEET_FILE behind one OpenAI-compatible endpoint.

    Each model starts on its first request (or at start with `preload`), beside the others when its planned
    memory fits, else after idle models are put to sleep or stopped (least recently used first); idle models
    stop after their TTL. SIGTERM / Ctrl-C stops every model it started.

    \b
    servectl serve fleet.yaml --plan          where each model goes and why, nothing started
    servectl serve fleet.yaml                 the front door, with each model's state live
    """
    if as_json and not plan_only:
        raise UserError("--json goes with --plan", "servectl serve FLEET.yaml --plan --json")
    from servectl.fleet import planview

    if plan_only:
        data = planview.report(load_or_exit(fleet_file, listen=listen, python=python))
        if as_json:
            emit_json(data)
        else:
            for line in planview.lines(data):
                echo(safe(line))
        return
    from servectl.fleet import server
    from servectl.launch.runners import vllm_executable
    from servectl.vllmenv.location import find_vllm_python

    info("checking the fleet (flags, pre-flight, plans) ...")
    fleet = load_or_exit(fleet_file, serving=True, listen=listen, python=python)
    executable = vllm_executable(find_vllm_python(fleet.python))
    server.serve(fleet, executable, live=sys.stderr.isatty())
    info("fleet stopped; every model it started is stopped")


def render_fleet(fleet_file: Path, fmt: str, layout: str, image: str | None, servectl_bin: str, validate: bool,
                 python: Path | None, out_dir: Path | None, with_monitoring: bool = False) -> None:
    """`servectl render --fleet FLEET.yaml --format compose|systemd [--fleet-layout ...] [--with-monitoring]
    [--validate] [-o DIR]`."""
    from servectl.cli.app import warn
    from servectl.fleet import deploy
    from servectl.fsutil import write_atomic

    if with_monitoring and fmt != "compose":
        raise UserError(f"--with-monitoring is for --format compose, not {fmt}",
                        "render the fleet with --format compose, or scrape the front door's /metrics and /metrics/models")
    fleet = load_or_exit(fleet_file)
    dashboard = None
    if with_monitoring:
        dashboard, notes = deploy.dashboard_for(fleet, layout)
        for note in notes:
            warn(note)
    name, text = deploy.render(fleet, fmt, layout=layout, image=image, servectl_bin=servectl_bin, dashboard=dashboard)
    if validate:
        tools, problems = deploy.validate(fleet, fmt, name, text, python, with_monitoring)
        if problems:
            raise CheckFailed(problems[0], f"{len(problems) - 1} more problem(s)" if len(problems) > 1 else None)
        info(f"valid: {', '.join(tools)}")
    if out_dir is None:
        echo(text, nl=False)
        return
    write_atomic(out_dir / name, text, mode=0o644)
    info(plain(f"wrote {out_dir / name}"))
