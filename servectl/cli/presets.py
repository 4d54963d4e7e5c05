"""`servectl presets list`: the sampling presets `servectl proxy` serves."""

from __future__ import annotations

from dataclasses import asdict

import click

from servectl.cli import options

from servectl.catalog.presets import load_presets
from servectl.cli.app import console, emit_json


@click.group()
def presets() -> None:
    """Sampling presets served by `servectl proxy`."""


@presets.command("list")
@options.JSON()
def presets_list(as_json) -> None:
    """Shipped presets and those of the config file."""
    data = {name: {k: v for k, v in asdict(p).items() if v is not None} for name, p in load_presets().items()}
    if as_json:
        emit_json(data)
        return
    from rich import box
    from rich.table import Table

    # compact (no vertical rules, short headers) so the names stay whole in an 80-column terminal
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="think = enable_thinking; pres/rep = presence/repetition penalty",
    )
    for col in ("preset", "family", "think", "temp", "top_p", "top_k", "min_p", "pres", "rep"):
        table.add_column(col, no_wrap=col == "preset")
    for name, p in load_presets().items():
        cells = [p.enable_thinking, p.temperature, p.top_p, p.top_k, p.min_p, p.presence_penalty, p.repetition_penalty]
        table.add_row(name, p.family or "(user)", *["-" if c is None else str(c) for c in cells])
    console.print(table)
