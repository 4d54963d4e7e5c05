"""`servectl models list|show|add`: recipes, curated or your own, and any hub repo or checkpoint directory."""

from __future__ import annotations

from dataclasses import asdict

import click

from servectl.cli import options
import yaml
from rich.table import Table

from servectl.catalog.load import load_catalog
from servectl.cli.app import console, echo, emit_json, warn
from servectl.console import plain


@click.group()
def models() -> None:
    """Model recipes: the curated catalog, recipes of your own, and any hub repo or checkpoint directory."""


@models.command("list")
@options.JSON()
def models_list(as_json: bool) -> None:
    """List the curated recipes and your own ($XDG_CONFIG_HOME/servectl/recipes/), with the GPU profiles each runs on.
    A recipe file of yours that does not validate is named with its line (exit 2 after the listing).

    --json keys: name, title, repo, quantization, weights_gib, min_vllm, profiles, card_profiles, source (curated |
    user), file (user recipes: the YAML file)."""
    from servectl.catalog import user
    from servectl.errors import EXIT_BAD_INPUT

    cat = load_catalog()
    mine, broken = user.load_all(cat)
    rows = [(m, "curated", None) for m in cat.models.values()] + [(u.recipe, "user", str(u.path)) for u in mine]
    if as_json:
        emit_json(
            [
                {
                    "name": m.name,
                    "title": m.title,
                    "repo": m.repo,
                    "quantization": m.quantization,
                    "weights_gib": m.weights_gib,
                    "min_vllm": m.min_vllm,
                    "profiles": list(m.profiles),
                    "card_profiles": card_profiles(m, cat),
                    "source": source,
                    **({"file": file} if file else {}),
                }
                for m, source, file in rows
            ]
        )
    else:
        table = Table(title="Model recipes")
        for col in ("name", "source", "checkpoint", "format", "weights", "runs on (card settings*)"):
            table.add_column(col, no_wrap=col == "name")
        for m, source, _ in rows:
            carded = set(card_profiles(m, cat))
            runs = ", ".join(p + ("*" if p in carded else "") for p in m.profiles)
            table.add_row(m.name, source, plain(m.model_path or m.repo), m.quantization, f"{m.weights_gib:.3g} GiB", runs)
        console.print(table)
    for err in broken:
        click.echo(f"error: {plain(err.one_line())}", err=True)
    if broken:
        raise SystemExit(EXIT_BAD_INPUT)


def _explain(resolved) -> None:
    """The choices of a derived (or user) recipe: setting, value, why."""
    rec = resolved.recipe
    d = rec.derivation
    console.print(
        plain(
            f"{rec.name}: {resolved.origin} recipe"
            + (f" ({resolved.file})" if resolved.file else "")
            + (f", derived from {d.source}" if d else "")
        ),
        highlight=False,
        soft_wrap=True,
    )
    if d is None:
        return
    table = Table(
        title=f"how {rec.name} is served" + (f" (parsers checked against vLLM {d.vllm})" if d.vllm else ""), show_lines=False
    )
    for col in ("setting", "value", "why"):
        table.add_column(col, overflow="fold")
    for c in d.choices:
        table.add_row(plain(c.setting), plain(c.value), plain(c.reason))
    console.print(table)
    for w in d.warnings:
        warn(w)


@models.command("show")
@click.argument("model")
@options.PYTHON(
    "The one that will run it: its release decides the parsers. Default: $SERVECTL_VLLM_PYTHON, else the "
    "bootstrapped environment, else servectl's table of the newest release."
)
@options.JSON()
def models_show(model: str, python: str | None, as_json: bool) -> None:
    """Show a recipe: a curated or user recipe's every field, or for a hub repo (org/name[@revision]) or a checkpoint
    directory the recipe servectl derives, every choice with its value and reason.

    --json: the recipe's fields (a derived one's choices under derivation.choices) plus source (curated | user |
    repo | directory) and file (user recipes)."""
    from servectl.plan.any_model import resolve_model

    resolved = resolve_model(model, python=python)
    data = asdict(resolved.recipe)
    if as_json:
        emit_json({**data, "source": resolved.origin, **({"file": str(resolved.file)} if resolved.file else {})})
        return
    if resolved.recipe.derivation is not None:
        _explain(resolved)
        if resolved.derived:
            console.print(plain(f"keep it as a recipe of your own: servectl models add {model}"), highlight=False, soft_wrap=True)
        return
    echo(yaml.safe_dump(data, sort_keys=False))


@models.command("add")
@click.argument("model", metavar="REPO|DIR")
@click.option("--name", help="Recipe name (default: from the checkpoint's name, e.g. Qwen/Qwen3-8B -> qwen3-8b).")
@options.FORCE("Here: replace a recipe of yours with the same name.")
@options.PYTHON(
    "The one that will run it: its release decides the parsers. Default: $SERVECTL_VLLM_PYTHON, else the "
    "bootstrapped environment, else servectl's table of the newest release."
)
@options.JSON("Keys: name, file, source.")
def models_add(model: str, name: str | None, force: bool, python: str | None, as_json: bool) -> None:
    """Derive the recipe for a hub repo or a checkpoint directory and keep it in your catalog
    ($XDG_CONFIG_HOME/servectl/recipes/NAME.yaml, written atomically), where you edit it."""
    from servectl.catalog import user
    from servectl.catalog.base import DOTTED_KEY
    from servectl.checkpoint.ref import parse
    from servectl.errors import UserError
    from servectl.plan.any_model import derive_recipe

    if name is not None and not DOTTED_KEY.match(name):
        raise UserError(f"--name {name!r}: use lower-case letters, digits, '.' and '-', starting with a letter or digit")
    cat = load_catalog()
    if parse(model) is None:
        raise UserError(
            f"{model!r} is neither a hub repo id (org/name[@revision]) nor a checkpoint directory",
            "`servectl models add Qwen/Qwen3-8B` or `servectl models add ./my-checkpoint`",
        )
    recipe = derive_recipe(model, python=python, name=name, catalog=cat)
    path = user.write(recipe, cat, overwrite=force)
    if as_json:
        emit_json({"name": recipe.name, "file": str(path), "source": "user"})
        return
    for w in recipe.derivation.warnings if recipe.derivation else []:
        warn(w)
    console.print(
        plain(
            f"wrote {path}: recipe {recipe.name} (runs on {', '.join(recipe.profiles) or 'no profile'}); "
            f"`servectl models show {recipe.name}` explains it, edit the file to change it"
        ),
        highlight=False,
        soft_wrap=True,
    )


def card_profiles(recipe, cat) -> list[str]:
    """GPU profiles for which the model card publishes settings (generic cards: every profile that runs it)."""
    from servectl.spec.resolve import card_profile_names

    return card_profile_names(recipe)
