"""The value types of servectl's options (servectl.cli.options): each checks a value once, the same way on every
command, and refuses a bad one with exit 2 naming the option (click's usage error)."""

from __future__ import annotations

import math
import re

import click

MAX_NODES = 64  # servectl.spec.layout.MAX_NODES (tests/test_options.py keeps them equal)


class FiniteFloat(click.ParamType):
    """A finite float within (low, high]: click's FloatRange lets nan through (every comparison with nan is false)."""

    name = "seconds"

    def __init__(self, low: float = 0.0, high: float = 7 * 86400.0, low_open: bool = True, name: str = "seconds"):
        self.low, self.high, self.low_open, self.name = low, high, low_open, name

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        too_low = number <= self.low if self.low_open else number < self.low
        if too_low or number > self.high:
            self.fail(f"{value!r} is out of range: {self.describe()}", param, ctx)
        return number

    def describe(self) -> str:
        return f"{'more than' if self.low_open else 'at least'} {self.low:g} and at most {self.high:g}"


class Speculative(click.ParamType):
    """mtp, mtp:N (1 <= N <= 16) or off, as servectl.spec.speculative.parse_choice reads it (normalised)."""

    name = "mtp[:N]|off"
    PATTERN = re.compile(r"^(off|mtp(?::(\d+))?)$")

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        m = self.PATTERN.match(text)
        if not m or (m.group(2) is not None and not 1 <= int(m.group(2)) <= 16):
            self.fail(f"{value!r} is not mtp, mtp:N (1 <= N <= 16) or off", param, ctx)
        return text


class Release(click.ParamType):
    """A vLLM release as packaging reads it (0.20.2, 0.11.0rc1)."""

    name = "version"

    def convert(self, value, param, ctx):
        from packaging.version import InvalidVersion, Version

        try:
            Version(str(value))
        except InvalidVersion:
            self.fail(f"{value!r} is not a release such as 0.20.2", param, ctx)
        return str(value).strip()


class Listen(click.ParamType):
    """HOST:PORT, [V6]:PORT or PORT -> (host, port); the host defaults to 127.0.0.1, port 0 lets the OS choose
    (the address is printed once bound)."""

    name = "host:port"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        host, _, port = text.rpartition(":")
        if not port.isdigit():
            self.fail(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8001)", param, ctx)
        if int(port) > 65535:
            self.fail(f"{text!r}: port {port} is out of range (0-65535)", param, ctx)
        return host.strip("[]") or "127.0.0.1", int(port)


PORT = click.IntRange(1, 65535)
SECONDS = FiniteFloat()
NODES = click.IntRange(1, MAX_NODES)
SPECULATIVE = Speculative()
RELEASE = Release()
LISTEN = Listen()
PYTHON = click.Path(dir_okay=False)  # an interpreter: a path, or $SERVECTL_VLLM_PYTHON's


def listen_text(address: tuple[str, int]) -> str:
    """(host, port) back to HOST:PORT ([V6]:PORT), as fleet files write it."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
