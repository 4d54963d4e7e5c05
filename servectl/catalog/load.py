"""The catalog: GPU profiles and model recipes shipped as package data (profiles/*.yaml).

Loading validates every entry against the schemas of servectl.catalog (with pydantic) (and keeps the validated
catalog in the user cache dir, keyed by the files' text and the schemas' source). A malformed file is
reported as one line with its path, the line number and the field; an unknown name gets
"did you mean". `SERVECTL_PROFILES_DIR` points the loader at another folder (tests, user catalogs).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from servectl.errors import UnknownName, UserError
from servectl.fsutil import MIB, read_bytes_capped, read_text_capped, write_atomic, yaml_call
from servectl.paths import cache_dir
from servectl.catalog.base import validate
from servectl.catalog.gpu import GpuProfile, ProfilesFile
from servectl.catalog.recipe import ModelRecipe, RecipesFile

if TYPE_CHECKING:
    import yaml

M = TypeVar("M")


class CatalogError(UserError):
    """A catalog file is missing, is not YAML, or does not match the schema."""


def profiles_dir() -> Path | resources.abc.Traversable:
    """Where the catalog YAML lives: $SERVECTL_PROFILES_DIR, else the installed package data."""
    override = os.environ.get("SERVECTL_PROFILES_DIR")
    if override:
        return Path(override)
    return resources.files("servectl.profiles")


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Walk a composed YAML node tree along a pydantic error location; return the deepest node found."""
    import yaml

    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:
                # an extra/misspelt key: point at the key itself
                key = next((k for k, _ in node.value if k.value == part), None)
                return key or node
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node


def parse_yaml_model(text: str, source: str, model: type[M]) -> M:
    """Parse YAML text into `model` (a catalog schema); errors name the source, line and field."""
    import yaml  # here, not at import: a command served from the cached catalog never parses YAML
    from pydantic import ValidationError

    try:
        data = yaml_call(yaml.load, text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{where}: not valid YAML: {problem}", "fix the file's syntax") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: expected a mapping at the top level", "see the shipped profiles/*.yaml for the layout")
    try:
        return validate(model, data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        node = _node_at(yaml_call(yaml.compose, text, Loader=yaml.SafeLoader), loc)  # line numbers only on the error path
        line = node.start_mark.line + 1 if node is not None else 1
        field = ".".join(str(p) for p in loc) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise CatalogError(f"{source}:{line}: field {field}: {err['msg']}{more}", "fix that field") from None


CATALOG_FILE_LIMIT = 16 * MIB  # the shipped catalog is ~100 KiB; a folder of the user's own is held to this too


def _read(name: str) -> tuple[str, str]:
    base = profiles_dir()
    path = base / name
    if not path.is_file():
        raise CatalogError(f"catalog file {path} is missing", "reinstall servectl or unset SERVECTL_PROFILES_DIR")
    if isinstance(path, Path):  # a folder on disk (the user's own with SERVECTL_PROFILES_DIR): held to the limit
        return read_text_capped(path, CATALOG_FILE_LIMIT, str(path)), str(path)
    return path.read_text(encoding="utf-8"), str(path)  # package data inside an archive: shipped, not input


@dataclass(frozen=True)
class Catalog:
    """Every GPU profile and model recipe, validated and cross-checked."""

    gpus: dict[str, GpuProfile]
    models: dict[str, ModelRecipe]

    def gpu(self, name: str) -> GpuProfile:
        try:
            return self.gpus[name]
        except KeyError:
            raise UnknownName("profile", name, list(self.gpus)) from None

    def model(self, name: str) -> ModelRecipe:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownName("model", name, list(self.models)) from None


def _index(items: list[Any], source: str, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if item.name in out:
            raise CatalogError(f"{source}: {kind} {item.name!r} is defined twice", "keep one definition")
        out[item.name] = item
    return out


def _cross_check(cat: Catalog, source: str) -> None:
    """References between files must resolve (a recipe naming a profile that does not exist is a typo)."""
    for recipe in cat.models.values():
        named = set(recipe.profiles)
        if recipe.card:
            named |= set(recipe.card.profiles) | set(recipe.card.profile_launches)
        for profile in sorted(named - set(cat.gpus)):
            close = UnknownName("profile", profile, list(cat.gpus)).close_matches
            hint = f"did you mean {close[0]!r}?" if close else "add the profile to gpus.yaml"
            raise CatalogError(f"{source}: model {recipe.name!r} names unknown GPU profile {profile!r}", hint)


def _schema_fingerprint() -> bytes:
    """The schema modules' source: a changed schema must never meet a catalog validated by the old one."""
    here = Path(__file__).parent
    return b"".join((here / f"{m}.py").read_bytes() for m in ("base", "gpu", "recipe", "load"))


def _disk_cached(texts: list[str], build: Callable[[], Catalog]) -> Catalog:
    """The validated catalog, pickled under the user cache dir keyed by the YAML text and the schemas.

    Validating the catalog builds every pydantic schema (most of a command's start-up); a cache hit
    only unpickles. Any problem with the cache falls back to validating (and rewrites it)."""
    return disk_cached(texts, build, Catalog, _schema_fingerprint())


# what reading a cache file that is not (or no longer) ours raises: servectl.fsutil's refusals, and unpickling
# a damaged file or one whose classes have changed since
_STALE_CACHE = (
    UserError,
    OSError,
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
)


def disk_cached(
    texts: list[str], build: Callable[[], M], kind: type, fingerprint: bytes, *, folder: str = "catalog", keep: int | None = None
) -> M:
    """`build()` pickled under the user cache dir, keyed by the source texts and the schema source (`fingerprint`).
    `keep`: the folder holds at most that many entries (the least recently written go), for keys without end."""
    digest = hashlib.sha256(fingerprint + "\0".join(texts).encode()).hexdigest()[:32]
    path = cache_dir() / folder / f"{digest}.pickle"
    try:
        cached = pickle.loads(read_bytes_capped(path, 64 * MIB, nofollow=True))
        if isinstance(cached, kind):
            return cast(M, cached)
    except _STALE_CACHE:  # missing, unreadable, damaged or written by another version: rebuilt below
        pass
    cat = build()
    try:
        write_atomic(path, pickle.dumps(cat, protocol=pickle.HIGHEST_PROTOCOL))
        if keep is not None:
            _prune(path.parent, keep)
    except OSError:  # a read-only home still gets a catalog, only slower
        pass
    return cat


def _prune(folder: Path, keep: int) -> None:
    """Remove all but the `keep` most recently written *.pickle files of `folder`."""
    entries = []
    for p in folder.glob("*.pickle"):
        try:
            entries.append((p.stat().st_mtime, p))
        except OSError:  # removed meanwhile
            continue
    for _, p in sorted(entries, reverse=True)[keep:]:
        p.unlink(missing_ok=True)


def schema_fingerprint() -> bytes:
    """The catalog schemas' source (as the catalog's cache key has it)."""
    return _schema_fingerprint()


@functools.lru_cache(maxsize=8)
def _load_cached(key: str) -> Catalog:
    gpus_text, gpus_src = _read("gpus.yaml")
    models_text, models_src = _read("models.yaml")
    return _disk_cached(
        [gpus_src, gpus_text, models_src, models_text], lambda: _validate(gpus_text, gpus_src, models_text, models_src)
    )


def _validate(gpus_text: str, gpus_src: str, models_text: str, models_src: str) -> Catalog:
    gpus = parse_yaml_model(gpus_text, gpus_src, ProfilesFile)
    models = parse_yaml_model(models_text, models_src, RecipesFile)
    cat = Catalog(gpus=_index(gpus.gpus, gpus_src, "profile"), models=_index(models.models, models_src, "model"))
    _cross_check(cat, models_src)
    return cat


def load_catalog() -> Catalog:
    """Load (once per catalog folder) and validate the catalog."""
    return _load_cached(str(profiles_dir()))
