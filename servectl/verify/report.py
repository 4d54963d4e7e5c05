"""Results of health checks and diagnoses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from servectl.strict import Strict


class CheckResult(BaseModel):
    """One health check: pass, fail, or skipped with the reason."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Check id (health, models, chat, sanity, reasoning, tools, vision, streaming, metrics, speculative)."
    )
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


class Evidence(Strict):
    """The log line a diagnosis rule matched."""

    line: int = Field(ge=1, description="1-based line number in the log.")
    text: str = Field(description="The line, stripped (at most 500 characters).")


class RootError(Strict):
    """The failing process's final exception that is not a wrapper."""

    type: str = Field(
        description="Exception type as printed (KeyError, ValueError, huggingface_hub.errors.HFValidationError, ArgumentError for argparse)."
    )
    message: str = Field(description="Its message; pydantic's 'Value error, ...' unwrapped.")
    line: int = Field(ge=1, description="1-based line number in the log.")


class Diagnosis(Strict):
    """What `servectl diagnose` reports: the root error always, cause / remedy / fix when a rule knows it."""

    cause: str | None = Field(description="Root cause, one line; None when no rule matched.")
    remedy: str | None = Field(description="What to do; None when no rule matched.")
    fix: list[str] = Field(
        default_factory=list, description="`vllm serve` flags (or NAME=value environment settings) that fix it."
    )
    evidence: Evidence | None = Field(description="The log line the rule matched.")
    rule: str | None = Field(description="Rule id; None when no rule matched.")
    root_error: RootError | None = Field(description="The failing process's final exception; None when the log shows none.")


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
