"""What a fleet model's `model` names: a recipe, and the checkpoint to serve with its settings.

One small function, so that when any MODEL string (a hub repo, a local directory, a user recipe) resolves to a
recipe on its own, the fleet switches to that resolver here and nowhere else. Until then, the mechanisms
`servectl up` has: a catalog recipe by name or by its repo, and any other checkpoint (a directory or a repo id)
served with the settings of the recipe named by `recipe:` (`up RECIPE --model-path DIR`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from servectl.catalog.load import Catalog
from servectl.catalog.recipe import ModelRecipe
from servectl.errors import UnknownName, UserError

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
    if model.startswith(("/", ".", "~")) or path.is_dir():
        if not path.is_dir():
            raise UserError(f"model directory {model!r} does not exist", "give an existing checkpoint directory")
        if not (path / "config.json").is_file():
            raise UserError(f"{model!r} is not a checkpoint directory (no config.json)",
                            "give the directory that holds the model's config.json and weights")
        if named is None:
            raise UserError("a checkpoint directory needs `recipe:` naming the recipe that serves it",
                            "`servectl models list` shows the recipes")
        return Resolved(named, str(path.resolve()))
    if _REPO.match(model):
        by_repo = [r for r in catalog.models.values() if r.repo == model]
        if named is not None:
            return Resolved(named, None if named.repo == model else model)
        if by_repo:
            return Resolved(by_repo[0], None)
        raise UserError(f"no recipe serves the repo {model!r}",
                        "add `recipe:` naming the recipe whose settings serve it (`servectl models list`)")
    raise UnknownName("model", model, list(catalog.models))
