"""Diagnosis rules for failed vLLM starts as data (profiles/diagnose.yaml)."""

from __future__ import annotations


from pydantic import Field

from servectl.catalog.base import SCHEMA_VERSION, Strict


class DiagnosisRule(Strict):
    """One known vLLM log signature (profiles/diagnose.yaml)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Rule id.")
    pattern: str = Field(description="Regex searched in each log line; named groups feed the templates.")
    cause: str = Field(description="Root cause, one line (template).")
    remedy: str = Field(description="What to do (template).")
    fix: str | None = Field(None, description="The exact flag change or command, ready to paste (template).")
    compute: dict[str, str] = Field(default_factory=dict, description="Named computations, e.g. util: utilization_that_fits(free, total).")
    requires: list[str] = Field(default_factory=list, description="Regexes that must each occur somewhere in the log.")
    extract: dict[str, str] = Field(default_factory=dict, description="Extra values: name -> regex (first group) searched in the whole log.")
    after: str | None = Field(None, description="Regex that must match a line before the matched one.")
    not_after: str | None = Field(None, description="Regex that must not match any line before the matched one.")
    wrapper: bool = Field(False, description="A wrapper error: reported only when no root-cause rule matched.")
    priority: int = Field(50, ge=0, le=100, description="Order among several causes (higher first).")
    source: str = Field(description="Where the message comes from (vLLM source file, public issue).")


class DiagnoseFile(Strict):
    """profiles/diagnose.yaml."""

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION, description="Catalog schema version.")
    rules: list[DiagnosisRule]
