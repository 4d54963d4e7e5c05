"""`servectl demo`: the whole loop on this machine's CPU (vLLM environment, tiny model, up, check, down)."""

from __future__ import annotations

import click

from servectl.cli.options import PORT, SECONDS
from servectl.launch import workflow


@click.command()
@click.option("--port", type=PORT, help="Port for the demo server (default: a free one).")
@click.option("--python", "python", help="Interpreter of the vLLM environment (default: bootstrap one).")
@click.option("--timeout", type=SECONDS, default=300, show_default=True, help="Seconds the start-up may take.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and health report as JSON.")
def demo(port, python, timeout, as_json) -> None:
    """The whole loop on this machine's CPU: vLLM env, tiny model, up, check, down. Exit 0 only if healthy."""
    workflow.demo(port, python, timeout, as_json)
