"""Diagnosis rules for failed vLLM starts as data (profiles/diagnose.yaml)."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from servectl.catalog.base import CATALOG_KEY, Ge, Le, SCHEMA_VERSION, require_match, schema


@schema
class DiagnosisRule:
    """One known vLLM start-up failure (profiles/diagnose.yaml)."""

    id: str  # Rule id.
    pattern: str  # Regex searched in the root error ('Type: message') and in each log line; named groups feed the templates.
    cause: str  # Root cause, one line (template).
    remedy: str  # What to do (template).
    fix: list[str] = field(default_factory=list)  # Flags for `vllm serve` or NAME=value environment settings (templates); an item with an unknown value is dropped.
    compute: dict[str, str] = field(default_factory=dict)  # Named computations, e.g. size: divisor_at_most(heads, tp, gpus).
    requires: list[str] = field(default_factory=list)  # Regexes that must each occur somewhere in the log.
    unless: list[str] = field(default_factory=list)  # Regexes none of which may occur in the log.
    extract: dict[str, str] = field(default_factory=dict)  # Extra values: name -> regex (first group) searched in the whole log.
    after: str | None = None  # Regex that must match a line before the matched one.
    not_after: str | None = None  # Regex that must not match any line before the matched one.
    wrapper: bool = False  # A wrapper error: reported only when nothing else matched.
    hazard: bool = False  # Not a start failure (e.g. gibberish output): reported only when the log shows no error.
    priority: Annotated[int, Ge(0), Le(100)] = 50  # Order among several causes (higher first).
    source: str  # Where the message comes from (vLLM source file, library, public issue).
    versions: list[str] = field(default_factory=list)  # vLLM releases whose source was read for source_text; empty when the message is not vLLM's.
    source_text: str | None = None  # Literal text of the message as it appears in vLLM's source.
    tested: str  # 'live' (a real failed start of the vLLM CPU build in the tests) or the public issue whose log is test data.

    def __post_init__(self) -> None:
        require_match(self.id, CATALOG_KEY, "id")


@schema
class ModelFamily:
    """Parsers that fit a model family, by preference (used when the recipe is unknown)."""

    name: str  # Family name.
    match: str  # Regex (case-insensitive) on the model's names: repo, path, architecture, model_type.
    tool_call: list[str] = field(default_factory=list)  # --tool-call-parser names, preferred first.
    reasoning: list[str] = field(default_factory=list)  # --reasoning-parser names, preferred first.


@schema
class DiagnoseFile:
    """profiles/diagnose.yaml."""

    schema_version: Annotated[int, Ge(1), Le(SCHEMA_VERSION)]  # Catalog schema version.
    families: list[ModelFamily] = field(default_factory=list)  # Model families, most specific first.
    rules: list[DiagnosisRule]
