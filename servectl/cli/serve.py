"""`servectl serve FLEET.yaml [--plan [--json]]`: several models behind one endpoint, placed by memory."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from servectl.cli import options

from servectl.cli.app import echo, emit_json, info
from servectl.cli.values import listen_text
from servectl.console import safe
from servectl.errors import UserError


@click.command()
@click.argument("fleet_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plan", "plan_only", is_flag=True, help="Print the placement the front door would make and why; start nothing.")
@options.JSON("With --plan: the placement.")
@options.LISTEN("Here: the front door's (default: the file's `listen`).")
@options.PYTHON(
    "It runs the models' servers. Default: the file's `python`, else $SERVECTL_VLLM_PYTHON, else the bootstrapped environment."
)
def serve(fleet_file, plan_only, as_json, listen, python) -> None:
    """Serve the models of FLEET_FILE behind one OpenAI-compatible endpoint.

    Each model starts on its first request (or at start with `preload`), beside the others when its planned
    memory fits, else after idle models are put to sleep or stopped (least recently used first); idle models
    stop after their TTL. SIGTERM / Ctrl-C stops every model it started.

    \b
    servectl serve fleet.yaml --plan          where each model goes and why, nothing started
    servectl serve fleet.yaml                 the front door, with each model's state live
    """
    listen = listen_text(listen) if listen is not None else None
    if as_json and not plan_only:
        raise UserError("--json goes with --plan", "servectl serve FLEET.yaml --plan --json")
    from servectl.fleet import planview
    from servectl.fleet.sizing import load

    if plan_only:
        data = planview.report(load(fleet_file, listen=listen, python=python))
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
    fleet = load(fleet_file, serving=True, listen=listen, python=python)
    executable = vllm_executable(find_vllm_python(fleet.python))
    server.serve(fleet, executable, live=sys.stderr.isatty())
    info("fleet stopped; every model it started is stopped")
