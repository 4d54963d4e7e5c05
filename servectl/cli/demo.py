"""`servectl demo`: the whole loop on this machine's CPU (vLLM environment, tiny model, up, check, down)."""

from __future__ import annotations

import click

from servectl.cli import options

from servectl.cli.progress import LaunchPrinter
from servectl.launch import up as launch_up


@click.command()
@options.PORT("Default: a free one.", default=None, show_default=False)
@options.PYTHON(
    "It runs the demo server. Default: $SERVECTL_VLLM_PYTHON, else the CPU environment, made with "
    "`servectl bootstrap --cpu` when there is none."
)
@options.TIMEOUT("The start-up may take this long; then vLLM is stopped.", default=300)
@options.JSON("Here: the launch summary and its health report.")
def demo(port, python, timeout, as_json) -> None:
    """The whole loop on this machine's CPU: vLLM env, tiny model, up, check, down. Exit 0 only if healthy."""
    with LaunchPrinter(as_json) as printer:
        launch_up.demo(port, python, timeout, printer)
