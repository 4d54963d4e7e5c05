"""Sampling presets: shipped as package data (profiles/presets.yaml), extended by the user's config file.

The user's config file (servectl.paths.config_file()) may carry a `presets:` mapping of name to
fields; a user preset with a shipped preset's name replaces it:

    presets:
      precise:
        temperature: 0.2
        top_p: 0.9
        enable_thinking: false

Selection (`--presets`) takes preset names and family names (`qwen3.5` = its four presets).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from servectl.catalog.base import validate
from servectl.catalog.load import CatalogError, _read, parse_yaml_model
from servectl.errors import UnknownName, UserError
from servectl.fsutil import MIB, read_text_capped, yaml_call
from servectl.paths import config_file
from servectl.catalog.preset_schema import PresetsFile, SamplingPreset

CONFIG_LIMIT = MIB  # a config file of presets is a few KiB


def shipped_presets() -> dict[str, SamplingPreset]:
    """The presets in profiles/presets.yaml (package data, or $SERVECTL_PROFILES_DIR)."""
    text, source = _read("presets.yaml")
    doc = parse_yaml_model(text, source, PresetsFile)
    out: dict[str, SamplingPreset] = {}
    for p in doc.presets:
        if p.name in out:
            raise CatalogError(f"{source}: preset {p.name!r} is defined twice", "keep one definition")
        out[p.name] = p
    return out


def user_presets(path: Path | None = None) -> dict[str, SamplingPreset]:
    """The `presets:` mapping of the user's config file (empty when the file or the key is absent)."""
    path = path or config_file()
    if not path.is_file():
        return {}
    try:
        data = yaml_call(yaml.safe_load, read_text_capped(path, CONFIG_LIMIT, f"config file {path}")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML", "fix the config file's syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level", "see the docs: how-to/proxy.md, 'Your own presets'")
    raw = data.get("presets") or {}
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: `presets` must be a mapping of name to fields", "see the docs: how-to/proxy.md, 'Your own presets'"
        )
    from pydantic import ValidationError

    out: dict[str, SamplingPreset] = {}
    for name, fields in raw.items():
        if not isinstance(fields, dict):
            raise UserError(f"{path}: preset {name!r} must be a mapping of fields", "e.g. `temperature: 0.2`")
        try:
            out[str(name)] = validate(SamplingPreset, {"name": str(name), **fields})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(preset)"
            raise UserError(f"{path}: preset {name!r}, field {field}: {err['msg']}", "fix that field") from None
    return out


def load_presets(config: Path | None = None) -> dict[str, SamplingPreset]:
    """Shipped presets merged with the user's (a user preset replaces a shipped one of the same name)."""
    return {**shipped_presets(), **user_presets(config)}


def families(presets: dict[str, SamplingPreset]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in presets.values():
        if p.family:
            out.setdefault(p.family, []).append(p.name)
    return out


def select_presets(
    names: str | Iterable[str] | None, presets: dict[str, SamplingPreset] | None = None
) -> dict[str, SamplingPreset]:
    """Pick presets by preset or family name (comma-separated string or list); None or empty: all."""
    presets = load_presets() if presets is None else presets
    if names is None:
        return dict(presets)
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not items:
        return dict(presets)
    fams = families(presets)
    out: dict[str, SamplingPreset] = {}
    for item in items:
        if item in presets:
            out[item] = presets[item]
        elif item in fams:
            out.update({n: presets[n] for n in fams[item]})
        else:
            raise UnknownName("preset", item, list(presets) + list(fams))
    return out


def virtual_names(served_model: str, presets: Iterable[str]) -> dict[str, str]:
    """Virtual model name -> preset name."""
    return {f"{served_model}-{name}": name for name in presets}
