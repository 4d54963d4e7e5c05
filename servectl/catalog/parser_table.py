"""The parser table of model families (profiles/parsers.yaml), validated; matching a checkpoint against it is servectl.checkpoint.parsers'."""

from __future__ import annotations

import functools
from pathlib import Path

from servectl.catalog.parser_schema import FamiliesFile, Family
from servectl.catalog.load import _read, disk_cached, parse_yaml_model, profiles_dir


def _fingerprint() -> bytes:
    """The schema modules' source: a changed schema must never meet a table validated by the old one."""
    here = Path(__file__).parent
    return b"".join((here / f"{m}.py").read_bytes() for m in ("base", "parser_schema", "parser_table"))


@functools.lru_cache(maxsize=4)
def _load(key: str) -> tuple[tuple[Family, ...], str]:
    text, source = _read("parsers.yaml")
    # validated once per text and schema, then unpickled from the user cache (as the catalog): a derived
    # recipe's plan needs neither YAML nor pydantic
    table = disk_cached([source, text], lambda: parse_yaml_model(text, source, FamiliesFile), FamiliesFile, _fingerprint())
    return tuple(table.families), source


def load_parser_table() -> tuple[Family, ...]:
    """Every rule of the family table, in order."""
    return _load(str(profiles_dir()))[0]
