"""Diagnosis rules for failed vLLM starts as data (profiles/diagnose.yaml)."""

from __future__ import annotations

from pydantic import Field

from servectl.catalog.base import SCHEMA_VERSION, Strict


class DiagnosisRule(Strict):
    """One known vLLM start-up failure (profiles/diagnose.yaml)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Rule id.")
    pattern: str = Field(description="Regex searched in the root error ('Type: message') and in each log line; named groups feed the templates.")
    cause: str = Field(description="Root cause, one line (template).")
    remedy: str = Field(description="What to do (template).")
    fix: list[str] = Field(default_factory=list, description="Flags for `vllm serve` or NAME=value environment settings (templates); an item with an unknown value is dropped.")
    compute: dict[str, str] = Field(default_factory=dict, description="Named computations, e.g. size: divisor_at_most(heads, tp, gpus).")
    requires: list[str] = Field(default_factory=list, description="Regexes that must each occur somewhere in the log.")
    unless: list[str] = Field(default_factory=list, description="Regexes none of which may occur in the log.")
    extract: dict[str, str] = Field(default_factory=dict, description="Extra values: name -> regex (first group) searched in the whole log.")
    after: str | None = Field(None, description="Regex that must match a line before the matched one.")
    not_after: str | None = Field(None, description="Regex that must not match any line before the matched one.")
    wrapper: bool = Field(False, description="A wrapper error: reported only when nothing else matched.")
    hazard: bool = Field(False, description="Not a start failure (e.g. gibberish output): reported only when the log shows no error.")
    priority: int = Field(50, ge=0, le=100, description="Order among several causes (higher first).")
    source: str = Field(description="Where the message comes from (vLLM source file, library, public issue).")
    versions: list[str] = Field(default_factory=list, description="vLLM releases whose source was read for source_text; empty when the message is not vLLM's.")
    source_text: str | None = Field(None, description="Literal text of the message as it appears in vLLM's source.")
    tested: str = Field(description="'live' (a real failed start of the vLLM CPU build in the tests) or the public issue whose log is test data.")


class ModelFamily(Strict):
    """Parsers that fit a model family, by preference (used when the recipe is unknown)."""

    name: str = Field(description="Family name.")
    match: str = Field(description="Regex (case-insensitive) on the model's names: repo, path, architecture, model_type.")
    tool_call: list[str] = Field(default_factory=list, description="--tool-call-parser names, preferred first.")
    reasoning: list[str] = Field(default_factory=list, description="--reasoning-parser names, preferred first.")


class DiagnoseFile(Strict):
    """profiles/diagnose.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    families: list[ModelFamily] = Field(default_factory=list, description="Model families, most specific first.")
    rules: list[DiagnosisRule]
