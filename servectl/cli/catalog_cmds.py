"""`servectl profiles list|show` and `servectl models list|show`."""

from __future__ import annotations

from dataclasses import asdict

import click
import yaml
from rich.table import Table

from servectl.catalog.load import load_catalog
from servectl.cli.app import console, echo, emit_json


@click.group()
def profiles() -> None:
    """GPU profiles servectl can plan for and launch on."""


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def profiles_list(as_json: bool) -> None:
    """List GPU profiles."""
    cat = load_catalog()
    if as_json:
        emit_json([
            {"name": g.name, "title": g.title, "vendor": g.vendor, "count": g.count, "memory_gib": g.memory_gib,
             "unified_memory": g.unified_memory, "compute_capability": g.compute_capability,
             "gfx_target": g.gfx_target, "presets": {k: p.gpu_memory_utilization for k, p in g.presets.items()}}
            for g in cat.gpus.values()
        ])
        return
    table = Table(title="GPU profiles")
    for col in ("name", "hardware", "devices", "memory / device", "presets (utilization)"):
        table.add_column(col, no_wrap=col == "name")
    for g in cat.gpus.values():
        mem = f"{g.memory_gib:g} GiB" + (" unified" if g.unified_memory else "")
        presets = ", ".join(f"{k} {p.gpu_memory_utilization:g}" for k, p in g.presets.items())
        table.add_row(g.name, g.title, str(g.count), mem, presets)
    console.print(table)


@profiles.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def profiles_show(name: str, as_json: bool) -> None:
    """Show every field of one GPU profile."""
    data = asdict(load_catalog().gpu(name))
    if as_json:
        emit_json(data)
    else:
        echo(yaml.safe_dump(data, sort_keys=False))


@click.group()
def models() -> None:
    """Model recipes (quantized checkpoints and how to serve them)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_list(as_json: bool) -> None:
    """List model recipes and the GPU profiles each runs on."""
    cat = load_catalog()
    if as_json:
        emit_json([
            {"name": m.name, "title": m.title, "repo": m.repo, "quantization": m.quantization,
             "weights_gib": m.weights_gib, "min_vllm": m.min_vllm, "profiles": list(m.profiles),
             "card_profiles": card_profiles(m, cat)}
            for m in cat.models.values()
        ])
        return
    table = Table(title="Model recipes")
    for col in ("name", "repo", "format", "weights", "runs on (card settings*)"):
        table.add_column(col, no_wrap=col == "name")
    for m in cat.models.values():
        carded = set(card_profiles(m, cat))
        runs = ", ".join(p + ("*" if p in carded else "") for p in m.profiles)
        table.add_row(m.name, m.repo, m.quantization, f"{m.weights_gib:g} GiB", runs)
    console.print(table)


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_show(name: str, as_json: bool) -> None:
    """Show every field of one model recipe."""
    data = asdict(load_catalog().model(name))
    if as_json:
        emit_json(data)
    else:
        echo(yaml.safe_dump(data, sort_keys=False))


def card_profiles(recipe, cat) -> list[str]:
    """GPU profiles for which the model card publishes settings (generic cards: every profile that runs it)."""
    from servectl.spec.resolve import card_profile_names

    return card_profile_names(recipe)
