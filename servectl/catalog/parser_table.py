"""The parser table of model families (profiles/parsers.yaml), validated; matching a checkpoint against it is servectl.checkpoint.parsers'."""

from __future__ import annotations

import functools

from servectl.catalog.parser_schema import FamiliesFile, Family
from servectl.catalog.load import _read, parse_yaml_model, profiles_dir


@functools.lru_cache(maxsize=4)
def _load(key: str) -> tuple[tuple[Family, ...], str]:
    text, source = _read("parsers.yaml")
    return tuple(parse_yaml_model(text, source, FamiliesFile).families), source


def load_parser_table() -> tuple[Family, ...]:
    """Every rule of the family table, in order."""
    return _load(str(profiles_dir()))[0]
