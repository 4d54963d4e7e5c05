"""Model families (profiles/parsers.yaml): which reasoning and tool-call parsers a checkpoint needs, and its hazards."""

from __future__ import annotations

import re
from dataclasses import field
from typing import Annotated

from servectl.catalog.base import Ge, Le, MinLen, SCHEMA_VERSION, schema


def _require_regex(value: str | None, what: str) -> None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{what} {value!r} is not a regular expression: {exc}") from None


@schema
class FamilyMatch:
    """What a checkpoint must have for a rule to apply (every condition given must hold)."""

    model_types: list[str] = field(default_factory=list)  # config.json model_type, top level or text_config (any of).
    architectures: list[str] = field(default_factory=list)  # config.json architectures[0] (any of).
    name: str | None = None  # Regex searched (case-insensitive) in the checkpoint's name: repo id or directory name.
    template_has: list[str] = field(default_factory=list)  # Markers the chat template must all contain.

    def __post_init__(self) -> None:
        _require_regex(self.name, "match.name")
        if not (self.model_types or self.architectures or self.name or self.template_has):
            raise ValueError("a match needs at least one condition")


@schema
class ParserChoice:
    """One kind of parser for a family: preferred names, and when the model emits what they read."""

    parsers: list[str] = field(
        default_factory=list
    )  # Preference order; the first the vLLM release registers is used. Empty: none.
    when_template_has: list[str] = field(default_factory=list)  # The chat template must contain one of these (else: none).
    unless_name: str | None = None  # Regex (case-insensitive): checkpoints whose name matches get none.
    note: str | None = None  # What an operator should know about this choice.

    def __post_init__(self) -> None:
        _require_regex(self.unless_name, "unless_name")


@schema
class Family:
    """A rule of the family table."""

    name: str  # Human label shown in the explanation.
    match: FamilyMatch  # When the rule applies.
    reasoning: ParserChoice | None = None  # --reasoning-parser (None: later rules decide).
    tool_call: ParserChoice | None = None  # --tool-call-parser (None: later rules decide).
    hazards: list[str] = field(default_factory=list)  # Hazard ids a recipe of this family carries (guards, patches).
    sources: Annotated[list[str], MinLen(1)]  # Where the choice is published.


@schema
class FamiliesFile:
    """profiles/parsers.yaml."""

    schema_version: Annotated[int, Ge(1), Le(SCHEMA_VERSION)]  # Catalog schema version.
    families: list[Family]
