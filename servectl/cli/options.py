"""Option types every command shares, so a value is checked once, the same way everywhere, and refused
with exit 2 naming the option (click's usage error): finite numbers, TCP ports, distinct ports.

    @click.option("--timeout", type=SECONDS, ...)      # a finite number of seconds > 0 (nan, inf, -1 refused)
    @click.option("--port", type=PORT, ...)            # 1-65535

Port pairs (server and proxy) are checked by servectl.spec.models.proxy_port_for, which `up` uses too.
"""

from __future__ import annotations

import math

import click


PORT = click.IntRange(1, 65535)


class FiniteFloat(click.ParamType):
    """A finite float within (low, high]: click's FloatRange lets nan through (every comparison with nan is false)."""

    name = "seconds"

    def __init__(self, low: float = 0.0, high: float = 7 * 86400.0, low_open: bool = True):
        self.low, self.high, self.low_open = low, high, low_open

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
            low = f"more than {self.low:g}" if self.low_open else f"at least {self.low:g}"
            self.fail(f"{value!r} is out of range: {low} and at most {self.high:g}", param, ctx)
        return number


SECONDS = FiniteFloat()
