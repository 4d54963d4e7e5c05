"""Terminal output shared by the commands and the long-running workflows (progress, warnings).

Consoles are made on first use, so a command that prints nothing rich never imports rich.
--json output goes to stdout through `emit_json`; everything for people goes to stderr or stdout via rich.
"""

from __future__ import annotations

import json
from typing import Any


class _LazyConsole:
    """A rich Console made on first use."""

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs
        self._console = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


console = _LazyConsole()
err_console = _LazyConsole(stderr=True)


def emit_json(data: Any) -> None:
    """Machine-readable output on stdout (stable keys; scripts read these)."""
    import click

    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err_console.print(message, highlight=False, soft_wrap=True)
