"""`servectl profiles list|show`: the GPU profiles of the catalog."""

from __future__ import annotations

from dataclasses import asdict

import click

from servectl.cli import options
import yaml
from rich.table import Table

from servectl.catalog.load import load_catalog
from servectl.cli.app import console, echo, emit_json


@click.group()
def profiles() -> None:
    """GPU profiles servectl can plan for and launch on."""


@profiles.command("list")
@options.JSON()
def profiles_list(as_json: bool) -> None:
    """List GPU profiles."""
    from servectl.hardware.cpu_memory import for_this_host

    cat = load_catalog()
    gpus = [for_this_host(g) for g in cat.gpus.values()]  # the cpu profile: this host's memory
    if as_json:
        emit_json(
            [
                {
                    "name": g.name,
                    "title": g.title,
                    "vendor": g.vendor,
                    "count": g.count,
                    "memory_gib": g.memory_gib,
                    "unified_memory": g.unified_memory,
                    "compute_capability": g.compute_capability,
                    "gfx_target": g.gfx_target,
                    "presets": {k: p.gpu_memory_utilization for k, p in g.presets.items()},
                }
                for g in gpus
            ]
        )
        return
    table = Table(title="GPU profiles")
    for col in ("name", "hardware", "devices", "memory / device", "presets (utilization)"):
        table.add_column(col, no_wrap=col == "name")
    for g in gpus:
        mem = f"{g.memory_gib:g} GiB" + (" unified" if g.unified_memory else "")
        presets = ", ".join(f"{k} {p.gpu_memory_utilization:g}" for k, p in g.presets.items())
        table.add_row(g.name, g.title, str(g.count), mem, presets)
    console.print(table)


@profiles.command("show")
@click.argument("name")
@options.JSON()
def profiles_show(name: str, as_json: bool) -> None:
    """Show every field of one GPU profile."""
    from servectl.hardware.cpu_memory import for_this_host

    data = asdict(for_this_host(load_catalog().gpu(name)))
    if as_json:
        emit_json(data)
    else:
        echo(yaml.safe_dump(data, sort_keys=False))
