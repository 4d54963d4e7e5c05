"""Results of health checks and diagnoses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from servectl.catalog.base import Strict


class CheckResult(BaseModel):
    """One health check: pass, fail, or skipped with the reason."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Check id (health, models, chat, sanity, reasoning, tools, vision, streaming, metrics).")
    status: Literal["pass", "fail", "skipped"] = Field(description="Outcome.")
    detail: str = Field("", description="What was seen, or why it was skipped.")
    figures: dict[str, Any] = Field(default_factory=dict, description="Numbers measured by the check (timings, metric values).")


class Report(BaseModel):
    """All checks against one endpoint; passed only when every applicable check passed."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Base URL checked.")
    model: str | None = Field(None, description="Served model name the checks used.")
    recipe: str | None = Field(None, description="Catalog recipe the expectations came from.")
    checks: list[CheckResult] = Field(default_factory=list, description="Results in the order run.")

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks) and any(c.status == "pass" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape of `servectl check` (and `health` in `servectl up --json`)."""
        return {**self.model_dump(mode="json"), "passed": self.passed}


class Diagnosis(Strict):
    """A cause found in a vLLM log."""

    rule: str = Field(description="Rule id.")
    cause: str = Field(description="Root cause, one line.")
    remedy: str = Field(description="What to do.")
    fix: str | None = Field(None, description="The flag change / command, ready to paste.")
    evidence: str = Field(description="The log line the rule matched.")
    line: int = Field(ge=1, description="1-based line number of the evidence.")
    context: list[str] = Field(default_factory=list, description="Error lines above a wrapper error (where to look).")


# (text, rich style): rich Text pieces, never markup (details carry server output)
STATUS_STYLE = {"pass": ("pass", "green"), "fail": ("FAIL", "bold red"), "skipped": ("skipped", "dim")}


def report_table(report: Report) -> Any:
    """The report as a rich Table (for people; --json for scripts)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{report.url}  model {report.model or '?'}" + (f"  (recipe {report.recipe})" if report.recipe else ""))
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        table.add_row(c.name, Text(*STATUS_STYLE[c.status]), c.detail)
    return table
