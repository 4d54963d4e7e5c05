"""Terminal output shared by the commands and the long-running workflows (progress, warnings).

Consoles are made on first use, so a command that prints nothing rich never imports rich.
--json output goes to stdout through `emit_json`; everything for people goes to stderr or stdout via rich.
"""

from __future__ import annotations

import json
import re
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


# Markup off everywhere: names, paths and vLLM flags come from the user, and `[x]` in them must print
# as written (and never raise rich's MarkupError). Styles are passed explicitly (style=...).
console = _LazyConsole(markup=False, highlight=False)
err_console = _LazyConsole(stderr=True, markup=False, highlight=False)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x9b]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def plain(text: str) -> str:
    """One printable line: control characters (newlines, terminal escapes) shown as \\n or \\xNN, never sent raw."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def emit_json(data: Any) -> None:
    """Machine-readable output on stdout (stable keys; scripts read these)."""
    import click

    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def warn(message: str) -> None:
    err_console.print("warning: ", style="yellow", end="")
    err_console.print(plain(message), soft_wrap=True)


def info(message: str, style: str | None = None) -> None:
    """A line for people on stderr, printed as written (never read as markup)."""
    err_console.print(message, style=style, soft_wrap=True)
