"""The click group every command module attaches to, and the shared output helpers.

Commands stay thin: parse, call a layer, print (rich for people, --json for scripts).
A ServectlError becomes one line on stderr and its exit code; never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console

from servectl import __version__
from servectl.errors import EXIT_INTERRUPTED, ServectlError

console = Console()
err_console = Console(stderr=True)


class ServectlGroup(click.Group):
    """Turns ServectlError into one line + exit code, Ctrl-C into exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServectlError as exc:
            err_console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=ServectlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="servectl")
def main() -> None:
    """Serve quantized models on vLLM with one command.

    \b
    servectl up qwen3.5-35b-a3b-nvfp4              detect GPU, plan, patch-check, launch, health-check
    servectl plan MODEL --gpu rtx-5090             predict vLLM's memory and KV cache before loading
    servectl render MODEL --gpu P --format F       vllm argv / config / docker / compose / systemd / k8s
    servectl patch check|apply|revert              fix known vLLM bugs in an installed environment
    servectl check http://127.0.0.1:8000           prove a served model answers sensibly
    servectl demo                                  the whole loop on this machine's CPU with a tiny model
    """


def emit_json(data: Any) -> None:
    """Machine-readable output on stdout (stable keys; scripts read these)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err_console.print(message, highlight=False, soft_wrap=True)

