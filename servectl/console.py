"""The one way out for text: every line servectl prints (rich or plain, stdout or stderr) and every --json
document goes through here, escaped and redacted.

- `plain(text)`: one printable line; control characters (C0, DEL, C1 such as the 8-bit CSI, and the
  Unicode bidi / line-separator controls) shown as `\\n`, `\\xNN` or `\\u202e`, never sent raw.
- `plain_block(text)`: the same, keeping newlines and tabs (a log tail, a rendered file).
- `safe(text)` / `safe_block(text)`: redact secrets (servectl.redact) then escape: what to use for any
  text that came from outside (log lines, GPU and process names, server replies, user arguments).
- `console` / `err_console`: rich consoles (made on first use, markup off) whose `print`, `rule` and
  `status` pass every string, rich Text and Table cell through `safe_block` first; `echo` for plain text.
- `emit_json(data)`: --json output: secrets redacted, non-finite floats (NaN, inf) as null, then
  `json.dumps(allow_nan=False)`, so the output is strict JSON that any parser reads.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from servectl.redact import redact, redact_data, register_secret  # noqa: F401  (re-exported for the commands)

# C0 controls, DEL, C1 controls (0x9b is an 8-bit CSI), bidi embeddings / overrides / isolates, line and
# paragraph separators: none of them reaches a terminal or a file raw.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_CONTROL_KEEP_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(m: re.Match) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: str) -> str:
    """One printable line: control characters (newlines, terminal escapes) shown as \\n or \\xNN, never sent raw."""
    return _CONTROL.sub(_escape, str(text))


def plain_block(text: str) -> str:
    """Printable text that keeps its lines: as `plain`, but newlines and tabs stay."""
    return _CONTROL_KEEP_LINES.sub(_escape, str(text))


def safe(text: str) -> str:
    """Outside text as one printable line with its secrets masked."""
    return plain(redact(str(text)))


def safe_block(text: str) -> str:
    """Outside text (several lines) printable, secrets masked."""
    return plain_block(redact(str(text)))


def has_raw_control(text: str) -> bool:
    """Whether `text` carries a control character other than newline and tab (what tests look for)."""
    return bool(_CONTROL_KEEP_LINES.search(text))


def _clean(obj: Any) -> Any:
    """A renderable made safe: strings, rich Text and the cells, headers and titles of a rich Table."""
    if isinstance(obj, str):
        return safe_block(obj)
    cls = type(obj).__name__
    if cls == "Text":
        cleaned = safe_block(obj.plain)
        if cleaned == obj.plain:
            return obj
        from rich.text import Text

        return Text(cleaned, style=obj.style)
    if cls == "Table":
        for attr in ("title", "caption"):
            if getattr(obj, attr, None) is not None:
                setattr(obj, attr, _clean(getattr(obj, attr)))
        for column in obj.columns:
            column.header = _clean(column.header)
            column._cells = [_clean(c) for c in column._cells]
        return obj
    return obj


class _SafeStatus:
    """rich's Status with its text made safe on every update."""

    def __init__(self, status: Any):
        self._status = status

    def update(self, status: Any = None, **kw: Any) -> None:
        self._status.update(_clean(status) if status is not None else None, **kw)

    def __enter__(self) -> "_SafeStatus":
        self._status.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._status.__exit__(*exc)


class _LazyConsole:
    """A rich Console made on first use, whose output is escaped and redacted."""

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs
        self._console: Any = None

    def _get(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return self._console

    def print(self, *objects: Any, **kw: Any) -> None:
        self._get().print(*(_clean(o) for o in objects), **kw)

    def rule(self, title: Any = "", **kw: Any) -> None:
        self._get().rule(_clean(title), **kw)

    def status(self, status: Any, **kw: Any) -> _SafeStatus:
        return _SafeStatus(self._get().status(_clean(status), **kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


# Markup off everywhere: names, paths and vLLM flags come from the user, and `[x]` in them must print
# as written (and never raise rich's MarkupError). Styles are passed explicitly (style=...).
console = _LazyConsole(markup=False, highlight=False)
err_console = _LazyConsole(stderr=True, markup=False, highlight=False)


def echo(text: str = "", err: bool = False, nl: bool = True, redacted: bool = True) -> None:
    """Plain text (no rich) on stdout or stderr, made safe: a log, a rendered file. `redacted=False` only for
    text its caller has checked holds no secret (servectl.redact.carries_secret) and must print as written."""
    import click

    click.echo(safe_block(text) if redacted else plain_block(text), err=err, nl=nl)


def finite(data: Any) -> Any:
    """A JSON-able document with NaN and infinities as None (strict JSON has no such numbers)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON of a document, secrets redacted: what --json prints and what result files hold."""
    return json.dumps(finite(redact_data(_plainify(data))), indent=indent, sort_keys=False, allow_nan=False)


def _plainify(data: Any) -> Any:
    """Anything json cannot write natively, as its string (paths, enums, dates)."""
    if isinstance(data, dict):
        return {
            str(k) if not isinstance(k, (str, int, float, bool)) and k is not None else k: _plainify(v) for k, v in data.items()
        }
    if isinstance(data, (list, tuple, set, frozenset)):
        return [_plainify(v) for v in data]
    if data is None or isinstance(data, (str, int, float, bool)):
        return data
    return str(data)


def emit_json(data: Any) -> None:
    """Machine-readable output on stdout (stable keys; scripts read these): strict JSON, secrets redacted."""
    import click

    click.echo(json_text(data))


def _stderr_styled() -> bool:
    """Whether stderr shows styles, as rich decides it (TTY_COMPATIBLE, FORCE_COLOR, else a terminal): a line for
    people then goes through rich for its colour; otherwise it is written as is, and rich is never loaded."""
    import os
    import sys

    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    if os.environ.get("FORCE_COLOR") is not None:
        return os.environ["FORCE_COLOR"] != ""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def warn(message: str) -> None:
    if not _stderr_styled():
        echo("warning: " + safe_block(safe(message)), err=True, redacted=False)  # escaped and redacted here
        return
    err_console.print("warning: ", style="yellow", end="")
    err_console.print(safe(message), soft_wrap=True)


def info(message: str, style: str | None = None) -> None:
    """A line for people on stderr, printed as written (never read as markup), escaped and redacted."""
    if not _stderr_styled():
        echo(message, err=True)
        return
    err_console.print(message, style=style, soft_wrap=True)
