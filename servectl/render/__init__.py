"""Renderers: pure functions LaunchSpec (and optionally a Plan) -> text in one target format.

FORMATS maps a --format name to its module's `render(spec) -> str`; each module owns one format.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from servectl.errors import UserError
from servectl.specs import LaunchSpec

# format name -> module under servectl.render (imported lazily: each pulls only what it needs)
FORMATS: dict[str, str] = {
    "argv": "argv",
    "docker": "docker",
}


def renderer(fmt: str) -> Callable[[LaunchSpec], str]:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", f"formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"servectl.render.{FORMATS[fmt]}").render
