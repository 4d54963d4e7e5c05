"""What a fleet model's `model` names: a recipe, and the checkpoint to serve with its settings.

Any MODEL string resolves as `servectl up MODEL` resolves it (servectl.plan.any_model: a curated or user recipe
by name, a hub repo id or a checkpoint directory, for which servectl derives the recipe). `recipe:` instead serves
the checkpoint with the settings of the named recipe (`up RECIPE --model-path DIR`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from servectl.catalog.load import Catalog
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UserError

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Resolved:
    """The recipe whose settings and memory model serve the checkpoint, and the checkpoint when it is not the recipe's."""

    recipe: ModelRecipe
    model_path: str | None  # a directory or repo id served instead of the recipe's own (None: the recipe's)


def resolve_model(model: str, recipe: str | None, catalog: Catalog, base: Path | None = None) -> Resolved:
    """`model` (+ `recipe`) of a fleet entry -> Resolved; UserError saying what to write otherwise. A relative
    directory is relative to `base` (the fleet file's folder)."""
    named = catalog.model(recipe) if recipe else None
    if model in catalog.models and (named is None or named.name == model):
        return Resolved(catalog.models[model], None)
    path = Path(model).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    local = model.startswith(("/", ".", "~")) or path.is_dir()
    if local and not path.is_dir():
        raise UserError(f"model directory {model!r} does not exist", "give an existing checkpoint directory")
    if named is None and not local:
        by_repo = [r for r in catalog.models.values() if r.repo == model]
        if by_repo:  # a curated recipe's own checkpoint keeps its tuned settings
            return Resolved(by_repo[0], None)
    if named is None:  # servectl derives the recipe, as `servectl up MODEL` does
        from servectl.plan.any_model import resolve_model as resolve_any

        return Resolved(resolve_any(str(path.resolve()) if local else model, catalog=catalog).recipe, None)
    if local:
        if not (path / "config.json").is_file():
            raise UserError(
                f"{model!r} is not a checkpoint directory (no config.json)",
                "give the directory that holds the model's config.json and weights",
            )
        return Resolved(named, str(path.resolve()))
    if _REPO.match(model):
        return Resolved(named, None if named.repo == model else model)
    raise UserError(
        f"{model!r} is neither a checkpoint directory nor a hub repo id",
        "give a directory, org/name, or drop `recipe:` to name a recipe",
    )
